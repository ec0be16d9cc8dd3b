"""Run by tests/test_azure_backend.py in the simml-with-azure venv, against `simml serve`: a sweep
written against simml's API, submitted on the azure backend (config.json says so; nothing else
changes), so it reaches the emulator as the SDK's HyperDriveConfig through Azure's HyperDrive
service. argv: the experiment name, the cluster name.

The trials (user-managed: the emulator's interpreter, nothing to build) log through simml's
``Run.get_context()``. Then a second sweep whose trials sleep is canceled through simml's
``HyperDriveRun.cancel()``. Prints one ``RESULT {json}`` line."""
import json
import sys
import tempfile
import time
from pathlib import Path

from simml.core import Environment, Experiment, ScriptRunConfig, Workspace
from simml.core.compute import AmlCompute, ComputeTarget
from simml.train.hyperdrive import (BanditPolicy, GridParameterSampling, HyperDriveConfig,
                                    HyperDriveRun, PrimaryMetricGoal, RandomParameterSampling,
                                    choice, uniform)

TRIAL = '''
import argparse, os, time
from simml.core.run import Run
parser = argparse.ArgumentParser()
parser.add_argument("--kernel", default="linear")
parser.add_argument("--penalty", type=float, default=1.0)
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()
run = Run.get_context()
run.log("Accuracy", round(0.95 - abs(args.penalty - 1.0) / 10
                          - (0.02 if args.kernel == "rbf" else 0.0), 6))
run.tag("seen_run_id", run.id)
run.tag("seen_job_context", os.environ.get("SIMML_JOB_CONTEXT", ""))
print("trial", run.id, vars(args), flush=True)
run.flush()
deadline = time.monotonic() + args.sleep
while time.monotonic() < deadline:
    time.sleep(0.2)
'''

experiment_name, cluster_name = sys.argv[1], sys.argv[2]
ws = Workspace.from_config()
source = Path(tempfile.mkdtemp(prefix="sweep-", dir="."))
(source / "train.py").write_text(TRIAL)
environment = Environment("user-managed-sweep")
environment.python.user_managed_dependencies = True
result = {"backend": ws.backend}

cluster = ComputeTarget.create(ws, cluster_name, AmlCompute.provisioning_configuration(
    vm_size="STANDARD_D2_V2", max_nodes=2))
cluster.wait_for_completion()
try:
    # --- a Random sweep with a Bandit policy: 4 trials, 2 at a time ------------------------------
    child = ScriptRunConfig(str(source), "train.py", arguments=["--kernel", "linear",
                                                                "--penalty", 1.0],
                            compute_target=cluster, environment=environment)
    config = HyperDriveConfig(
        RandomParameterSampling({"--penalty": uniform(0.5, 2.0),
                                 "--kernel": choice("linear", "rbf")},
                                properties={"rngSeed": 7}),
        primary_metric_name="Accuracy", primary_metric_goal=PrimaryMetricGoal.MAXIMIZE,
        max_total_runs=4, max_concurrent_runs=2,
        policy=BanditPolicy(evaluation_interval=1, slack_factor=0.2), run_config=child)
    run = Experiment(ws, experiment_name).submit(config)
    result["class"] = type(run).__name__
    result["id"] = run.id
    details = run.wait_for_completion(show_output=True)
    result["status"] = details["status"]
    reread = HyperDriveRun._from_id(ws, run.id)  # read back by id: settings from Azure
    result["primary_metric"] = reread.primary_metric_name
    children = run.get_children()
    result["children"] = {c.id: {"status": c.get_status(), "tags": c.get_tags(),
                                 "parent": c.parent.id if c.parent is not None else None}
                          for c in children}
    result["hyperparameters"] = run.get_hyperparameters()
    result["metrics"] = run.get_metrics()
    best = run.get_best_run_by_primary_metric()
    result["best_id"] = best.id if best is not None else None
    result["best_metrics"] = best.get_metrics() if best is not None else None
    result["sorted"] = run.get_children_sorted_by_primary_metric()
    result["trials"] = [[t.number, t.run_id, t.status, t.hyperparameters, t.best_primary_metric]
                        for t in run.trials()]

    # --- cancel(): a grid whose trials sleep --------------------------------------------------
    sleeper = ScriptRunConfig(str(source), "train.py", arguments=["--sleep", 600],
                              compute_target=cluster, environment=environment)
    config = HyperDriveConfig(GridParameterSampling({"--penalty": choice(0.5, 1.0, 1.5, 2.0)}),
                              "Accuracy", PrimaryMetricGoal.MINIMIZE, max_total_runs=4,
                              max_concurrent_runs=2, run_config=sleeper)
    canceled = Experiment(ws, experiment_name).submit(config)
    deadline = time.monotonic() + 300  # a deadline for the wait, not a timing assertion
    seen = {}
    while time.monotonic() < deadline:
        seen = {c.id: c.get_status() for c in canceled.get_children()}
        if "Running" in seen.values():
            break
        time.sleep(1)
    canceled.cancel()
    ended = canceled.wait_for_completion(raise_on_error=False)
    result["cancel"] = {"id": canceled.id, "seen": seen, "status": ended["status"],
                        "children": {c.id: c.get_status() for c in canceled.get_children()}}
finally:
    cluster.delete()
print("RESULT " + json.dumps(result))
