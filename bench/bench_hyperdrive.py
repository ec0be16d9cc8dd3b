"""HyperDrive (issue 7): sweep overhead vs plain runs two at a time, and compute saved by Bandit.

1. A 16-trial grid sweep of ``train_iris.py`` (``--kernel`` in {linear, rbf} x 8 ``--penalty``
   values) submitted with the seed-era ``HyperDriveConfig(..., estimator=SKLearn(...))``,
   ``max_concurrent_runs=2``, on an ``AmlCompute`` cluster with ``max_nodes=2`` and ``INSTANT``
   timings, workspace on the system clock; timed from ``experiment.submit`` until
   ``wait_for_completion()`` returns (runner start, the sweep loop, 16 child runs with their
   stages, journal ingestion, ``./outputs`` upload). Checked untimed: 16 Completed children and
   a best run. Floor: the same 16 ``python train_iris.py --kernel K --penalty P`` runs through
   ``xargs -P2 -n4`` with ``SIMML_OFFLINE_MODE=print`` (the plain script, no store), in the same
   bench run. Median of 3 interleaved (order rotated). Target: at most 1.15x the floor.
2. Early termination: a random sweep (seed 7, 12 trials, ``max_concurrent_runs=2``, 2-node
   instant cluster, system clock) of ``train_epochs.py``, an MLP on scikit-learn's digits that
   logs its validation accuracy every epoch (20 epochs), once with ``NoTerminationPolicy`` and
   once with ``BanditPolicy(slack_factor=0.05, evaluation_interval=1, delay_evaluation=4)``.
   Child compute = the sum over children of their Running -> end time (real seconds on the
   system clock; the Bandit children's waits at evaluation points are included). Reported: the
   share of child compute saved, the epochs saved, the stopped trials, whether the best run is
   the same, and the what-if replay's prediction (the NoTermination sweep replayed under the same
   Bandit policy). Median of 3 (saved share), no target.

``--quick``: row 1 with 1 repetition; row 2 with 8 trials, 1 repetition.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import ROOT, Worker, interleave, median, progress, row

TARGET_SWEEP_X = 1.15
KERNELS = ("linear", "rbf")
PENALTIES = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)

EPOCH_SCRIPT = '''"""bench_hyperdrive: an MLP on digits logging its accuracy every epoch."""
import argparse
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from simml.core.run import Run

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.001)
parser.add_argument("--alpha", type=float, default=0.0001)
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()
x, y = load_digits(return_X_y=True)
x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.3, random_state=0)
model = MLPClassifier(hidden_layer_sizes=(64,), learning_rate_init=args.lr, alpha=args.alpha,
                      random_state=0)
run = Run.get_context()
warnings.filterwarnings("ignore")
for epoch in range(args.epochs):
    for _ in range(2):
        model.partial_fit(x_train, y_train, classes=np.arange(10))
    run.log("accuracy", float(model.score(x_test, y_test)))
'''

# ---------------------------------------------------------------------------------------------
# Functions run inside worker processes.

_state: dict[str, Any] = {}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def simml_setup() -> None:
    import logging
    logging.getLogger("simml").setLevel(logging.ERROR)  # SKLearn's deprecation warnings
    from simml.core import Workspace
    from simml.core.compute import AmlCompute, ComputeTarget
    from simml.core.compute.cluster import INSTANT
    ws = Workspace.create("bench", exist_ok=True, show_output=False)
    ws.set_clock("system")
    config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", min_nodes=0,
                                                   max_nodes=2, _timings=INSTANT)
    cluster = ComputeTarget.create(ws, "sweep", config)
    cluster.wait_for_completion(show_output=False)
    _state.update(ws=ws, cluster=cluster)


def simml_grid(src: str) -> dict[str, Any]:
    """The 16-trial grid sweep, from submit until wait_for_completion returns."""
    from simml.core import Experiment
    from simml.train.hyperdrive import (
        GridParameterSampling,
        HyperDriveConfig,
        PrimaryMetricGoal,
        choice,
    )
    from simml.train.sklearn import SKLearn
    estimator = SKLearn(src, compute_target=_state["cluster"], entry_script="train_iris.py",
                        script_params={"--kernel": "linear", "--penalty": 1.0})
    grid = GridParameterSampling({"--kernel": choice(*KERNELS), "--penalty": choice(*PENALTIES)})
    config = HyperDriveConfig(grid, "Accuracy", PrimaryMetricGoal.MAXIMIZE, max_total_runs=16,
                              max_concurrent_runs=2, estimator=estimator)
    t0 = time.perf_counter()
    run = Experiment(_state["ws"], "grid").submit(config)
    details = run.wait_for_completion()
    seconds = time.perf_counter() - t0
    children = list(run.get_children())
    bad = [(c.id, c.get_status()) for c in children if c.get_status() != "Completed"]
    if details["status"] != "Completed" or len(children) != 16 or bad:
        raise RuntimeError(f"sweep {run.id}: {details['status']}, {len(children)} children, {bad}")
    if run.get_best_run_by_primary_metric() is None:
        raise RuntimeError(f"sweep {run.id} has no best run")
    return {"seconds": seconds}


def simml_epochs(src: str, policy: str, total: int) -> dict[str, Any]:
    """A seeded random sweep of train_epochs.py under ``policy`` ('none' or 'bandit')."""
    from simml.core import Experiment, ScriptRunConfig
    from simml.train.hyperdrive import (
        BanditPolicy,
        HyperDriveConfig,
        NoTerminationPolicy,
        PrimaryMetricGoal,
        RandomParameterSampling,
        choice,
        loguniform,
    )
    chosen = bandit_policy() if policy == "bandit" else NoTerminationPolicy()
    sampling = RandomParameterSampling({"--lr": loguniform(-9, -3),
                                        "--alpha": choice(0.0001, 0.001, 0.01)},
                                       properties={"rngSeed": 7})
    config = ScriptRunConfig(src, "train_epochs.py", compute_target=_state["cluster"])
    hd = HyperDriveConfig(sampling, "accuracy", PrimaryMetricGoal.MAXIMIZE, max_total_runs=total,
                          max_concurrent_runs=2, policy=chosen, run_config=config)
    t0 = time.perf_counter()
    run = Experiment(_state["ws"], f"epochs-{policy}").submit(hd)
    if run.wait_for_completion()["status"] != "Completed":
        raise RuntimeError(f"sweep {run.id} did not complete")
    seconds = time.perf_counter() - t0
    compute = 0.0
    for child in run.get_children():
        details = child.get_details()
        history = {h["status"]: _epoch(h["time"]) for h in details["statusHistory"]}
        if "Running" in history and details.get("endTimeUtc"):
            compute += _epoch(details["endTimeUtc"]) - history["Running"]
    trials = run.trials()
    result = {"seconds": seconds, "compute": compute,
              "epochs": sum(t.intervals for t in trials),
              "stopped": [t.number for t in trials if t.status == "Canceled"],
              "best": run.get_best_run_by_primary_metric().id.rsplit("_", 1)[-1]}
    if policy == "none":
        report = run.what_if(BanditPolicy(slack_factor=0.05, evaluation_interval=1,
                                          delay_evaluation=4))
        result["what_if"] = {"stopped": [t.number for t in report.stopped],
                             "saved_intervals": report.saved_intervals,
                             "total_intervals": report.total_intervals}
    return result


def bandit_policy() -> Any:
    from simml.train.hyperdrive import BanditPolicy
    return BanditPolicy(slack_factor=0.05, evaluation_interval=1, delay_evaluation=4)


def plain_grid(src: str) -> float:
    """The same 16 runs of train_iris.py, two at a time with xargs, print-only offline runs."""
    env = dict(os.environ, SIMML_OFFLINE_MODE="print")
    items = "".join(f"--kernel {k} --penalty {p}\n" for k in KERNELS for p in PENALTIES)
    t0 = time.perf_counter()
    proc = subprocess.run(["xargs", "-P2", "-n4", sys.executable, "train_iris.py"], input=items,
                          cwd=src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"xargs -P2 python train_iris.py failed:\n{proc.stderr[-2000:]}")
    return seconds


# ---------------------------------------------------------------------------------------------
# Driver, run in the parent.


def run(quick: bool = False) -> list[dict]:
    reps = 1 if quick else 3
    total = 8 if quick else 12
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="simml-bench-hyperdrive-") as tmp:
        base = Path(tmp)
        folders = {}
        for name in ("iris_simml", "iris_plain", "epochs"):
            folders[name] = base / name
            folders[name].mkdir()
        for name in ("iris_simml", "iris_plain"):
            shutil.copy2(ROOT / "train_iris.py", folders[name] / "train_iris.py")
        (folders["epochs"] / "train_epochs.py").write_text(EPOCH_SCRIPT)
        with Worker("simml") as s, Worker("plain") as p:
            s.call("bench_hyperdrive:simml_setup")
            results = interleave(reps, [
                ("simml", lambda: s.call("bench_hyperdrive:simml_grid",
                                         src=str(folders["iris_simml"]))),
                ("floor", lambda: p.call("bench_hyperdrive:plain_grid",
                                         src=str(folders["iris_plain"]))),
            ], "grid sweep (16 trials)")
            simml_t = [r["seconds"] for r in results["simml"]]
            floor_t = results["floor"]
            simml_s, floor_s = median(simml_t), median(floor_t)
            ratio = simml_s / floor_s
            rows.append(row(
                "16-trial grid sweep of train_iris.py, max_concurrent_runs=2, 2-node cluster",
                simml_s, "s", peer=floor_s,
                peer_name="the 16 runs via xargs -P2 python train_iris.py (floor)",
                higher_is_better=False,
                target=f"≤ {TARGET_SWEEP_X}× floor (ratio ≥ {1 / TARGET_SWEEP_X:.2f}×)",
                ok=ratio <= TARGET_SWEEP_X,
                note=(f"simml/floor = {ratio:.2f}x; HyperDriveConfig(estimator=SKLearn(...)), "
                      f"GridParameterSampling kernel x 8 penalties, INSTANT timings, system "
                      f"clock, submit → wait_for_completion; floor with "
                      f"SIMML_OFFLINE_MODE=print; median of {reps}"
                      + (" interleaved" if reps > 1 else "")),
                samples={"simml": simml_t, "peer": floor_t}))
            pairs = []
            for rep in range(reps):
                order = ["none", "bandit"] if rep % 2 == 0 else ["bandit", "none"]
                pair = {}
                for policy in order:
                    pair[policy] = s.call("bench_hyperdrive:simml_epochs",
                                          src=str(folders["epochs"]), policy=policy, total=total)
                    progress(f"epochs sweep {rep + 1}/{reps}: {policy} "
                             f"{pair[policy]['seconds']:.1f} s, child compute "
                             f"{pair[policy]['compute']:.1f} s")
                pairs.append(pair)
        saved = [1 - p["bandit"]["compute"] / p["none"]["compute"] for p in pairs]
        first = pairs[0]
        same_best = all(p["bandit"]["best"] == p["none"]["best"] for p in pairs)
        what_if = first["none"]["what_if"]
        rows.append(row(
            f"BanditPolicy: child compute saved vs NoTerminationPolicy ({total} trials)",
            100 * median(saved), "%",
            note=(f"child compute (sum of Running→end) NoTermination "
                  f"{median(p['none']['compute'] for p in pairs):.1f} s vs Bandit "
                  f"{median(p['bandit']['compute'] for p in pairs):.1f} s; epochs logged "
                  f"{first['none']['epochs']} vs {first['bandit']['epochs']}; stopped trials "
                  f"{first['bandit']['stopped']}; best trial {first['none']['best']} vs "
                  f"{first['bandit']['best']} (same in every rep: {same_best}); wall "
                  f"{median(p['none']['seconds'] for p in pairs):.1f} s vs "
                  f"{median(p['bandit']['seconds'] for p in pairs):.1f} s; what-if replay of "
                  f"the NoTermination sweep under the same policy predicted trials "
                  f"{what_if['stopped']} stopped, {what_if['saved_intervals']} of "
                  f"{what_if['total_intervals']} epochs saved; BanditPolicy(slack_factor=0.05, "
                  f"delay_evaluation=4), MLP on digits, 20 epochs, seed 7; median of {reps}"),
            samples={"simml": [100 * x for x in saved]}))
    return rows
