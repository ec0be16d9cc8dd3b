"""Run by tests/test_emulator_execution.py with the REAL azureml-core client: a ScriptRunConfig
with compute_target='local' (the client's localrun path), its script logging through the real
SDK. The environment asks for the estimator's packages, so simml builds it once for both tests.
argv: the training script (a path), the experiment."""
import json
import shutil
import sys
import tempfile
from pathlib import Path

from azureml.core import Environment, Experiment, ScriptRunConfig, Workspace
from azureml.core.conda_dependencies import CondaDependencies

from simml.emulator.client_auth import SimmlEmulatorAuthentication

script, experiment_name = Path(sys.argv[1]), sys.argv[2]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
source = Path(tempfile.mkdtemp(prefix="project-", dir="."))
shutil.copy(script, source / "train.py")
environment = Environment("local-sdk")
environment.python.conda_dependencies = CondaDependencies.create(
    python_version="3.6.2", pip_packages=["joblib", "azureml-defaults", "scikit-learn==0.20.3",
                                          "scipy==1.2.1"])
config = ScriptRunConfig(str(source), "train.py", arguments=["--kernel", "rbf", "--penalty", 0.5],
                         compute_target="local", environment=environment)
run = Experiment(ws, experiment_name).submit(config)
invocation = Path(tempfile.gettempdir()) / "azureml_runs" / run.id / "azureml-setup" / \
    "Invocation.sh"
details = run.wait_for_completion(show_output=True)
print("RESULT " + json.dumps({
    "run_id": run.id, "status": run.get_status(), "target": details["target"],
    "metrics": run.get_metrics(), "invocation": invocation.read_text()
    if invocation.exists() else None, "run_class": type(run).__name__}))
