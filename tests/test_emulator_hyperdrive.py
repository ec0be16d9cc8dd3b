"""The emulator's HyperDrive service (`simml/emulator/hyperdrive.py`): the real azureml-train-core
client submits `HyperDriveConfig`s to the shared `simml serve`, and simml's sweep engine runs them
(children on the simulated cluster; trials logging through the real SDK's `Run.get_context()` or
simml's own `Run`). The same sweeps are read back through simml's API and CLI, and a sweep simml's
API submitted is read through the client. Bad configurations over plain HTTP get the HyperDrive
service's error shape and create nothing.

The Random sweep's trials use the execution tests' SKLearn environment (built once per session;
reused when those tests ran first); the others run user-managed, on the emulator's interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from _emulator_server import SCOPE, Emulator

PROJECT = Path(__file__).resolve().parent / "emulator_client" / "hyperdrive_project"
HISTORY = f"/history/v1.0{SCOPE}/experiments"
CREATE_TEMPLATE = "/hyperdrive/v1.0/{scope}/runs"


def _accuracy(parameters: dict[str, Any]) -> float:
    """What both trial scripts log for their arguments."""
    kernel = parameters.get("--kernel", "linear")
    return round(0.95 - abs(float(parameters["--penalty"]) - 1.0) / 10
                 - (0.02 if kernel == "rbf" else 0.0), 6)


def _simml_run(emulator: Emulator, run_id: str) -> Any:
    from simml.core.run import Run
    return Run.get(emulator.workspace(), run_id)


def _runs(emulator: Emulator, experiment: str) -> list[Any]:
    from simml.entities import RunQuery
    return emulator.workspace()._history().query_runs(
        RunQuery(experiment_name=experiment, include_children=True))


def _cli(emulator: Emulator, *args: str) -> Any:
    """``simml --json ...`` on the served workspace."""
    done = subprocess.run([sys.executable, "-m", "simml.cli", "--json", *args],
                          cwd=emulator.server_dir, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SIMML_HOME": str(emulator.home)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _hd_path(experiment: str, suffix: str = "/runs") -> str:
    """The client's URL: the experiment's ARM scope URL-encoded into one segment."""
    scope = f"{SCOPE[1:]}/experiments/{experiment}"
    return f"/hyperdrive/v1.0/{quote(scope, safe='')}{suffix}"


# --- the real client -----------------------------------------------------------------------------

def test_random_sweep_with_a_bandit_policy_through_the_real_client(emulator: Emulator,
                                                                   azureml_venv: Path) -> None:
    from simml.train.hyperdrive.run import HyperDriveRun
    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "hyperdrive_sweep.py", str(PROJECT), "hd-sweep")
    entries = emulator.log()[before:]
    out = result["_stdout"]
    parent = result["run_id"]

    assert result["run_class"] == "HyperDriveRun" and parent.startswith("HD_")
    assert result["status"] == result["details_status"] == "Completed"
    # four trials, each a ScriptRun child whose script's real SDK logged to its own run
    children = result["children"]
    assert sorted(children) == [f"{parent}_{n}" for n in range(4)]
    for child_id, child in children.items():
        assert child["status"] == "Completed", child  # slack 0.2 never stops these scores
        assert child["class"] == "ScriptRun" and child["parent"] == parent
        assert child["tags"]["seen_run_id"] == child_id
        assert child["tags"]["seen_parent_id"] == parent
    # the hyperparameters each trial got (Azure's parent tags) are what it logged with
    hyperparameters = {k: json.loads(v) for k, v in result["hydrated_hyperparameters"].items()}
    assert sorted(hyperparameters) == sorted(children)
    for child_id, parameters in hyperparameters.items():
        assert 0.5 <= parameters["--penalty"] <= 2.0
        assert parameters["--kernel"] in ("linear", "rbf")
        assert result["metrics"][child_id] == {"Accuracy": _accuracy(parameters)}
    scores = {child_id: _accuracy(p) for child_id, p in hyperparameters.items()}
    best = max(scores, key=lambda child_id: scores[child_id])
    assert result["best_id"] == best
    assert result["best_metrics"] == {"Accuracy": scores[best]}
    assert [row["run_id"] for row in result["sorted"]] == sorted(
        scores, key=lambda child_id: -scores[child_id])
    assert result["hydrated_class"] == "HyperDriveRun"
    assert result["hydrated_metric"] == {"name": "Accuracy", "goal": "maximize"}
    assert result["hydrated_policy"] == {"name": "Bandit", "properties": {
        "evaluation_interval": 1, "delay_evaluation": 0, "slack_factor": 0.2}}
    # wait_for_completion(show_output=True) streamed the sweep's log, then Azure's summary
    assert "Streaming azureml-logs/hyperdrive.txt" in out
    assert "[hyperdrive] best trial: " in out and f"({best})" in out
    assert "Execution Summary" in out and f"RunId: {parent}" in out

    # the same sweep through simml's API: simml's engine ran what the client configured
    run = _simml_run(emulator, parent)
    assert isinstance(run, HyperDriveRun) and run.get_status() == "Completed"
    settings = run.get_details()["runDefinition"]["hyperdrive"]
    assert settings["maxTotalRuns"] == 4 and settings["maxConcurrentRuns"] == 2
    assert settings["primaryMetricName"] == "Accuracy"
    assert settings["policy"] == {"name": "Bandit", "properties": {
        "evaluation_interval": 1, "delay_evaluation": 0, "slack_factor": 0.2}}
    assert settings["generator"]["name"] == "RANDOM"
    assert settings["generator"]["parameter_space"] == {
        "--penalty": ["uniform", [0.5, 2.0]], "--kernel": ["choice", [["linear", "rbf"]]]}
    assert run.get_best_run_by_primary_metric().id == best
    assert {t.run_id: t.hyperparameters for t in run.trials()} == hyperparameters
    assert run.get_properties()["ContentSnapshotId"]  # the client's snapshot
    for trial in run.trials():
        definition = _simml_run(emulator, trial.run_id).get_details()["runDefinition"]
        variables = definition["environmentVariables"]
        assert variables["AZUREML_SERVICE_ENDPOINT"] == emulator.url
        assert "AZUREML_RUN_ID" not in variables  # each child's own, from the runner
        assert definition["target"] == "cpu-cluster"
    listed = _cli(emulator, "run", "list", "--experiment", "hd-sweep", "--include-children")
    assert {parent, *children} <= {doc.get("run_id", doc.get("id")) for doc in listed}
    shown = _cli(emulator, "sweep", "show", parent)
    assert shown["best_run_id"] == best and shown["counts"] == {"Completed": 4}
    assert shown["sampling"] == "RANDOM" and shown["max_concurrent_runs"] == 2
    # the parent's DTO: Azure's tags, and no run token in the child definition it shows
    status, dto = emulator.request("GET", f"{HISTORY}/hd-sweep/runs/{parent}")
    assert status == 200 and dto["runType"] == "hyperdrive"
    assert dto["tags"][f"_aml_system_{best}"] == json.dumps(hyperparameters[best])
    assert json.loads(dto["tags"]["_aml_system_primary_metric_config"])["name"] == "Accuracy"
    shown = dto["runDefinition"]["child"]["environmentVariables"]
    assert "AZUREML_RUN_TOKEN" not in shown and shown["AZUREML_SERVICE_ENDPOINT"] == emulator.url
    # Azure's sequence: snapshot, then the HyperDrive service, then run history polling
    assert all(e["template"] != "unknown" for e in entries), entries
    assert not [e for e in entries if e["status"] >= 500], entries
    creates = [e for e in entries if e["template"] == CREATE_TEMPLATE]
    assert [e["status"] for e in creates] == [201]


def _simml_grid_sweep(emulator: Emulator) -> str:
    """A sweep submitted through simml's own API (local target), run to its end."""
    from simml.core.experiment import Experiment
    from simml.core.script_run_config import ScriptRunConfig
    from simml.train.hyperdrive import (GridParameterSampling, HyperDriveConfig,
                                        PrimaryMetricGoal, choice)
    config = HyperDriveConfig(GridParameterSampling({"--penalty": choice(0.75, 1.0)}),
                              "Accuracy", PrimaryMetricGoal.MAXIMIZE, max_total_runs=2,
                              run_config=ScriptRunConfig(str(PROJECT), "trial_simml.py"))
    run = Experiment(emulator.workspace(), "hd-simml").submit(config)
    run.wait_for_completion(raise_on_error=True)
    return run.id


