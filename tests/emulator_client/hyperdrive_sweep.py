"""Run by tests/test_emulator_hyperdrive.py with the REAL azureml-core + azureml-train-core client:
a HyperDrive sweep as the seed-era notebooks write it. argv: the project folder, the experiment.

An AmlCompute cluster (created when missing), the SKLearn estimator (pip_packages=['joblib']: the
execution tests' environment, so its build is reused), RandomParameterSampling over --penalty
(uniform) and --kernel (choice), a BanditPolicy, max_total_runs=4, max_concurrent_runs=2;
wait_for_completion(show_output=True), then what the client reads back: get_children,
get_best_run_by_primary_metric, get_metrics, and the parent fetched again by id (Run.get: a
HyperDriveRun rebuilt from its tags) for get_hyperparameters and
get_children_sorted_by_primary_metric."""
import json
import shutil
import sys
import tempfile
from pathlib import Path

from azureml.core import Experiment, Run, Workspace
from azureml.core.compute import AmlCompute, ComputeTarget
from azureml.core.compute_target import ComputeTargetException
from azureml.train.hyperdrive import (BanditPolicy, HyperDriveConfig, PrimaryMetricGoal,
                                      RandomParameterSampling, choice, uniform)
from azureml.train.sklearn import SKLearn

from simml.emulator.client_auth import SimmlEmulatorAuthentication

project, experiment_name = Path(sys.argv[1]), sys.argv[2]
ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())
try:
    cluster = ComputeTarget(workspace=ws, name="cpu-cluster")
except ComputeTargetException:
    cluster = ComputeTarget.create(ws, "cpu-cluster", AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=4))
    cluster.wait_for_completion(show_output=True)

source = Path(tempfile.mkdtemp(prefix="sweep-", dir="."))
shutil.copy(project / "trial_sdk.py", source / "train.py")
estimator = SKLearn(source_directory=str(source), compute_target=cluster, entry_script="train.py",
                    script_params={"--kernel": "linear", "--penalty": 1.0},
                    pip_packages=["joblib"])
sampling = RandomParameterSampling({"--penalty": uniform(0.5, 2.0),
                                    "--kernel": choice("linear", "rbf")})
config = HyperDriveConfig(estimator=estimator, hyperparameter_sampling=sampling,
                          policy=BanditPolicy(evaluation_interval=1, slack_factor=0.2),
                          primary_metric_name="Accuracy",
                          primary_metric_goal=PrimaryMetricGoal.MAXIMIZE,
                          max_total_runs=4, max_concurrent_runs=2)
run = Experiment(ws, experiment_name).submit(config)
details = run.wait_for_completion(show_output=True)
children = list(run.get_children())
best = run.get_best_run_by_primary_metric()
# The submitted object's tags are those of its last refresh (the client caches the run DTO and
# stops refreshing once wait_for_completion saw a final status), so the children's
# hyperparameters are read from the parent fetched again by id, as a notebook would.
hydrated = Run.get(ws, run.id)
print("RESULT " + json.dumps({
    "run_id": run.id, "run_class": type(run).__name__, "status": run.get_status(),
    "details_status": details["status"],
    "children": {c.id: {"status": c.get_status(), "class": type(c).__name__,
                        "parent": c.parent.id, "tags": c.get_tags()} for c in children},
    "best_id": best.id if best is not None else None,
    "best_metrics": best.get_metrics() if best is not None else None,
    "metrics": run.get_metrics(),
    "hydrated_class": type(hydrated).__name__,
    "hydrated_hyperparameters": hydrated.get_hyperparameters(),
    "sorted": hydrated.get_children_sorted_by_primary_metric(),
    "hydrated_metric": hydrated.hyperdrive_config._primary_metric_config,
    "hydrated_policy": hydrated.hyperdrive_config._policy_config,
}))
