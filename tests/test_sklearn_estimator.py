"""The deprecated estimators (``simml.train.sklearn.SKLearn``, ``simml.train.estimator.Estimator``):
Azure's signatures and warnings, script_params → arguments, the legacy pins mapped to this
interpreter, the generated run definition, and submission through ``experiment.submit``.

Tests with a workspace are ``contract`` (docs/testing.md): the definition, the refusals and the
submission hold on every backend (unique names: a shared workspace). Signatures and argument
mapping touch no backend: no marker.
"""

from __future__ import annotations

import inspect
import logging
import platform
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

from _contract import unique
from simml.core import Experiment
from simml.exceptions import NotFoundException, RunConfigurationException, TrainingException
from simml.train.estimator import Estimator, script_params_to_arguments
from simml.train.sklearn import SKLearn

SKLEARN_SIGNATURE = (
    "source_directory, *, compute_target=None, vm_size=None, vm_priority=None, "
    "entry_script=None, script_params=None, use_docker=True, custom_docker_image=None, "
    "image_registry_details=None, user_managed=False, conda_packages=None, pip_packages=None, "
    "conda_dependencies_file_path=None, pip_requirements_file_path=None, "
    "conda_dependencies_file=None, pip_requirements_file=None, environment_variables=None, "
    "environment_definition=None, inputs=None, shm_size=None, resume_from=None, "
    "max_run_duration_seconds=None, framework_version=None, _enable_optimized_mode=False, "
    "_disable_validation=True, _show_lint_warnings=False, _show_package_warnings=False")


def parameters(cls: type) -> str:
    signature = inspect.signature(cls.__init__)
    parts = []
    for p in list(signature.parameters.values())[1:]:
        if p.kind is p.KEYWORD_ONLY and "*" not in parts:
            parts.append("*")
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts)


def project(tmp_path: Path, script: str = "print('hello')\n", name: str = "train.py") -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(script))
    return folder


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == logger and r.levelno == logging.WARNING]


def no_runs_and_no_snapshots(ws, experiment: Experiment) -> None:
    assert list(experiment.get_runs()) == []
    if ws.backend == "local":  # the local backend's snapshots are folders of the workspace
        snapshots = Path(ws.get_details()["root"]) / "snapshots"
        assert not snapshots.exists() or not any(snapshots.iterdir())


def test_signatures_are_azures() -> None:
    assert parameters(SKLearn) == SKLEARN_SIGNATURE
    estimator = parameters(Estimator)
    assert estimator.startswith(
        "source_directory, *, compute_target=None, vm_size=None, vm_priority=None, "
        "entry_script=None, script_params=None, node_count=1, process_count_per_node=1, "
        "distributed_backend=None, distributed_training=None, use_gpu=False, use_docker=True, "
        "custom_docker_base_image=None, custom_docker_image=None")
    assert "source_directory_data_store=None" in estimator
    assert SKLearn.get_supported_versions() == ["0.20.3"]


@pytest.mark.contract
def test_script_params_become_a_flat_argument_list(ws, caplog, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING)
    estimator = SKLearn(str(project(tmp_path)), entry_script="train.py",
                        script_params={"--kernel": "linear", "--penalty": 1.0})
    assert estimator.arguments == ["--kernel", "linear", "--penalty", 1.0]
    assert estimator.script_params == {"--kernel": "linear", "--penalty": 1.0}
    warnings = messages(caplog, "simml.train.sklearn")
    assert warnings[0] == (
        "'SKLearn' estimator is deprecated. Please use 'ScriptRunConfig' from "
        "'simml.core.script_run_config' with your own defined environment or the "
        "AzureML-Tutorial curated environment.")
    assert not any("You have specified to install packages" in m for m in warnings)
    definition = estimator._validated(Experiment(ws, unique("mapping")))
    assert definition["arguments"] == ["--kernel", "linear", "--penalty", 1.0]
    assert definition["script"] == "train.py" and definition["target"] == "local"


def test_value_kinds_and_flags() -> None:
    arguments = script_params_to_arguments(
        {"--n": 3, "--rate": 0.5, "--verbose": True, "--name": "x", "--flag": None, "--empty": ""})
    assert arguments == ["--n", 3, "--rate", 0.5, "--verbose", True, "--name", "x", "--flag",
                         "--empty"]


