"""Run by tests/test_azure_backend.py in the simml-with-azure venv, against `simml serve`: each
kind of bad input and the typed simml error it must give, Azure's message kept. Prints one
``RESULT {json}`` line: for each case, the error's class name, its simml base classes and text."""
import json
import os
import sys
from pathlib import Path

from simml.exceptions import AzureMLException


def outcome(action):
    try:
        value = action()
    except AzureMLException as exc:
        return {"error": type(exc).__name__, "message": exc.message,
                "bases": [c.__name__ for c in type(exc).__mro__],
                "inner": type(exc.inner_exception).__name__ if exc.inner_exception else None}
    except Exception as exc:  # noqa: BLE001 - an untyped error is a test failure, reported
        return {"error": "UNTYPED " + type(exc).__module__ + "." + type(exc).__name__,
                "message": str(exc)[:2000], "bases": []}
    return {"value": repr(value)[:300]}


def write_config(folder, **overrides):
    config = json.loads(Path(".azureml/config.json").read_text())
    config.update(overrides)
    config = {k: v for k, v in config.items() if v is not None}
    (Path(folder) / ".azureml").mkdir(parents=True, exist_ok=True)
    (Path(folder) / ".azureml" / "config.json").write_text(json.dumps(config))
    return str(Path(folder) / ".azureml" / "config.json")


from simml.core import Experiment, Run, Workspace  # noqa: E402
from simml.core.compute import AmlCompute, ComputeTarget  # noqa: E402

result = {"azureml_after_import": sorted({m.split(".")[0] for m in sys.modules
                                          if m.startswith("azureml")})}
good = json.loads(Path(".azureml/config.json").read_text())
result["no_subscription"] = outcome(lambda: Workspace.from_config(
    path=write_config("nosub", subscription_id=None)))
os.environ["SIMML_BACKEND"] = "azure"
result["get_without_details"] = outcome(lambda: Workspace.get(good["workspace_name"]))
del os.environ["SIMML_BACKEND"]
key = os.environ["SIMML_EMULATOR_KEY"]
os.environ["SIMML_EMULATOR_KEY"] = "not-the-key"
result["wrong_key"] = outcome(lambda: Workspace.from_config())
del os.environ["SIMML_EMULATOR_KEY"]
result["no_key"] = outcome(lambda: Workspace.from_config())
os.environ["SIMML_EMULATOR_KEY"] = key
os.environ.pop("SIMML_TEST_SP_SECRET", None)
result["sp_without_secret"] = outcome(lambda: Workspace.from_config(path=write_config(
    "sp", auth={"type": "service_principal", "tenant_id": "t", "client_id": "c",
                "secret_env": "SIMML_TEST_SP_SECRET"})))
result["unknown_auth"] = outcome(lambda: Workspace.from_config(path=write_config(
    "weird", auth={"type": "password"})))
ws = Workspace.from_config()
result["backend"] = ws.backend
experiment = Experiment(ws, "bad-input")
result["unknown_run"] = outcome(lambda: Run(experiment, "no-such-run"))
result["unknown_compute"] = outcome(lambda: ComputeTarget(ws, "no-such-cpu"))
result["bad_vm_size"] = outcome(lambda: ComputeTarget.create(
    ws, "bad-size-cpu", AmlCompute.provisioning_configuration(vm_size="Standard_Potato",
                                                              max_nodes=1)))
result["compute_after_bad_size"] = sorted(c.name for c in ComputeTarget.list(ws))
result["manual_clock"] = outcome(lambda: ws.set_clock("manual"))
os.environ["SIMML_BACKEND"] = "azure"
result["workspace_create"] = outcome(lambda: Workspace.create(
    "brand-new-ws", subscription_id=good["subscription_id"],
    resource_group=good["resource_group"], show_output=False))
del os.environ["SIMML_BACKEND"]


def sweep():
    """Azure's HyperDrive runs trials on a cluster only: a sweep on 'local' (which the local
    backend runs) is refused before anything is sent."""
    from simml.core import ScriptRunConfig
    from simml.train.hyperdrive import (GridParameterSampling, HyperDriveConfig,
                                        PrimaryMetricGoal, choice)
    Path("sweep").mkdir(exist_ok=True)
    Path("sweep/train.py").write_text("print('hi')\n")
    config = HyperDriveConfig(
        hyperparameter_sampling=GridParameterSampling({"--kernel": choice("a", "b")}),
        primary_metric_name="acc", primary_metric_goal=PrimaryMetricGoal.MAXIMIZE,
        max_total_runs=2, run_config=ScriptRunConfig("sweep", "train.py"))
    return Experiment(ws, "bad-input-sweep").submit(config)


result["hyperdrive"] = outcome(sweep)
print("RESULT " + json.dumps(result))
