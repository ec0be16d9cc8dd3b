"""The model registry as every backend serves it (``contract``, ``tests/_contract.py``): register
from files and from a run's files, versions, getters, list filters, download, tag and property
updates, deletion, and the seed case's ``ModelPathNotFoundException``.

They hold in a shared workspace: every model name is unique to the test, so versions count from
1 and listings are filtered by name. ``tests/test_model_registry.py`` has the local backend's
own (the registry's folders, concurrent processes, kill -9: ``local_only``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _contract import unique
from simml.core import Experiment, Model
from simml.exceptions import ModelNotFoundException, ModelPathNotFoundException, WebserviceException

pytestmark = pytest.mark.contract

SEE = "See https://aka.ms/run-logging for more details."


def write(path: str | Path, text: str = "x") -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_register_a_file_versions_count_up_and_getters_find_them(ws, capsys) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    X, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), "model.joblib")
    name = unique("sklearn-iris")

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

    second = Model.register(ws, "./model.joblib", name)
    third = Model.register(ws, str(Path("model.joblib").resolve()), name)
    assert (second.version, third.version) == (2, 3)
    assert Model(ws, name).version == 3                       # latest
    assert Model(ws, name, version=2).id == f"{name}:2"
    assert Model(ws, id=f"{name}:1").description == "first"
    assert [m.version for m in Model.list(ws, name=name)] == [3, 2, 1]
    loaded = joblib.load(Model(ws, name, version=1).download("dl"))
    assert loaded.predict(X[:1]).shape == (1,)


def test_register_a_folder_keeps_its_tree(ws) -> None:
    write("export/model.pkl", "weights")
    write("export/conf/params.json", "{}")
    model = Model.register(ws, "export", unique("folder-model"))
    assert model.files == ["export/conf/params.json", "export/model.pkl"]
    path = model.download("out")
    assert Path(path) == Path("out/export")
    assert Path("out/export/conf/params.json").read_text() == "{}"
    assert Path("out/export/model.pkl").read_text() == "weights"


def test_list_filters_and_order(ws) -> None:
    write("m.pkl")
    alpha, beta = unique("alpha"), unique("beta")
    Model.register(ws, "m.pkl", alpha, tags={"stage": "prod"}, properties={"owner": "ann"})
    Model.register(ws, "m.pkl", alpha, tags={"stage": "dev"})
    Model.register(ws, "m.pkl", beta, tags={"stage": "prod", "team": "x"})

    def ids(**kwargs) -> list[str]:
        return [m.id for m in Model.list(ws, **kwargs) if m.name in (alpha, beta)]

    assert ids() == [f"{beta}:1", f"{alpha}:2", f"{alpha}:1"]          # newest first
    assert ids(name=alpha) == [f"{alpha}:2", f"{alpha}:1"]
    assert ids(tags=["team"]) == [f"{beta}:1"]
    assert ids(tags=[["stage", "prod"]]) == [f"{beta}:1", f"{alpha}:1"]
    assert ids(properties=[["owner", "ann"]]) == [f"{alpha}:1"]
    assert ids(properties=[["owner", "bob"]]) == []
    assert ids(name=alpha, latest=True) == [f"{alpha}:2"]


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


def test_tags_and_properties_updates(ws) -> None:
    write("m.pkl")
    name = unique("tagged")
    model = Model.register(ws, "m.pkl", name, tags={"a": "1", "b": "2"}, properties={"p": "x"})
    model.add_tags({"a": "10", "c": 3})
    model.remove_tags(["b"])
    model.add_properties({"q": "y"})
    fresh = Model(ws, name)
    assert fresh.tags == {"a": "10", "c": "3"}
    assert {k: fresh.properties[k] for k in ("p", "q")} == {"p": "x", "q": "y"}
    model.update(description="replaced")
    assert Model(ws, name).description == "replaced"


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
    experiment = Experiment(ws, unique("iris-train"))
    run = experiment.start_logging()
    write("outputs/model.joblib", "fitted")
    write("outputs/extra/vocab.txt", "v")
    run.log("accuracy", 0.95)
    run.complete()                                            # uploads ./outputs
    name = unique("sklearn-iris")
    model = run.register_model(name, model_path="outputs/model.joblib", tags={"accuracy": 0.95})
    assert (model.id, model.run_id, model.experiment_name) == (f"{name}:1", run.id,
                                                               experiment.name)
    assert model.files == ["model.joblib"] and model.tags == {"accuracy": "0.95"}
    assert model.run.id == run.id
    assert Path(model.download("got")).read_text() == "fitted"
    folder = run.register_model(name, model_path="outputs")
    assert folder.version == 2
    assert folder.files == ["outputs/extra/vocab.txt", "outputs/model.joblib"]
    assert [m.id for m in Model.list(ws, run_id=run.id, name=name)] == [f"{name}:2",
                                                                         f"{name}:1"]


def test_seed_case_model_saved_to_cwd_is_not_among_the_run_files(ws) -> None:
    """train.py saved the model in the working directory, not under outputs/, so the run never
    uploaded it: ModelPathNotFoundException, listing the run's files."""
    run = Experiment(ws, unique("seed")).start_logging()
    write("model.joblib", "m")
    write("outputs/other.txt", "uploaded at completion")
    run.complete()
    name = unique("sklearn-iris")
    with pytest.raises(ModelPathNotFoundException) as info:
        run.register_model(name, model_path="model.joblib")
    assert "Could not locate the provided model_path model.joblib in the set of files uploaded " \
           "to the run: ['outputs/other.txt']" in info.value.message
    assert Model.list(ws, name=name) == []
    run.upload_file("outputs/model.joblib", "model.joblib")    # the fix the message suggests
    assert run.register_model(name, model_path="outputs/model.joblib").version == 1