def test_pip_packages_log_azures_note(caplog, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING)
    SKLearn(str(project(tmp_path)), entry_script="train.py", pip_packages=["joblib"])
    assert ("You have specified to install packages in your run. Note that you have overridden "
            "Azure ML's installation of the following packages: ['joblib']. We cannot guarantee "
            "image build will succeed.") in messages(caplog, "simml.train.sklearn")


@pytest.mark.contract
def test_legacy_pins_are_mapped_with_one_warning(ws, caplog, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING)
    estimator = SKLearn(str(project(tmp_path)), entry_script="train.py", pip_packages=["joblib"],
                        framework_version="0.20.3")
    pins = [m for m in messages(caplog, "simml.train.sklearn") if "legacy pins" in m]
    assert len(pins) == 1
    python, sklearn, scipy = platform.python_version(), version("scikit-learn"), version("scipy")
    for text in ("python 3.6.2", "scikit-learn==0.20.3", "scipy==1.2.1", "'0.20.3'",
                 f"Python {python}", f"scikit-learn=={sklearn}", f"scipy=={scipy}"):
        assert text in pins[0], text
    definition = estimator._validated(Experiment(ws, unique("pins")))
    env = definition["environment"]
    assert env["python"]["userManagedDependencies"] is False
    dependencies = env["python"]["condaDependencies"]
    pip = [p for d in dependencies["dependencies"] if isinstance(d, dict) for p in d["pip"]]
    assert "joblib" in pip and f"scikit-learn=={sklearn}" in pip and f"scipy=={scipy}" in pip
    assert f"python={python}" in dependencies["dependencies"]
    assert definition["estimator"]["legacyPins"] == {
        "python": "3.6.2", "scikit-learn": "0.20.3", "scipy": "1.2.1"}
    assert definition["estimator"]["frameworkPins"] == {
        "python": python, "scikit-learn": sklearn, "scipy": scipy}


@pytest.mark.contract
def test_a_users_own_pin_wins_over_the_mapped_one(ws, tmp_path: Path) -> None:
    estimator = SKLearn(str(project(tmp_path)), entry_script="train.py",
                        pip_packages=["scikit-learn>=1.3", "joblib"])
    env = estimator._validated(Experiment(ws, unique("own-pin")))["environment"]
    pip = [p for d in env["python"]["condaDependencies"]["dependencies"]
           if isinstance(d, dict) for p in d["pip"]]
    assert "scikit-learn>=1.3" in pip
    assert not any(p.startswith("scikit-learn==") for p in pip)


def test_unsupported_framework_version(tmp_path: Path) -> None:
    with pytest.raises(TrainingException, match=r"framework_version '1\.0'.*0\.20\.3"):
        SKLearn(str(project(tmp_path)), entry_script="train.py", framework_version="1.0")


@pytest.mark.contract
@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, object(), (1,)])
def test_unsupported_script_param_values_submit_nothing(ws, tmp_path: Path, value) -> None:
    experiment = Experiment(ws, unique("bad-params"))
    with pytest.raises(TrainingException, match=r"script_params\['--bad'\]"):
        experiment.submit(SKLearn(str(project(tmp_path)), entry_script="train.py",
                                  script_params={"--ok": 1, "--bad": value}))
    no_runs_and_no_snapshots(ws, experiment)


@pytest.mark.contract
def test_other_refusals_submit_nothing(ws, tmp_path: Path) -> None:
    folder = str(project(tmp_path))
    experiment = Experiment(ws, unique("refused"))
    with pytest.raises(TrainingException, match="non-empty string"):
        SKLearn(folder, entry_script="train.py", script_params={1: "x"})
    with pytest.raises(TrainingException, match="must be a dict"):
        SKLearn(folder, entry_script="train.py", script_params=["--a", 1])
    with pytest.raises(TrainingException, match="vm_size"):
        SKLearn(folder, entry_script="train.py", vm_size="STANDARD_D2_V2")
    with pytest.raises(TrainingException, match="environment_definition"):
        from simml.core.environment import Environment
        SKLearn(folder, entry_script="train.py", pip_packages=["joblib"],
                environment_definition=Environment("mine"))
    with pytest.raises(TrainingException, match="entry_script"):
        experiment.submit(SKLearn(folder))
    with pytest.raises(RunConfigurationException, match="was not found"):
        experiment.submit(SKLearn(folder, entry_script="missing.py"))
    with pytest.raises(TrainingException, match="Distributed"):
        Estimator(folder, entry_script="train.py", node_count=2)
    no_runs_and_no_snapshots(ws, experiment)


