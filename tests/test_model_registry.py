"""The model registry: Azure's ``Model`` / ``run.register_model`` over the local backend.

Covers versions under eight concurrent processes, child paths, (de)serialising, download into the
working directory and ``get_model_path``, deletion down to the folders, that every bad input
changes nothing, the seed notebook's ``ModelPathNotFoundException`` with no uploaded file, and
kill -9 mid-registration.

``local_only``: they look at the registry's folders and need an empty workspace. What every
backend serves is in ``tests/test_model_contract.py``, with the local backend's extra checks of
the same behaviours (registering a file or a folder, list filters, download, tag and property
updates, registering from a run, the seed case) guarded there by ``ws.backend == "local"``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simml.core import Experiment, Model
from simml.exceptions import (
    ModelNotFoundException,
    ModelPathNotFoundException,
    UnsafePathException,
    WebserviceException,
)
from test_model_contract import SEE, models_root, snapshot, tree, write

pytestmark = pytest.mark.local_only


# --- registering -----------------------------------------------------------------------------------

def test_child_paths_register_only_the_chosen_files(ws) -> None:
    write("bundle/keep.pkl", "k")
    write("bundle/extra/also.txt", "a")
    write("bundle/skip.log", "s")
    model = Model.register(ws, "bundle", "picked", child_paths=["keep.pkl", "extra"])
    assert model.files == ["bundle/extra/also.txt", "bundle/keep.pkl"]


def test_serialize_and_deserialize(ws) -> None:
    write("m.pkl")
    model = Model.register(ws, "m.pkl", "ser", tags={"k": "v"})
    data = model.serialize()
    assert data["id"] == "ser:1" and data["version"] == 1 and data["tags"] == {"k": "v"}
    assert data["framework"] == "Custom" and data["url"] == model.url
    again = Model.deserialize(ws, data)
    assert (again.id, again.tags, again.created_time) == (model.id, model.tags, model.created_time)
    assert Model.Framework.TENSORFLOW == "TensorFlow" and Model.Framework.ONNX == "Onnx"
    assert Model.Framework.PYTORCH == "PyTorch" and Model.Framework.MULTI == "Multi"
    assert Model.Framework.TFKERAS == "TfKeras" and Model.Framework.CUSTOM == "Custom"


# --- files -------------------------------------------------------------------------------------------

def test_download_into_cwd_respects_existing_file(ws) -> None:
    write("model.pkl", "v1")
    model = Model.register(ws, "model.pkl", "dl2")
    with pytest.raises(WebserviceException, match="File already exists"):
        model.download(".")
    os.remove("model.pkl")
    assert Path(model.download()).read_text() == "v1"


def test_get_model_path_cache_workspace_cwd_and_deployment(ws, monkeypatch) -> None:
    # the local cache, as a deployment or an earlier download leaves it
    write("azureml-models/cached/1/old.pkl", "1")
    write("azureml-models/cached/2/model.pkl", "2")
    assert Model.get_model_path("cached", version=1) == os.path.join(
        "azureml-models", "cached", "1", "old.pkl")
    assert Model.get_model_path("cached") == os.path.join("azureml-models", "cached", "2",
                                                          "model.pkl")
    # from the workspace: downloaded into the cache, then reused
    write("src/model.pkl", "remote-v1")
    Model.register(ws, "src/model.pkl", "remote")
    write("src/model.pkl", "remote-v2")
    Model.register(ws, "src/model.pkl", "remote")
    latest = Model.get_model_path("remote", _workspace=ws)
    assert latest == os.path.join("azureml-models", "remote", "2", "model.pkl")
    assert Path(latest).read_text() == "remote-v2"
    older = Model.get_model_path("remote", version=1, _workspace=ws)
    assert Path(older).read_text() == "remote-v1"
    assert Model.get_model_path("remote", _workspace=ws) == latest
    # ./<name>
    write("plain-model", "p")
    assert Model.get_model_path("plain-model") == "plain-model"
    # a deployment: AZUREML_MODEL_DIR points at the version folder, or at the models folder
    write("deploy/azureml-models/served/3/model.pkl", "served")
    monkeypatch.setenv("AZUREML_MODEL_DIR", "deploy/azureml-models/served/3")
    assert Model.get_model_path("served").endswith(os.path.join("served", "3", "model.pkl"))
    monkeypatch.setenv("AZUREML_MODEL_DIR", "deploy/azureml-models")
    assert Model.get_model_path("served", version=3).endswith(os.path.join("3", "model.pkl"))
    monkeypatch.delenv("AZUREML_MODEL_DIR")
    # nowhere
    with pytest.raises(ModelNotFoundException, match="not found in cache"):
        Model.get_model_path("missing-model")
    with pytest.raises(ModelNotFoundException, match="not found"):
        Model.get_model_path("missing-model", _workspace=ws)
    write("azureml-models/two/1/a.pkl")
    write("azureml-models/two/1/b.pkl")
    with pytest.raises(WebserviceException, match="can contain only 1 file or folder"):
        Model.get_model_path("two", version=1)


# --- changing ----------------------------------------------------------------------------------------

def test_delete_removes_row_and_folder(ws) -> None:
    write("m.pkl")
    for _ in range(3):
        Model.register(ws, "m.pkl", "gone")
    Model(ws, "gone", version=2).delete()
    assert [m.version for m in Model.list(ws, name="gone")] == [3, 1]
    assert tree(models_root(ws) / "gone") == ["1", "1/m.pkl", "3", "3/m.pkl"]
    with pytest.raises(ModelNotFoundException):
        Model(ws, "gone", version=2)
    with pytest.raises(WebserviceException):            # Azure's getter raises this class
        Model(ws, id="gone:2")
    Model(ws, "gone").delete()
    assert Model.register(ws, "m.pkl", "gone").version == 2         # highest existing + 1
    Model(ws, "gone", version=1).delete()
    Model(ws, "gone", version=2).delete()
    assert Model.list(ws, name="gone") == [] and not (models_root(ws) / "gone").exists()
    assert [p for p in os.listdir(models_root(ws)) if p.startswith(".simml-tmp-")] == []


# --- bad input changes nothing -----------------------------------------------------------------------

def test_every_bad_input_changes_nothing(ws, tmp_path: Path) -> None:
    write("m.pkl")
    os.mkdir("empty-folder")
    outside = write(tmp_path.parent / f"outside-{tmp_path.name}.pkl")
    os.symlink(outside, "link-out.pkl")
    Model.register(ws, "m.pkl", "kept", tags={"k": "v"}, properties={"p": "1"})
    run = Experiment(ws, "bad").start_logging()
    run.upload_file("outputs/m.pkl", "m.pkl")
    before = snapshot(ws)

    bad_names = ["", "-lead", ".hidden", "a/b", "a b", "../up", "x" * 256, "ü", None, 3]
    cases = [(lambda n=n: Model.register(ws, "m.pkl", n), WebserviceException)
             for n in bad_names]
    cases += [(lambda n=n: run.register_model(n, "outputs/m.pkl"), WebserviceException)
              for n in bad_names]
    cases += [
        (lambda: Model.register(ws, "missing.pkl", "kept"), FileNotFoundError),
        (lambda: Model.register(ws, "missing.pkl", "kept"), ModelPathNotFoundException),
        (lambda: Model.register(ws, str(outside), "kept"), UnsafePathException),
        (lambda: Model.register(ws, f"../{outside.name}", "kept"), PermissionError),
        (lambda: Model.register(ws, "link-out.pkl", "kept"), UnsafePathException),
        (lambda: Model.register(ws, "m.pkl", "kept", tags=["a"]), WebserviceException),
        (lambda: Model.register(ws, "m.pkl", "kept", properties="p"), WebserviceException),
        (lambda: Model.register(ws, "m.pkl", "kept", model_framework_version="1.0"),
         WebserviceException),
        (lambda: Model.register(ws, "empty-folder", "kept"), WebserviceException),
        (lambda: Model.register(ws, ".", "kept", child_paths=["missing"]), WebserviceException),
        (lambda: run.register_model("kept", "outputs/m.pkl", tags="x"), WebserviceException),
        (lambda: run.register_model("kept", "outputs/m.pkl", model_framework_version="1"),
         WebserviceException),
        (lambda: run.register_model("kept", "outputs/nothing.pkl"), ModelPathNotFoundException),
        (lambda: run.register_model("kept", "../outputs/m.pkl"), ModelPathNotFoundException),
        (lambda: run.register_model("kept", "/etc/passwd"), ModelPathNotFoundException),
        (lambda: run.register_model("kept", "outputs/m"), ModelPathNotFoundException),
        (lambda: Model(ws, "unknown"), ModelNotFoundException),
        (lambda: Model(ws, "kept", version=7), ModelNotFoundException),
        (lambda: Model(ws, id="kept:7"), WebserviceException),
        (lambda: Model(ws, id="kept:abc"), ModelNotFoundException),
        (lambda: Model(ws, "kept", version="one"), WebserviceException),
        (lambda: Model(ws), WebserviceException),
        (lambda: Model(ws, "kept").add_properties({"p": "2"}), WebserviceException),
    ]
    for call, expected in cases:
        with pytest.raises(expected):
            call()
        assert snapshot(ws) == before, call
    assert Model(ws, "kept").tags == {"k": "v"} and Model(ws, "kept").properties == {"p": "1"}
    assert Model.register(ws, "m.pkl", "kept").version == 2       # and the registry still works


# --- from a run --------------------------------------------------------------------------------------

def test_seed_case_with_no_uploaded_files_lists_an_empty_set(ws) -> None:
    run = Experiment(ws, "seed").start_logging(outputs=None)
    write("model.joblib")
    run.complete()
    with pytest.raises(ModelPathNotFoundException) as info:
        run.register_model("sklearn-iris", model_path="model.joblib")
    assert info.value.message.startswith(
        "Could not locate the provided model_path model.joblib in the set of files uploaded to "
        f"the run: [] {SEE}")
    assert Model.list(ws) == []


# --- reliability: processes --------------------------------------------------------------------------

CONCURRENT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from simml.core import Model, Workspace
    ws = Workspace.get("test-ws")
    proc = sys.argv[1]
    src = Path("p" + proc) / "model.pkl"
    src.parent.mkdir(exist_ok=True)
    for i in range(25):
        src.write_text(proc + "-" + str(i))
        Model.register(ws, str(src), "shared", tags={"proc": proc, "i": str(i)})
""")


