"""The model registry: Azure's ``Model`` / ``run.register_model`` over the local backend.

Covers versions (max + 1, also under eight concurrent processes), the asset layout, list filters,
download / get_model_path, tag and property updates, deletion, that every bad input changes
nothing, the seed notebook's ``ModelPathNotFoundException``, and kill -9 mid-registration.

``local_only``: they look at the registry's folders and need an empty workspace; what every
backend serves is in ``tests/test_model_contract.py``.
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
    UserErrorException,
    WebserviceException,
)

pytestmark = pytest.mark.local_only

SEE = "See https://aka.ms/run-logging for more details."


def models_root(ws) -> Path:
    return Path(ws._info.properties["root"]) / "models"


def tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else []


def snapshot(ws) -> tuple[list[str], list[str]]:
    return sorted(m.id for m in Model.list(ws)), tree(models_root(ws))


def write(path: str | Path, text: str = "x") -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# --- registering -----------------------------------------------------------------------------------

def test_register_a_file_versions_count_up_and_getters_find_them(ws, capsys) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    X, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), "model.joblib")

    first = Model.register(ws, "model.joblib", "sklearn-iris", tags={"area": "iris", "n": 1},
                           properties={"accuracy": 0.97}, description="first",
                           model_framework=Model.Framework.SCIKITLEARN,
                           model_framework_version="1.5")
    assert "Registering model sklearn-iris" in capsys.readouterr().out
    assert (first.name, first.version, first.id) == ("sklearn-iris", 1, "sklearn-iris:1")
    assert first.tags == {"area": "iris", "n": "1"} and first.properties == {"accuracy": "0.97"}
    assert first.model_framework == first.framework == "ScikitLearn"
    assert first.model_framework_version == "1.5" and first.description == "first"
    assert first.url.startswith("aml://asset/") and first.created_time is not None
    assert first.run_id is None and first.files == ["model.joblib"]
    stored = models_root(ws) / "sklearn-iris" / "1" / "model.joblib"
    assert stored.read_bytes() == Path("model.joblib").read_bytes()

    second = Model.register(ws, "./model.joblib", "sklearn-iris")
    third = Model.register(ws, str(Path("model.joblib").resolve()), "sklearn-iris")
    assert (second.version, third.version) == (2, 3)
    assert second.model_framework == "Custom" and second.tags == {}

    assert Model(ws, "sklearn-iris").version == 3                       # latest
    assert Model(ws, "sklearn-iris", version=2).id == "sklearn-iris:2"
    assert Model(ws, id="sklearn-iris:1").description == "first"
    assert Model(ws, "sklearn-iris", tags=[["area", "iris"]]).version == 1
    assert [m.version for m in ws.models["sklearn-iris"]] == [3, 2, 1]
    loaded = joblib.load(Model(ws, "sklearn-iris", version=1).download("dl"))
    assert loaded.predict(X[:1]).shape == (1,)


def test_register_a_folder_keeps_its_tree(ws) -> None:
    write("export/model.pkl", "weights")
    write("export/conf/params.json", "{}")
    model = Model.register(ws, "export", "folder-model")
    assert model.files == ["export/conf/params.json", "export/model.pkl"]
    assert tree(models_root(ws) / "folder-model" / "1") == [
        "export", "export/conf", "export/conf/params.json", "export/model.pkl"]
    path = model.download("out")
    assert Path(path) == Path("out/export")
    assert Path("out/export/conf/params.json").read_text() == "{}"
    assert Path("out/export/model.pkl").read_text() == "weights"


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


# --- listing -----------------------------------------------------------------------------------------

def test_list_filters_and_order(ws) -> None:
    write("m.pkl")
    Model.register(ws, "m.pkl", "alpha", tags={"stage": "prod"}, properties={"owner": "ann"})
    Model.register(ws, "m.pkl", "alpha", tags={"stage": "dev"})
    Model.register(ws, "m.pkl", "beta", tags={"stage": "prod", "team": "x"},
                   model_framework=Model.Framework.ONNX)
    run = Experiment(ws, "train").start_logging()
    run.upload_file("outputs/model.pkl", "m.pkl")
    run.complete()
    run.register_model("gamma", "outputs/model.pkl")

    def ids(**kwargs) -> list[str]:
        return [m.id for m in Model.list(ws, **kwargs)]

    assert ids() == ["gamma:1", "beta:1", "alpha:2", "alpha:1"]         # newest first
    assert ids(name="alpha") == ["alpha:2", "alpha:1"]
    assert ids(tags=["team"]) == ["beta:1"]
    assert ids(tags=["stage=prod"]) == ids(tags=[["stage", "prod"]]) == ["beta:1", "alpha:1"]
    assert ids(tags=[["stage", "prod"], "team"]) == ["beta:1"]
    assert ids(properties=["owner"]) == ids(properties=[["owner", "ann"]]) == ["alpha:1"]
    assert ids(properties=[["owner", "bob"]]) == []
    assert ids(run_id=run.id) == ["gamma:1"]
    assert ids(latest=True) == ["gamma:1", "beta:1", "alpha:2"]
    assert ids(name="alpha", latest=True, tags=["stage=prod"]) == ["alpha:1"]
    assert ids(model_framework="Onnx") == ["beta:1"]
    assert ids(name="nothing") == []
    with pytest.raises(UserErrorException):
        Model.list(ws, tags={"stage": "prod"})      # Azure: tags must be a list
    with pytest.raises(UserErrorException):
        Model.list(ws, page_count=5)


# --- files -------------------------------------------------------------------------------------------

def test_download_refuses_to_overwrite_unless_exist_ok(ws) -> None:
    write("model.pkl", "v1")
    model = Model.register(ws, "model.pkl", "dl")
    assert Path(model.download("target")) == Path("target/model.pkl")
    Path("target/model.pkl").write_text("changed locally")
    with pytest.raises(WebserviceException, match="File already exists. To overwrite, set "
                                                  "exist_ok to True."):
        model.download("target")
    assert Path("target/model.pkl").read_text() == "changed locally"
    assert Path(model.download("target", exist_ok=True)).read_text() == "v1"
    assert Path(model.download("target", exists_ok=True)).read_text() == "v1"


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

def test_tags_and_properties_updates(ws, capsys) -> None:
    write("m.pkl")
    model = Model.register(ws, "m.pkl", "tagged", tags={"a": "1", "b": "2"},
                           properties={"p": "x"})
    model.add_tags({"a": "10", "c": 3})
    assert "Replacing tag a -> 1 with a -> 10" in capsys.readouterr().out
    model.remove_tags(["b", "nope"])
    assert "Tag with key nope not found." in capsys.readouterr().out
    model.add_properties({"q": "y", "p": "x"})                # same value again: fine
    assert model.tags == {"a": "10", "c": "3"} and model.properties == {"p": "x", "q": "y"}
    fresh = Model(ws, "tagged")
    assert fresh.tags == {"a": "10", "c": "3"} and fresh.properties == {"p": "x", "q": "y"}

    with pytest.raises(WebserviceException, match="add-only"):
        model.add_properties({"p": "changed", "r": "new"})
    assert Model(ws, "tagged").properties == {"p": "x", "q": "y"}   # nothing of it was applied

    model.update(tags={"only": "this"}, description="replaced")
    fresh = Model(ws, "tagged")
    assert fresh.tags == {"only": "this"} and fresh.description == "replaced"
    model.update_tags_properties(add_tags={"x": "1"}, remove_tags="only",
                                 add_properties={"s": "z"})
    fresh = Model(ws, "tagged")
    assert fresh.tags == {"x": "1"} and fresh.properties == {"p": "x", "q": "y", "s": "z"}
    with pytest.raises(WebserviceException, match="Tags must be a dict"):
        model.add_tags(["x"])
    with pytest.raises(WebserviceException, match="Properties must be a dict"):
        model.add_properties("x")


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

def test_register_model_from_an_interactive_run_after_complete(ws) -> None:
    experiment = Experiment(ws, "iris-train")
    run = experiment.start_logging()
    write("outputs/model.joblib", "fitted")
    write("outputs/extra/vocab.txt", "v")
    run.log("accuracy", 0.95)
    run.complete()                                            # uploads ./outputs
    model = run.register_model("sklearn-iris", model_path="outputs/model.joblib",
                               tags={"accuracy": 0.95}, model_framework="ScikitLearn")
    assert (model.id, model.run_id, model.experiment_name) == (
        "sklearn-iris:1", run.id, "iris-train")
    assert model.files == ["model.joblib"] and model.tags == {"accuracy": "0.95"}
    assert model.run.id == run.id
    assert (models_root(ws) / "sklearn-iris/1/model.joblib").read_text() == "fitted"
    folder = run.register_model("sklearn-iris", model_path="outputs")
    assert folder.version == 2
    assert folder.files == ["outputs/extra/vocab.txt", "outputs/model.joblib"]
    nested = run.register_model("vocab", model_path="./outputs/extra/")
    assert nested.files == ["extra/vocab.txt"]
    run.upload_file("named-like-the-model", "outputs/model.joblib")
    assert run.register_model("named-like-the-model").files == ["named-like-the-model"]
    assert [m.id for m in Model.list(ws, run_id=run.id, name="sklearn-iris")] == [
        "sklearn-iris:2", "sklearn-iris:1"]


def test_seed_case_model_saved_to_cwd_is_not_among_the_run_files(ws) -> None:
    """train.py did ``joblib.dump(model, 'model.joblib')`` in the working directory, not under
    outputs/, so the run never uploaded it: Azure raises ModelPathNotFoundException."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier
    run = Experiment(ws, "seed").start_logging()
    X, y = load_iris(return_X_y=True)
    joblib.dump(DecisionTreeClassifier().fit(X, y), "model.joblib")
    write("outputs/other.txt", "uploaded at completion")
    run.complete()
    before = snapshot(ws)
    with pytest.raises(ModelPathNotFoundException) as info:
        run.register_model("sklearn-iris", model_path="model.joblib")
    message = info.value.message
    assert message.startswith(
        "Could not locate the provided model_path model.joblib in the set of files uploaded to "
        f"the run: ['outputs/other.txt'] {SEE}")
    assert isinstance(info.value, FileNotFoundError)
    assert snapshot(ws) == before
    # the fix the message suggests works
    run.upload_file("outputs/model.joblib", "model.joblib")
    assert run.register_model("sklearn-iris", model_path="outputs/model.joblib").version == 1


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