def test_grid_cancel_refusals_and_a_simml_sweep_through_the_client(emulator: Emulator,
                                                                   azureml_venv: Path) -> None:
    simml_sweep = _simml_grid_sweep(emulator)
    experiment = f"hd-grid-{uuid.uuid4().hex[:6]}"
    result = emulator.run_client(azureml_venv, "hyperdrive_grid.py", str(PROJECT), experiment,
                                 simml_sweep)

    # the grid: exactly its four points (max_total_runs=10), under the client's run id
    grid = result["grid"]
    assert grid["id"].startswith("grid_") and grid["status"] == "Completed"
    assert grid["class"] == "HyperDriveRun"
    points = sorted((p["--penalty"], p["--kernel"]) for p in
                    map(json.loads, grid["hyperparameters"].values()))
    assert points == [(0.5, "linear"), (0.5, "rbf"), (1.25, "linear"), (1.25, "rbf")]
    assert sorted(grid["children"]) == sorted(grid["hyperparameters"])
    assert set(grid["children"].values()) == {"Completed"}
    best = [k for k, v in grid["hyperparameters"].items()
            if json.loads(v) == {"--penalty": 1.25, "--kernel": "linear"}]
    assert grid["best_id"] == best[0]
    assert grid["sorted"][0]["best_primary_metric"] == 0.925

    # cancel(): the running trials are stopped, nothing more is sampled, the parent is Canceled
    canceled = result["cancel"]
    assert "Running" in canceled["seen"].values(), canceled
    assert canceled["answer"] and canceled["id"] in canceled["answer"]
    assert canceled["status"] == "Canceled"
    assert sorted(canceled["children"]) == [f"{canceled['id']}_{n}" for n in range(2)]
    assert set(canceled["children"].values()) == {"Canceled"}
    for child_id in canceled["children"]:
        error = _simml_run(emulator, child_id).get_details()["error"]
        assert error["error"]["code"] == "ParentCanceled"
    again = canceled["again"]
    assert again["type"] == "TrainingException", again  # already Canceled

    # refusals: the client's own exception, with the service's message; nothing created
    assert result["bad_space"]["type"] == "TrainingException"
    assert "gaussian" in result["bad_space"]["message"]
    assert result["unknown_target"]["type"] == "TrainingException"
    assert "no-such-cluster" in result["unknown_target"]["message"]
    parents = {info.id for info in _runs(emulator, experiment) if info.parent_id is None}
    assert parents == {grid["id"], canceled["id"]}

    # the reverse: simml's sweep, read by id through the client, is a HyperDriveRun
    theirs = result["simml_sweep"]
    ours = _simml_run(emulator, simml_sweep)
    assert theirs["class"] == "HyperDriveRun" and theirs["status"] == "Completed"
    assert theirs["hyperparameters"] == ours.get_hyperparameters()
    assert theirs["metric"] == {"name": "Accuracy", "goal": "maximize"}
    assert theirs["generator"]["name"] == "GRID"
    assert theirs["best_id"] == ours.get_best_run_by_primary_metric().id == f"{simml_sweep}_1"