def test_eight_processes_registering_one_name_get_versions_1_to_200(ws) -> None:
    children = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(p)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for p in range(8)]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    models = Model.list(ws, name="shared")
    assert sorted(m.version for m in models) == list(range(1, 201))
    assert len({m.id for m in models}) == 200
    for p in range(8):
        assert sorted(int(m.tags["i"]) for m in models if m.tags["proc"] == str(p)) == list(
            range(25))
    root = models_root(ws) / "shared"
    for m in models:        # every row's folder holds the file that registration copied
        assert (root / str(m.version) / "model.pkl").read_text() == \
            f"{m.tags['proc']}-{m.tags['i']}"
    assert sorted(int(v) for v in os.listdir(root)) == list(range(1, 201))
    assert [p for p in os.listdir(models_root(ws)) if p.startswith(".simml-tmp-")] == []
    assert Model(ws, "shared").version == 200


KILLED = textwrap.dedent("""
    import sys, time
    import simml_local.registry as registry
    from simml.core import Model, Workspace
    where = sys.argv[1]
    if where == "copy":
        real, count = registry.atomic_copy, [0]
        def copy(*args, **kwargs):
            count[0] += 1
            if count[0] == 50:
                print("copying", flush=True)
            if count[0] >= 50:
                time.sleep(0.05)
            return real(*args, **kwargs)
        registry.atomic_copy = copy
    else:
        def insert(*args, **kwargs):
            print("in transaction", flush=True)
            time.sleep(600)
        registry._insert_version = insert
    ws = Workspace.get("test-ws")
    Model.register(ws, "big", "big-model")
    print("registered", flush=True)
""")


