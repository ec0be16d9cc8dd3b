"""The model registry as every backend serves it (``contract``, ``tests/_contract.py``): register
from files and from a run's files, versions, getters, list filters, download, tag and property
updates, deletion, and the seed case's ``ModelPathNotFoundException``.

They hold in a shared workspace: every model name is unique to the test, so versions count from
1 and listings are filtered by name. On the local backend the workspace is the test's own, so
the checks under ``if local:`` also look at everything listed, the registry's folders
(``models_root``), exact properties and printed lines, and the local registry's own refusals.
``tests/test_model_registry.py`` has the rest of the local backend's tests (concurrent
processes, kill -9, bad input, ``get_model_path``: ``local_only``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _contract import unique
from simml.core import Experiment, Model
from simml.exceptions import (
    ModelNotFoundException,
    ModelPathNotFoundException,
    UserErrorException,
    WebserviceException,
)

pytestmark = pytest.mark.contract

SEE = "See https://aka.ms/run-logging for more details."


def write(path: str | Path, text: str = "x") -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def models_root(ws) -> Path:
    """The local backend's registry folder: ``<name>/<version>/<files>``."""
    return Path(ws._info.properties["root"]) / "models"


def tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else []


def snapshot(ws) -> tuple[list[str], list[str]]:
    """Everything the local registry holds: its rows and its folders."""
    return sorted(m.id for m in Model.list(ws)), tree(models_root(ws))


def test_register_a_file_versions_count_up_and_getters_find_them(ws, capsys) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    X, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), "model.joblib")
    name = unique("sklearn-iris")
    local = ws.backend == "local"

    first = Model.register(ws, "model.joblib", name, tags={"area": "iris", "n": 1},
                           properties={"accuracy": 0.97}, description="first",
                           model_framework=Model.Framework.SCIKITLEARN,
                           model_framework_version="1.5")
    assert f"Registering model {name}" in capsys.readouterr().out
    assert (first.name, first.version, first.id) == (name, 1, f"{name}:1")
    assert first.tags == {"area": "iris", "n": "1"} and first.properties["accuracy"] == "0.97"
    assert first.model_framework == "ScikitLearn" and first.model_framework_version == "1.5"
    assert first.description == "first" and first.created_time is not None
    assert first.run_id is None and first.files == ["model.joblib"]
    if local:
        assert first.properties == {"accuracy": "0.97"} and first.framework == "ScikitLearn"
        assert first.url.startswith("aml://asset/")
        stored = models_root(ws) / name / "1" / "model.joblib"
        assert stored.read_bytes() == Path("model.joblib").read_bytes()

    second = Model.register(ws, "./model.joblib", name)
    third = Model.register(ws, str(Path("model.joblib").resolve()), name)
    assert (second.version, third.version) == (2, 3)
    if local:
        assert second.model_framework == "Custom" and second.tags == {}
    assert Model(ws, name).version == 3                       # latest
    assert Model(ws, name, version=2).id == f"{name}:2"
    assert Model(ws, id=f"{name}:1").description == "first"
    assert [m.version for m in Model.list(ws, name=name)] == [3, 2, 1]
    if local:
        assert Model(ws, name, tags=[["area", "iris"]]).version == 1
        assert [m.version for m in ws.models[name]] == [3, 2, 1]
    loaded = joblib.load(Model(ws, name, version=1).download("dl"))
    assert loaded.predict(X[:1]).shape == (1,)


def test_register_a_folder_keeps_its_tree(ws) -> None:
    write("export/model.pkl", "weights")
    write("export/conf/params.json", "{}")
    name = unique("folder-model")
    model = Model.register(ws, "export", name)
    assert model.files == ["export/conf/params.json", "export/model.pkl"]
    if ws.backend == "local":
        assert tree(models_root(ws) / name / "1") == [
            "export", "export/conf", "export/conf/params.json", "export/model.pkl"]
    path = model.download("out")
    assert Path(path) == Path("out/export")
    assert Path("out/export/conf/params.json").read_text() == "{}"
    assert Path("out/export/model.pkl").read_text() == "weights"


