"""Issue 8's acceptance flow: the seed doc ("train and register scikit-learn models at scale") with the
REAL azureml-core + azureml-train-core client, written as a user writes it: no simml import, plain
``Workspace.from_config()`` (the environment `simml serve --write-env` printed points the client's
ambient auth, ARM and blob traffic at the emulator). Run by tests/test_emulator_seed.py.

argv: the project folder (holding train_iris.py, which logs through the real SDK), a folder with
iris.csv, the experiment, cluster and model names, and a scratch folder for downloads."""
import json
import sys
import time
from pathlib import Path

from azureml.core import Experiment, ScriptRunConfig, Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.core.model import Model
from azureml.train.sklearn import SKLearn

project, data, experiment_name, cluster_name, model_name, scratch = sys.argv[1:7]
scratch = Path(scratch)
steps = {"start": time.time()}


def step(name):
    steps[name] = time.time()  # wall clock: the bench splits the server's request log by step


ws = Workspace.from_config()
experiment = Experiment(workspace=ws, name=experiment_name)
step("workspace")

datastore = ws.get_default_datastore()
datastore.upload(src_dir=data, target_path="iris", overwrite=True, show_progress=True)
step("upload")

try:
    ComputeTarget(workspace=ws, name=cluster_name)
    lookup = "found"
except ComputeTargetException as exc:
    lookup = "ComputeTargetException: " + " ".join(str(exc).split())[:300]
config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", max_nodes=4)
cluster = ComputeTarget.create(ws, cluster_name, config)
cluster.wait_for_completion(show_output=True, min_node_count=None, timeout_in_minutes=20)
step("compute")

estimator = SKLearn(source_directory=project,
                    script_params={"--kernel": "linear", "--penalty": 1.0,
                                   "--data-folder": datastore.path("iris").as_mount()},
                    compute_target=cluster, entry_script="train_iris.py",
                    pip_packages=["joblib"])
run = experiment.submit(estimator)
details = run.wait_for_completion(show_output=True)
step("train")

metrics = run.get_metrics()
files = sorted(run.get_file_names())
run.download_file(name="outputs/model.joblib", output_file_path=str(scratch / "run-model.joblib"))
first = run.register_model(model_name=model_name, model_path="outputs/model.joblib")
second = run.register_model(model_name=model_name, model_path="outputs/model.joblib")
listed = sorted(m.version for m in Model.list(ws, name=model_name))
latest = Model(ws, model_name)
downloaded = latest.download(target_dir=str(scratch / "model"), exist_ok=True)
step("register")

local = ScriptRunConfig(source_directory=project, script="train_iris.py",
                        arguments=["--kernel", "rbf", "--penalty", 0.5],
                        compute_target="local", environment=estimator.run_config.environment)
local_run = experiment.submit(local)
local_details = local_run.wait_for_completion(show_output=True)
step("local")

print("RESULT " + json.dumps({
    "workspace": [ws.name, ws.subscription_id, ws.resource_group],
    "auth": type(getattr(ws, "_auth_object", None)).__name__,
    "first_lookup": lookup, "cluster": [type(cluster).__name__, cluster.provisioning_state],
    "run_id": run.id, "status": details["status"], "target": details["target"],
    "metrics": metrics, "files": files,
    "versions": [first.version, second.version], "listed": listed,
    "latest": [latest.name, latest.version, latest.run_id],
    "downloaded": str(Path(downloaded).resolve()),
    "local": [local_run.id, local_details["status"], local_details["target"],
              local_run.get_metrics()],
    "steps": steps}))