def make_big_folder() -> int:
    chunk = os.urandom(64 * 1024)
    for i in range(400):
        write(f"big/part-{i // 100}/shard-{i:04d}.bin").write_bytes(chunk)
    return 400


@pytest.mark.parametrize("where", ["copy", "transaction"])
def test_sigkill_mid_registration_leaves_no_visible_version(ws, where: str) -> None:
    n = make_big_folder()
    child = subprocess.Popen([sys.executable, "-c", KILLED, where], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    line = child.stdout.readline().strip()
    if line == "Registering model big-model":
        line = child.stdout.readline().strip()
    assert line in ("copying", "in transaction"), child.stderr.read()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert Model.list(ws) == []
    with pytest.raises(ModelNotFoundException):
        Model(ws, "big-model")
    leftovers = os.listdir(models_root(ws))
    if where == "copy":       # the staging folder of the dead process, nothing under the name
        assert any(p.startswith(".simml-tmp-") for p in leftovers)
        assert "big-model" not in leftovers
    else:                     # renamed into place but never committed: an orphan folder
        assert (models_root(ws) / "big-model" / "1").is_dir()

    model = Model.register(ws, "big", "big-model")
    assert model.version == 1 and len(model.files) == n
    assert len(tree(models_root(ws) / "big-model" / "1" / "big")) == n + 4
    assert [p for p in os.listdir(models_root(ws)) if p.startswith(".simml-tmp-")] == []
    assert Path(model.download("check")).is_dir()