def test_list_filters_and_order(ws) -> None:
    local = ws.backend == "local"
    write("m.pkl")
    alpha, beta, gamma = unique("alpha"), unique("beta"), unique("gamma")
    Model.register(ws, "m.pkl", alpha, tags={"stage": "prod"}, properties={"owner": "ann"})
    Model.register(ws, "m.pkl", alpha, tags={"stage": "dev"})
    Model.register(ws, "m.pkl", beta, tags={"stage": "prod", "team": "x"},
                   model_framework=Model.Framework.ONNX)
    run = Experiment(ws, unique("train")).start_logging()
    run.upload_file("outputs/model.pkl", "m.pkl")
    run.complete()
    run.register_model(gamma, "outputs/model.pkl")
    a1, a2, b1, g1 = f"{alpha}:1", f"{alpha}:2", f"{beta}:1", f"{gamma}:1"

    def ids(**kwargs) -> list[str]:
        """What the listing shows: in the local workspace (the test's own) everything, in a
        shared one only this test's models."""
        return [m.id for m in Model.list(ws, **kwargs) if local or m.name in (alpha, beta, gamma)]

    assert ids() == [g1, b1, a2, a1]                                   # newest first
    assert ids(name=alpha) == [a2, a1]
    assert ids(tags=["team"]) == [b1]
    assert ids(tags=[["stage", "prod"]]) == [b1, a1]
    assert ids(properties=[["owner", "ann"]]) == [a1]
    assert ids(properties=[["owner", "bob"]]) == []
    assert ids(name=alpha, latest=True) == [a2]
    if local:
        assert ids(tags=["stage=prod"]) == [b1, a1]
        assert ids(tags=[["stage", "prod"], "team"]) == [b1]
        assert ids(properties=["owner"]) == [a1]
        assert ids(run_id=run.id) == [g1]
        assert ids(latest=True) == [g1, b1, a2]
        assert ids(name=alpha, latest=True, tags=["stage=prod"]) == [a1]
        assert ids(model_framework="Onnx") == [b1]
        assert ids(name=unique("nothing")) == []
        with pytest.raises(UserErrorException):
            Model.list(ws, tags={"stage": "prod"})      # Azure: tags must be a list
        with pytest.raises(UserErrorException):
            Model.list(ws, page_count=5)


def test_download_refuses_to_overwrite_unless_exist_ok(ws) -> None:
    write("model.pkl", "v1")
    model = Model.register(ws, "model.pkl", unique("dl"))
    assert Path(model.download("target")) == Path("target/model.pkl")
    Path("target/model.pkl").write_text("changed locally")
    with pytest.raises(WebserviceException, match="File already exists. To overwrite, set "
                                                  "exist_ok to True."):
        model.download("target")
    assert Path("target/model.pkl").read_text() == "changed locally"
    assert Path(model.download("target", exist_ok=True)).read_text() == "v1"
    if ws.backend == "local":
        assert Path(model.download("target", exists_ok=True)).read_text() == "v1"


def test_tags_and_properties_updates(ws, capsys) -> None:
    local = ws.backend == "local"
    write("m.pkl")
    name = unique("tagged")
    model = Model.register(ws, "m.pkl", name, tags={"a": "1", "b": "2"}, properties={"p": "x"})
    model.add_tags({"a": "10", "c": 3})
    if local:
        assert "Replacing tag a -> 1 with a -> 10" in capsys.readouterr().out
    model.remove_tags(["b", "nope"])
    if local:
        assert "Tag with key nope not found." in capsys.readouterr().out
    model.add_properties({"q": "y"})
    if local:  # the same value again is fine here; Azure's SDK refuses any key already there
        model.add_properties({"p": "x"})
        assert model.tags == {"a": "10", "c": "3"} and model.properties == {"p": "x", "q": "y"}
    fresh = Model(ws, name)
    assert fresh.tags == {"a": "10", "c": "3"}
    assert {k: fresh.properties[k] for k in ("p", "q")} == {"p": "x", "q": "y"}
    if local:
        assert fresh.properties == {"p": "x", "q": "y"}
        with pytest.raises(WebserviceException, match="add-only"):
            model.add_properties({"p": "changed", "r": "new"})
        assert Model(ws, name).properties == {"p": "x", "q": "y"}   # nothing of it was applied

    model.update(tags={"only": "this"}, description="replaced")
    fresh = Model(ws, name)
    assert fresh.description == "replaced"
    if local:
        assert fresh.tags == {"only": "this"}
        model.update_tags_properties(add_tags={"x": "1"}, remove_tags="only",
                                     add_properties={"s": "z"})
        fresh = Model(ws, name)
        assert fresh.tags == {"x": "1"} and fresh.properties == {"p": "x", "q": "y", "s": "z"}
        with pytest.raises(WebserviceException, match="Tags must be a dict"):
            model.add_tags(["x"])
        with pytest.raises(WebserviceException, match="Properties must be a dict"):
            model.add_properties("x")


