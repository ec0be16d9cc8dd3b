"""Run by tests/test_emulator_execution.py with the REAL azureml-core client: what the client
raises for a crashing script (ActivityFailedException with the traceback) and for an unknown
compute target (at submit), and run.cancel() on a local and a cluster run. The environments are
user-managed (the emulator's interpreter: nothing to build). argv: the project folder, the
experiment."""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from azureml.core import Environment, Experiment, ScriptRunConfig, Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.exceptions import ActivityFailedException

from simml.emulator.client_auth import SimmlEmulatorAuthentication

project, experiment_name = Path(sys.argv[1]), sys.argv[2]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
try:
    ComputeTarget(workspace=ws, name="cpu-cluster")
except ComputeTargetException:
    ComputeTarget.create(ws, "cpu-cluster", AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=4)).wait_for_completion()
experiment = Experiment(ws, experiment_name)
source = Path(tempfile.mkdtemp(prefix="project-", dir="."))
for name in ("crash.py", "sleep.py"):
    shutil.copy(project / name, source / name)
environment = Environment("user-managed")
environment.python.user_managed_dependencies = True
result = {}


def config(script, target):
    return ScriptRunConfig(str(source), script, compute_target=target, environment=environment)


# a crashing script: the client's own exception, with the traceback
crashed = experiment.submit(config("crash.py", "local"))
try:
    crashed.wait_for_completion(show_output=True)
    result["crash"] = "no exception"
except ActivityFailedException as exc:
    result["crash"] = {"type": type(exc).__name__, "message": str(exc)}
result["crash_id"] = crashed.id
result["crash_status"] = crashed.get_status()

# an unknown compute target: refused at submit, in the client's own exception
try:
    experiment.submit(config("crash.py", "no-such-cluster"))
    result["unknown_target"] = "no exception"
except Exception as exc:  # noqa: BLE001 - the type is what the test checks
    result["unknown_target"] = {"type": type(exc).__name__, "message": str(exc)}

# cancel: a local run (kill file + Canceled event) and a cluster run (Canceled event)
for target in ("local", "cpu-cluster"):
    run = experiment.submit(config("sleep.py", target))
    deadline = time.monotonic() + 240
    while run.get_status() != "Running" and time.monotonic() < deadline:
        time.sleep(0.5)
    seen = run.get_status()
    run.cancel()
    run.wait_for_completion(show_output=False, raise_on_error=False)
    result[f"cancel_{target}"] = {"id": run.id, "seen": seen, "status": run.get_status()}
print("RESULT " + json.dumps(result))