@pytest.mark.contract
def test_use_docker_records_whether_it_was_explicit(ws, tmp_path: Path) -> None:
    folder = str(project(tmp_path))
    experiment = Experiment(ws, unique("docker"))
    implicit = SKLearn(folder, entry_script="train.py")._validated(experiment)
    assert implicit["docker"]["enabled"] is True and implicit["docker"]["explicit"] is False
    assert implicit["environment"]["docker"]["enabledSetExplicitly"] is False
    explicit = SKLearn(folder, entry_script="train.py", use_docker=True)._validated(experiment)
    assert explicit["docker"]["explicit"] is True
    assert explicit["environment"]["docker"]["enabled"] is True
    assert explicit["environment"]["docker"]["enabledSetExplicitly"] is True
    off = Estimator(folder, entry_script="train.py", use_docker=False)._validated(experiment)
    assert off["docker"] == {**off["docker"], "enabled": False, "explicit": True}


@pytest.mark.contract
def test_estimator_runs_through_experiment_submit(ws, caplog, tmp_path: Path) -> None:
    caplog.set_level(logging.WARNING)
    folder = project(tmp_path, """
        import os, sys
        from simml.core.run import Run
        run = Run.get_context()
        run.log("args", " ".join(sys.argv[1:]))
        run.log("greeting", os.environ["GREETING"])
        os.makedirs("outputs", exist_ok=True)
        open("outputs/done.txt", "w").write("ok")
    """)
    estimator = Estimator(str(folder), entry_script="train.py",
                          script_params={"--alpha": 0.5, "--name": "x", "--quiet": None},
                          environment_variables={"GREETING": "hi"})
    assert messages(caplog, "simml.train.estimator")[0].startswith("'Estimator' is deprecated.")
    run = Experiment(ws, unique("estimator")).submit(estimator, tags={"kind": "estimator"})
    details = run.wait_for_completion()
    assert details["status"] == "Completed"
    assert run.get_metrics() == {"args": "--alpha 0.5 --name x --quiet", "greeting": "hi"}
    assert "outputs/done.txt" in run.get_file_names()
    assert run.get_tags()["kind"] == "estimator"
    definition = details["runDefinition"]
    assert definition["environment"]["python"]["userManagedDependencies"] is True
    if ws.backend == "local":  # simml's own definition; Azure keeps its own run definition
        assert definition["estimator"]["class"] == "Estimator"
        assert definition["snapshotId"]


@pytest.mark.contract
def test_data_references_in_script_params(ws, tmp_path: Path) -> None:
    datastore = ws.get_default_datastore()
    x = unique("x")  # a path of its own in a shared datastore
    root, folder = datastore.as_mount(), datastore.path(x).as_download()
    estimator = SKLearn(str(project(tmp_path)), entry_script="train.py",
                        script_params={"--all": datastore, "--root": root, "--x": folder})
    assert estimator.arguments[:2] == ["--all", estimator.arguments[1]]
    assert estimator.arguments[2:] == ["--root", root, "--x", folder]
    experiment = Experiment(ws, unique("refs"))
    with pytest.raises(NotFoundException, match=f"workspaceblobstore/{x}"):
        estimator._validated(experiment)  # nothing at x in the datastore yet
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "f.txt").write_text("f")
    datastore.upload(str(tmp_path / "up"), target_path=x, show_progress=False)
    definition = estimator._validated(experiment)
    configs = [a["dataReference"] for a in definition["arguments"] if isinstance(a, dict)]
    assert [(c["pathOnDataStore"], c["mode"]) for c in configs] == [
        (None, "mount"), (None, "mount"), (x, "download")]
    assert set(definition["dataReferences"]) == {c["name"] for c in configs}