def test_delete(ws) -> None:
    write("m.pkl")
    name = unique("gone")
    for _ in range(3):
        Model.register(ws, "m.pkl", name)
    Model(ws, name, version=2).delete()
    assert [m.version for m in Model.list(ws, name=name)] == [3, 1]
    with pytest.raises(ModelNotFoundException):
        Model(ws, name, version=2)
    with pytest.raises(ModelNotFoundException):
        Model(ws, unique("never-registered"))


def test_register_model_from_an_interactive_run_after_complete(ws) -> None:
    local = ws.backend == "local"
    experiment = Experiment(ws, unique("iris-train"))
    run = experiment.start_logging()
    write("outputs/model.joblib", "fitted")
    write("outputs/extra/vocab.txt", "v")
    run.log("accuracy", 0.95)
    run.complete()                                            # uploads ./outputs
    name = unique("sklearn-iris")
    model = run.register_model(name, model_path="outputs/model.joblib", tags={"accuracy": 0.95},
                               model_framework="ScikitLearn")
    assert (model.id, model.run_id, model.experiment_name) == (f"{name}:1", run.id,
                                                               experiment.name)
    assert model.files == ["model.joblib"] and model.tags == {"accuracy": "0.95"}
    assert model.run.id == run.id
    if local:
        assert (models_root(ws) / name / "1" / "model.joblib").read_text() == "fitted"
    assert Path(model.download("got")).read_text() == "fitted"
    folder = run.register_model(name, model_path="outputs")
    assert folder.version == 2
    assert folder.files == ["outputs/extra/vocab.txt", "outputs/model.joblib"]
    if local:
        nested = run.register_model(unique("vocab"), model_path="./outputs/extra/")
        assert nested.files == ["extra/vocab.txt"]
        plain = unique("named-like-the-model")    # model_path defaults to the model's name
        run.upload_file(plain, "outputs/model.joblib")
        assert run.register_model(plain).files == [plain]
    assert [m.id for m in Model.list(ws, run_id=run.id, name=name)] == [f"{name}:2",
                                                                         f"{name}:1"]


def test_seed_case_model_saved_to_cwd_is_not_among_the_run_files(ws) -> None:
    """train.py did ``joblib.dump(model, 'model.joblib')`` in the working directory, not under
    outputs/, so the run never uploaded it: Azure raises ModelPathNotFoundException, listing the
    run's files."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier
    local = ws.backend == "local"
    run = Experiment(ws, unique("seed")).start_logging()
    X, y = load_iris(return_X_y=True)
    joblib.dump(DecisionTreeClassifier().fit(X, y), "model.joblib")
    write("outputs/other.txt", "uploaded at completion")
    run.complete()
    name = unique("sklearn-iris")
    before = snapshot(ws) if local else None
    with pytest.raises(ModelPathNotFoundException) as info:
        run.register_model(name, model_path="model.joblib")
    assert "Could not locate the provided model_path model.joblib in the set of files uploaded " \
           "to the run: ['outputs/other.txt']" in info.value.message
    assert Model.list(ws, name=name) == []
    if local:  # the whole message, and nothing changed in the registry (rows or folders)
        assert info.value.message.startswith(
            "Could not locate the provided model_path model.joblib in the set of files uploaded "
            f"to the run: ['outputs/other.txt'] {SEE}")
        assert isinstance(info.value, FileNotFoundError)
        assert snapshot(ws) == before
    run.upload_file("outputs/model.joblib", "model.joblib")    # the fix the message suggests
    assert run.register_model(name, model_path="outputs/model.joblib").version == 1
