"""Datastores through the public API: default store, registration, transfers, traversal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simml.core import Datastore
from simml.data.azure_storage_datastore import AzureBlobDatastore, LocalFolderDatastore
from simml.data.data_reference import DataReference
from simml.exceptions import NotFoundException, UnsafePathException, UserErrorException


def make_tree(base: Path) -> Path:
    (base / "data" / "sub").mkdir(parents=True)
    (base / "data" / "iris.csv").write_text("a,b\n1,2\n")
    (base / "data" / "sub" / "more.csv").write_text("x\n")
    return base / "data"


def test_default_datastore_upload_prints_azure_lines(ws, tmp_path: Path, capsys) -> None:
    ds = ws.get_default_datastore()
    assert isinstance(ds, AzureBlobDatastore) and ds.name == "workspaceblobstore"
    src = make_tree(tmp_path)
    ref = ds.upload(src_dir=str(src), target_path="iris", overwrite=True, show_progress=True)
    assert isinstance(ref, DataReference) and ref.path_on_datastore == "iris"
    assert str(ref).startswith("$AZUREML_DATAREFERENCE_")
    out = capsys.readouterr().out
    assert "Uploading an estimated of 2 files" in out
    assert "Uploaded 2 files" in out
    assert ds.list_files() == ["iris/iris.csv", "iris/sub/more.csv"]
    # overwrite=False skips what is there, Azure's message
    ds.upload(src_dir=str(src), target_path="iris", overwrite=False, show_progress=True)
    assert "Target already exists. Skipping upload for iris/iris.csv" in capsys.readouterr().out


def test_download_with_prefix(ws, tmp_path: Path) -> None:
    ds = ws.get_default_datastore()
    ds.upload(str(make_tree(tmp_path)), "iris", show_progress=False)
    count = ds.download(str(tmp_path / "dl"), prefix="iris/sub", show_progress=False)
    assert count == 1
    assert (tmp_path / "dl" / "iris" / "sub" / "more.csv").read_text() == "x\n"
    assert ds.download(str(tmp_path / "dl"), prefix="iris/sub", show_progress=False) == 0


def test_upload_files_relative_root(ws, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    ds = ws.get_default_datastore()
    ds.upload_files([str(src / "iris.csv"), str(src / "sub" / "more.csv")],
                    relative_root=str(src), target_path="flat", show_progress=False)
    assert ds.list_files("flat") == ["flat/iris.csv", "flat/sub/more.csv"]


def test_register_and_get(ws, tmp_path: Path) -> None:
    blob = Datastore.register_azure_blob_container(ws, "extra", "container1", "acct")
    assert Datastore.get(ws, "extra").container_name == "container1"
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "f.txt").write_text("hi")
    local = Datastore.register_local_folder(ws, "shared", folder)
    assert isinstance(local, LocalFolderDatastore)
    assert local.list_files() == ["f.txt"]
    assert sorted(ws.datastores) == ["extra", "shared", "workspaceblobstore", "workspacefilestore"]
    blob.set_as_default()
    assert ws.get_default_datastore().name == "extra"
    assert Datastore(ws, "shared").name == "shared"
    with pytest.raises(UserErrorException, match="overwrite"):
        Datastore.register_azure_blob_container(ws, "extra", "other", "acct")
    assert Datastore.get(ws, "extra").container_name == "container1"


def test_unknown_datastore(ws) -> None:
    with pytest.raises(NotFoundException, match="nope"):
        Datastore.get(ws, "nope")


def test_missing_source_folder(ws, tmp_path: Path) -> None:
    with pytest.raises(NotFoundException):
        ws.get_default_datastore().upload(str(tmp_path / "absent"), "x", show_progress=False)


@pytest.mark.parametrize("target", ["../escape", "/abs", "a/../../b", "..\\win"])
def test_traversal_in_target_path_refused(ws, tmp_path: Path, target: str) -> None:
    src = make_tree(tmp_path)
    ds = ws.get_default_datastore()
    with pytest.raises(UnsafePathException):
        ds.upload(str(src), target, show_progress=False)
    assert ds.list_files() == []


@pytest.mark.parametrize("prefix", ["../", "/etc", "a/../../b"])
def test_traversal_in_download_prefix_refused(ws, tmp_path: Path, prefix: str) -> None:
    ds = ws.get_default_datastore()
    with pytest.raises(UnsafePathException):
        ds.download(str(tmp_path / "dl"), prefix=prefix, show_progress=False)
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").iterdir())


def test_symlink_pointing_out_of_datastore_refused(ws, tmp_path: Path) -> None:
    ds = ws.get_default_datastore()
    src = make_tree(tmp_path)
    ds.upload(str(src), "iris", show_progress=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    root = Path(ws.get_details()["root"]) / "datastores" / "workspaceblobstore"
    os.symlink(outside, root / "link")
    with pytest.raises(UnsafePathException):
        ds.upload(str(src), "link", show_progress=False)
    assert list(outside.iterdir()) == []
