"""Run by tests/test_emulator_hyperdrive.py with the REAL azureml-train-core client: the other
HyperDrive cases, in one client process. argv: the project folder, the experiment, the id of a
sweep simml's own API submitted (the reverse direction).

The trials run user-managed (the emulator's interpreter: nothing to build) and log through
simml's job-side Run. A GridParameterSampling sweep of a ScriptRunConfig with custom_run_id (the
grid, exactly), HyperDriveRun.cancel() of a sweep whose trials sleep, the service's refusals as
the client raises them (an invalid parameter space, an unknown compute target), and the sweep
simml submitted, read by id (Run.get) as a HyperDriveRun."""
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from azureml.core import Environment, Experiment, Run, ScriptRunConfig, Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.train.hyperdrive import (GridParameterSampling, HyperDriveConfig, PrimaryMetricGoal,
                                      RandomParameterSampling, choice, uniform)
from azureml.train.sklearn import SKLearn

from simml.emulator.client_auth import SimmlEmulatorAuthentication

project, experiment_name, simml_sweep_id = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
try:
    ComputeTarget(workspace=ws, name="cpu-cluster")
except ComputeTargetException:
    ComputeTarget.create(ws, "cpu-cluster", AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=4)).wait_for_completion()
experiment = Experiment(ws, experiment_name)
source = Path(tempfile.mkdtemp(prefix="grid-", dir="."))
shutil.copy(project / "trial_simml.py", source / "train.py")
environment = Environment("user-managed")
environment.python.user_managed_dependencies = True
result = {}


def sweep(sampling, arguments=(), **kwargs):
    child = ScriptRunConfig(str(source), "train.py", arguments=list(arguments),
                            compute_target="cpu-cluster", environment=environment)
    return HyperDriveConfig(run_config=child, hyperparameter_sampling=sampling,
                            primary_metric_name="Accuracy",
                            primary_metric_goal=PrimaryMetricGoal.MAXIMIZE, **kwargs)


def failure(submit):
    try:
        submit()
        return "no exception"
    except Exception as exc:  # noqa: BLE001 - the type is what the test checks
        return {"type": type(exc).__name__, "message": str(exc)}


# a grid: exactly its points, whatever max_total_runs says; the parent id chosen by the client
grid_id = f"grid_{uuid.uuid4().hex[:10]}"
grid = experiment.submit(sweep(GridParameterSampling({"--penalty": choice(0.5, 1.25),
                                                       "--kernel": choice("linear", "rbf")}),
                               max_total_runs=10, max_concurrent_runs=4,
                               custom_run_id=grid_id))
grid.wait_for_completion(show_output=False)
hydrated = Run.get(ws, grid.id)
best = hydrated.get_best_run_by_primary_metric()
result["grid"] = {
    "id": grid.id, "status": grid.get_status(), "class": type(hydrated).__name__,
    "hyperparameters": hydrated.get_hyperparameters(),
    "children": {c.id: c.get_status() for c in hydrated.get_children()},
    "best_id": best.id if best is not None else None,
    "sorted": hydrated.get_children_sorted_by_primary_metric()}

# cancel: trials that sleep; canceled once one runs
sleeper = experiment.submit(sweep(RandomParameterSampling({"--penalty": uniform(0.5, 1.5)}),
                                  arguments=["--sleep", 300], max_total_runs=4,
                                  max_concurrent_runs=2))
deadline = time.monotonic() + 180
seen = {}
while time.monotonic() < deadline:
    seen = {c.id: c.get_status() for c in sleeper.get_children()}
    if "Running" in seen.values():
        break
    time.sleep(0.5)
answer = sleeper.cancel()
sleeper.wait_for_completion(show_output=False, raise_on_error=False)
result["cancel"] = {
    "id": sleeper.id, "seen": seen, "answer": getattr(answer, "result", None),
    "status": sleeper.get_status(),
    "children": {c.id: c.get_status() for c in sleeper.get_children()},
    "again": failure(sleeper.cancel)}

# the service's refusals, as the client raises them (nothing is created)
result["bad_space"] = failure(lambda: experiment.submit(sweep(
    RandomParameterSampling({"--penalty": ["gaussian", [0, 1]]}), max_total_runs=2)))
result["unknown_target"] = failure(lambda: experiment.submit(HyperDriveConfig(
    estimator=SKLearn(str(source), compute_target="no-such-cluster", entry_script="train.py"),
    hyperparameter_sampling=RandomParameterSampling({"--penalty": uniform(0.5, 1.5)}),
    primary_metric_name="Accuracy", primary_metric_goal=PrimaryMetricGoal.MAXIMIZE,
    max_total_runs=2)))

# the reverse: a sweep simml's API submitted, read through the client
theirs = Run.get(ws, simml_sweep_id)
best = theirs.get_best_run_by_primary_metric()
result["simml_sweep"] = {
    "class": type(theirs).__name__, "status": theirs.get_status(),
    "hyperparameters": theirs.get_hyperparameters(),
    "metric": theirs.hyperdrive_config._primary_metric_config,
    "generator": theirs.hyperdrive_config._generator_config,
    "best_id": best.id if best is not None else None}
print("RESULT " + json.dumps(result))
