"""Run by tests/test_emulator_execution.py with the REAL azureml-core + azureml-train-core client:
the seed doc's training step. argv: the training script to submit (a path), the experiment, and
optionally a folder holding iris.csv (the seed's data step first: uploaded to the default
datastore and passed as --data-folder ds.path('iris').as_mount()).

An AmlCompute cluster (created when missing), the deprecated SKLearn estimator with script_params
and pip_packages=['joblib'], experiment.submit, run.wait_for_completion(show_output=True) (the
driver log streamed, then the Execution Summary), get_metrics and the run's files."""
import json
import shutil
import sys
import tempfile
from pathlib import Path

from azureml.core import Experiment, Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.train.sklearn import SKLearn

from simml.emulator.client_auth import SimmlEmulatorAuthentication

script, experiment_name = Path(sys.argv[1]), sys.argv[2]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
try:
    cluster = ComputeTarget(workspace=ws, name="cpu-cluster")
except ComputeTargetException:
    cluster = ComputeTarget.create(ws, "cpu-cluster", AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=4))
    cluster.wait_for_completion(show_output=True)

source = Path(tempfile.mkdtemp(prefix="project-", dir="."))
shutil.copy(script, source / "train_iris.py")
script_params = {"--kernel": "linear", "--penalty": 1.0}
if len(sys.argv) > 3:  # the seed's data step
    datastore = ws.get_default_datastore()
    datastore.upload(src_dir=sys.argv[3], target_path="iris", overwrite=True, show_progress=True)
    script_params["--data-folder"] = datastore.path("iris").as_mount()
estimator = SKLearn(source_directory=str(source), script_params=script_params,
                    compute_target=cluster, entry_script="train_iris.py", pip_packages=["joblib"])
run = Experiment(ws, experiment_name).submit(estimator)
details = run.wait_for_completion(show_output=True)
print("RESULT " + json.dumps({
    "run_id": run.id, "status": run.get_status(), "details_status": details["status"],
    "target": details["target"], "metrics": run.get_metrics(),
    "files": sorted(run.get_file_names()), "run_class": type(run).__name__}))
