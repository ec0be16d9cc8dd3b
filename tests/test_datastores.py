"""Datastores through the public API: default store, registration, transfers, traversal.

Transfers, lookups, the stat and read hooks and registering Azure storage (with the caller's
credential) are backend contract tests (``contract``, ``tests/_contract.py``): they use a path
prefix or a name of their own in the shared workspace. Local folders (``register_local_folder``,
the datastore's folder on disk) are ``local_only``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simml.core import Datastore
from simml.data.azure_storage_datastore import (
    AzureBlobDatastore,
    AzureFileDatastore,
    LocalFolderDatastore,
)
from simml.data.data_reference import DataReference
from _contract import unique
from simml.exceptions import NotFoundException, UnsafePathException, UserErrorException


def make_tree(base: Path) -> Path:
    (base / "data" / "sub").mkdir(parents=True)
    (base / "data" / "iris.csv").write_text("a,b\n1,2\n")
    (base / "data" / "sub" / "more.csv").write_text("x\n")
    return base / "data"


@pytest.mark.contract
def test_default_datastore_upload_prints_azure_lines(ws, tmp_path: Path, capsys) -> None:
    ds = ws.get_default_datastore()
    assert isinstance(ds, AzureBlobDatastore) and ds.name == "workspaceblobstore"
    src = make_tree(tmp_path)
    iris = unique("iris")
    ref = ds.upload(src_dir=str(src), target_path=iris, overwrite=True, show_progress=True)
    assert isinstance(ref, DataReference) and ref.path_on_datastore == iris
    assert str(ref).startswith("$AZUREML_DATAREFERENCE_")
    out = capsys.readouterr().out
    assert "Uploading an estimated of 2 files" in out
    assert "Uploaded 2 files" in out
    assert ds.list_files(iris) == [f"{iris}/iris.csv", f"{iris}/sub/more.csv"]
    # overwrite=False skips what is there, Azure's message
    ds.upload(src_dir=str(src), target_path=iris, overwrite=False, show_progress=True)
    assert f"Target already exists. Skipping upload for {iris}/iris.csv" in \
        capsys.readouterr().out


@pytest.mark.contract
def test_download_with_prefix(ws, tmp_path: Path) -> None:
    ds = ws.get_default_datastore()
    iris = unique("iris")
    ds.upload(str(make_tree(tmp_path)), iris, show_progress=False)
    count = ds.download(str(tmp_path / "dl"), prefix=f"{iris}/sub", show_progress=False)
    assert count == 1
    assert (tmp_path / "dl" / iris / "sub" / "more.csv").read_text() == "x\n"
    assert ds.download(str(tmp_path / "dl"), prefix=f"{iris}/sub", show_progress=False) == 0


@pytest.mark.contract
def test_upload_files_relative_root(ws, tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    ds = ws.get_default_datastore()
    flat = unique("flat")
    ds.upload_files([str(src / "iris.csv"), str(src / "sub" / "more.csv")],
                    relative_root=str(src), target_path=flat, show_progress=False)
    assert ds.list_files(flat) == [f"{flat}/iris.csv", f"{flat}/sub/more.csv"]


@pytest.mark.local_only
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


@pytest.mark.contract
def test_register_azure_storage_with_its_credential(ws) -> None:
    """A blob container and a file share registered with the caller's SAS token / account key
    (``skip_validation``: the account is made up): found by name, listed, replaced only with
    ``overwrite``; the default stays; simml writes the credential nowhere."""
    suffix = unique("s").split("-")[1]
    name, share_name, account = f"blob_{suffix}", f"share_{suffix}", f"simml{suffix}"
    sas, key = f"sv=2022-11-02&sp=rl&sig=secret{suffix}", f"a2V5{suffix}LXNlY3JldA=="
    blob = Datastore.register_azure_blob_container(ws, name, f"container-{suffix}", account,
                                                   sas_token=sas, skip_validation=True)
    assert isinstance(blob, AzureBlobDatastore)
    assert (blob.name, blob.container_name, blob.account_name) == (
        name, f"container-{suffix}", account)
    assert Datastore.get(ws, name).container_name == f"container-{suffix}"
    with pytest.raises(UserErrorException, match="overwrite"):
        Datastore.register_azure_blob_container(ws, name, f"other-{suffix}", account,
                                                sas_token=sas, skip_validation=True)
    assert Datastore.get(ws, name).container_name == f"container-{suffix}"
    replaced = Datastore.register_azure_blob_container(ws, name, f"other-{suffix}", account,
                                                       sas_token=sas, overwrite=True,
                                                       skip_validation=True)
    assert replaced.container_name == f"other-{suffix}"
    share = Datastore.register_azure_file_share(ws, share_name, f"share-{suffix}", account,
                                                account_key=key, skip_validation=True)
    assert isinstance(share, AzureFileDatastore) and share.container_name == f"share-{suffix}"
    assert isinstance(Datastore(ws, share_name), AzureFileDatastore)
    assert {name, share_name} <= set(ws.datastores)
    assert ws.get_default_datastore().name == "workspaceblobstore"
    if ws.backend == "local":  # the workspace's files are on this machine: none holds a secret
        secrets = (sas.encode(), key.encode())
        for path in Path(ws.get_details()["root"]).rglob("*"):
            if path.is_file():
                assert not any(secret in path.read_bytes() for secret in secrets), path


@pytest.mark.contract
def test_stat_and_read_hooks(ws, tmp_path: Path) -> None:
    """The hooks the emulator's blob service reads through (List Blobs, ranged Get Blob): files
    under Azure's string prefix with size and modification time, and byte ranges (short at the
    end, empty past it), on every backend."""
    from datetime import datetime, timedelta, timezone
    prefix = unique("stat")
    source = tmp_path / "src"
    (source / prefix / "data").mkdir(parents=True)
    (source / prefix / "data" / "a.bin").write_bytes(b"0123456789")
    (source / prefix / "data2.txt").write_bytes(b"x")
    ds = ws.get_default_datastore()
    before = datetime.now(timezone.utc)
    ds.upload(str(source), show_progress=False)
    after = datetime.now(timezone.utc)
    backend, info = ws._backend, ws._info
    found = backend.datastore_stat(info, ds.name, f"{prefix}/data")  # a string prefix
    assert [(f.path, f.size) for f in found] == [(f"{prefix}/data/a.bin", 10),
                                                (f"{prefix}/data2.txt", 1)]
    slack = timedelta(minutes=5)  # the service's clock, not this machine's
    assert all(before - slack <= f.modified <= after + slack for f in found), found
    assert backend.datastore_stat(info, ds.name, f"{prefix}/data/") == found[:1]
    assert backend.datastore_read(info, ds.name, f"{prefix}/data/a.bin", 3, 4) == b"3456"
    assert backend.datastore_read(info, ds.name, f"{prefix}/data/a.bin", 8, 100) == b"89"
    assert backend.datastore_read(info, ds.name, f"{prefix}/data/a.bin", 10, 5) == b""
    assert backend.datastore_read(info, ds.name, f"{prefix}/data2.txt", 0, 0) == b""
    with pytest.raises(NotFoundException):
        backend.datastore_read(info, ds.name, f"{prefix}/data/missing.bin", 0, 1)
    with pytest.raises(NotFoundException):
        backend.datastore_read(info, ds.name, f"{prefix}/data", 0, 1)  # a folder is no file
    with pytest.raises(UnsafePathException):
        backend.datastore_read(info, ds.name, "../workspace.json", 0, 100)
    with pytest.raises(UnsafePathException):
        backend.datastore_stat(info, ds.name, "../")


@pytest.mark.contract
def test_unknown_datastore(ws) -> None:
    name = unique("nope").replace("-", "_")
    with pytest.raises(NotFoundException, match=name):
        Datastore.get(ws, name)


@pytest.mark.contract
def test_missing_source_folder(ws, tmp_path: Path) -> None:
    with pytest.raises(NotFoundException):
        ws.get_default_datastore().upload(str(tmp_path / "absent"), "x", show_progress=False)


@pytest.mark.contract
@pytest.mark.parametrize("target", ["../escape", "/abs", "a/../../b", "..\\win"])
def test_traversal_in_target_path_refused(ws, tmp_path: Path, target: str) -> None:
    src = make_tree(tmp_path)
    ds = ws.get_default_datastore()
    before = ds.list_files()
    with pytest.raises(UnsafePathException):
        ds.upload(str(src), target, show_progress=False)
    assert ds.list_files() == before


@pytest.mark.contract
@pytest.mark.parametrize("prefix", ["../", "/etc", "a/../../b"])
def test_traversal_in_download_prefix_refused(ws, tmp_path: Path, prefix: str) -> None:
    ds = ws.get_default_datastore()
    with pytest.raises(UnsafePathException):
        ds.download(str(tmp_path / "dl"), prefix=prefix, show_progress=False)
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").iterdir())


@pytest.mark.local_only
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