# --- plain HTTP: bad configurations are refused in the service's shape and change nothing -------

def _dto(**changes: Any) -> dict[str, Any]:
    """A CreateExperimentDto as the client serialises it (``platform_config.Definition``)."""
    overrides = {"script": "train.py", "arguments": [], "target": "local",
                 "framework": "Python", "communicator": "None", "nodeCount": 1,
                 "environment": {"name": "e", "python": {"userManagedDependencies": True}}}
    overrides.update(changes.pop("overrides", {}))
    dto = {"generator_config": {"name": "RANDOM",
                                "parameter_space": {"--penalty": ["uniform", [0.5, 1.5]]}},
           "policy_config": {"name": "Default"},
           "primary_metric_config": {"name": "Accuracy", "goal": "maximize"},
           "max_total_jobs": 2, "max_concurrent_jobs": 1, "max_duration_minutes": 60,
           "platform": "AML", "name": "hd-http", "user": "nobody@example.com",
           "platform_config": {"ServiceArmScope": f"{SCOPE[1:]}/experiments/hd-http",
                               "Definition": {"Overrides": overrides, "TargetDetails": None,
                                              "SnapshotId": "no-such-snapshot"}}}
    dto.update(changes)
    return dto


@pytest.mark.parametrize("dto, status, inner", [
    (_dto(generator_config={"name": "GRID", "parameter_space": {
        "--penalty": ["uniform", [0.5, 1.5]]}}), 400, "InvalidParameterSpace"),
    (_dto(generator_config={"name": "RANDOM", "parameter_space": {
        "--penalty": ["uniform", [2, 1]]}}), 400, "InvalidParameterSpace"),
    (_dto(generator_config={"name": "SOBOL", "parameter_space": {
        "--penalty": ["uniform", [0.5, 1.5]]}}), 400, "InvalidParameterSpace"),
    (_dto(policy_config={"name": "Bandit", "properties": {
        "evaluation_interval": 1, "slack_factor": 0.1, "slack_amount": 0.2}}), 400,
     "InvalidPolicy"),
    (_dto(policy_config={"name": "Oracle"}), 400, "InvalidPolicy"),
    (_dto(primary_metric_config={"name": "Accuracy", "goal": "sideways"}), 400, "BadArgument"),
    (_dto(max_total_jobs=0), 400, "BadArgument"),
    (_dto(max_concurrent_jobs=101), 400, "BadArgument"),
    (_dto(platform="AML_PIPELINES"), 400, "NotSupported"),
    (_dto(resume_from=[{"run_id": "HD_x", "run_scope": {}}]), 400, "NotSupported"),
    (_dto(overrides={"target": "no-such-cluster"}), 404, "ComputeNotFound"),
    (_dto(overrides={"nodeCount": 2}), 400, "NotSupported"),
    (_dto(), 404, "SnapshotNotFound"),
    (_dto(platform_config={"Definition": {"Overrides": None}}), 400, "BadArgument"),
])
def test_bad_configurations_are_refused_in_the_services_shape(
        emulator: Emulator, dto: dict[str, Any], status: int, inner: str) -> None:
    code, answer = emulator.request("POST", _hd_path("hd-http"), json.dumps(dto).encode(),
                                    headers={"Content-Type": "application/json"})
    assert code == status, answer
    # the HyperDrive client's ErrorResponse (int code, message) and Azure's error object
    assert answer["code"] == status and answer["message"]
    assert answer["error"]["innerError"]["code"] == inner
    assert _runs(emulator, "hd-http") == []  # nothing was created


def test_other_refusals_over_http(emulator: Emulator) -> None:
    from simml.core.experiment import Experiment
    # not JSON; another workspace's scope; a run id the store refuses
    code, answer = emulator.request("POST", _hd_path("hd-http"), b"{not json",
                                    headers={"Content-Type": "application/json"})
    assert code == 400 and answer["error"]["innerError"]["code"] == "InvalidJson"
    other = quote(SCOPE[1:].replace("/workspaces/ws1", "/workspaces/other") +
                  "/experiments/hd-http", safe="")
    code, answer = emulator.request("POST", f"/hyperdrive/v1.0/{other}/runs",
                                    json.dumps(_dto()).encode())
    assert code == 404 and answer["code"] == 404
    existing = Experiment(emulator.workspace(), "hd-http-existing").start_logging()
    for run_id, message in ((existing.id, "already exists"), ("-bad", "Invalid run id")):
        code, answer = emulator.request(
            "POST", _hd_path("hd-http-existing", f"/hdruns/{quote(run_id, safe='')}"),
            json.dumps(_dto(name="hd-http-existing")).encode())
        assert code == 400 and message in answer["message"], answer
    existing.complete()
    # a sweep under a parent run (a pipeline step) is not supported
    code, answer = emulator.request("POST", _hd_path("hd-http", "/runs/some-parent"),
                                    json.dumps(_dto()).encode())
    assert code == 400 and answer["error"]["innerError"]["code"] == "NotSupported"
    assert _runs(emulator, "hd-http") == []
    # cancel: an unknown run, and a run that is not a sweep
    code, answer = emulator.request("POST", _hd_path("hd-http", "/runs/no-such-run/cancel"))
    assert code == 404 and answer["code"] == 404
    plain = Experiment(emulator.workspace(), "hd-http").start_logging()
    code, answer = emulator.request("POST", _hd_path("hd-http", f"/runs/{plain.id}/cancel"))
    assert code == 404 and "HyperDrive run" in answer["message"]
    assert _simml_run(emulator, plain.id).get_status() == "Running"
    plain.complete()
