"""HyperDrive as every backend serves it (``contract``, ``tests/_contract.py``): a sweep's trials
run as child runs, the best run is the one with the best logged primary metric, ``cancel()``
stops the active trials and samples no more, and a bad child configuration writes nothing.

The local backend sweeps with its own engine (``simml_local.sweep``), the azure backend through
Azure's HyperDrive service; both run trials on an AmlCompute cluster (Azure's HyperDrive refuses
``'local'``). Trials are user-managed (nothing to build) and log through simml's
``Run.get_context()``. Names are unique: they hold in a shared workspace.
``tests/test_hyperdrive_runs.py`` has the local engine's own (reproducibility, policies on a
manual clock: ``local_only``).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from _contract import unique
from simml.core import Environment, Experiment, ScriptRunConfig
from simml.core.compute import AmlCompute, ComputeTarget, ComputeTargetException
from simml.exceptions import RunConfigurationException
from simml.train.hyperdrive import (GridParameterSampling, HyperDriveConfig, HyperDriveRun,
                                    PrimaryMetricGoal, choice)

pytestmark = pytest.mark.contract

TRIAL = textwrap.dedent("""
    import argparse, time
    from simml.core.run import Run
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--kind", default="a")
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    run = Run.get_context()
    run.log("acc", round(args.rate * (2 if args.kind == "b" else 1), 6))
    run.flush()
    deadline = time.monotonic() + args.sleep
    while time.monotonic() < deadline:
        time.sleep(0.2)
""")


@pytest.fixture
def cluster(ws: Any, contract_backend: str) -> Iterator[AmlCompute]:
    """A cluster of 2 nodes of its own (provisioned at once where time is simulated); deleted
    at teardown."""
    timings = {}
    if contract_backend == "local":
        from simml.core.compute.cluster import INSTANT
        timings = {"_timings": INSTANT}
    name = unique("hd")[:16]
    target = ComputeTarget.create(ws, name, AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=2, **timings))
    target.wait_for_completion(show_output=False)
    yield target
    try:
        target.delete()
    except ComputeTargetException:
        pass


def child(tmp_path: Path, target: Any, arguments: list[Any] | None = None) -> ScriptRunConfig:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "train.py").write_text(TRIAL)
    environment = Environment(unique("user-managed"))
    environment.python.user_managed_dependencies = True
    return ScriptRunConfig(str(folder), "train.py", arguments=arguments or [],
                           compute_target=target, environment=environment)


def grid(config: ScriptRunConfig, goal: PrimaryMetricGoal = PrimaryMetricGoal.MAXIMIZE
         ) -> HyperDriveConfig:
    return HyperDriveConfig(GridParameterSampling({"--rate": choice(0.25, 0.5),
                                                   "--kind": choice("a", "b")}),
                            "acc", goal, max_total_runs=4, max_concurrent_runs=2,
                            run_config=config)


def test_sweep_trials_and_the_best_run(ws: Any, cluster: Any, tmp_path: Path) -> None:
    """Four trials, two at a time: each a child with its hyperparameters and what it logged;
    the best run is the child with the best logged value, whichever backend ran the sweep."""
    run = Experiment(ws, unique("sweep")).submit(grid(child(tmp_path, cluster,
                                                            ["--rate", 0.1])))
    assert isinstance(run, HyperDriveRun) and run.id.startswith("HD_")
    assert run.wait_for_completion()["status"] == "Completed"
    children = {c.id: c for c in run.get_children()}
    assert sorted(children) == [f"{run.id}_{n}" for n in range(4)]
    assert {c.get_status() for c in children.values()} == {"Completed"}
    parameters = {k: json.loads(v) for k, v in run.get_hyperparameters().items()}
    assert sorted((p["--rate"], p["--kind"]) for p in parameters.values()) == [
        (0.25, "a"), (0.25, "b"), (0.5, "a"), (0.5, "b")]
    logged = {child_id: metrics["acc"] for child_id, metrics in run.get_metrics().items()}
    for child_id, p in parameters.items():  # the sampled value replaced the child's own
        assert logged[child_id] == round(p["--rate"] * (2 if p["--kind"] == "b" else 1), 6)
    best = run.get_best_run_by_primary_metric()
    assert best is not None and logged[best.id] == max(logged.values()) == 1.0
    ranked = run.get_children_sorted_by_primary_metric()
    assert [row["best_primary_metric"] for row in ranked] == sorted(logged.values(),
                                                                    reverse=True)
    assert ranked[0]["run_id"] == best.id and ranked[0]["status"] == "Completed"
    assert json.loads(ranked[0]["hyperparameters"]) == {"--rate": 0.5, "--kind": "b"}
    assert run.primary_metric_name == "acc"


def test_cancel_stops_the_active_trials(ws: Any, cluster: Any, tmp_path: Path) -> None:
    """``cancel()`` of a sweep whose trials would run for ten minutes: its active trials end
    Canceled, nothing more is sampled, and the sweep ends Canceled."""
    run = Experiment(ws, unique("sweep-cancel")).submit(
        grid(child(tmp_path, cluster, ["--sleep", 600]), PrimaryMetricGoal.MINIMIZE))
    deadline = time.monotonic() + 300  # a deadline for the wait, not a timing assertion
    while time.monotonic() < deadline:
        statuses = [c.get_status() for c in run.get_children()]
        if "Running" in statuses:
            break
        assert run.get_status() not in ("Completed", "Failed", "Canceled")
        time.sleep(0.5)
    run.cancel()
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Canceled"
    children = {c.id: c.get_status() for c in run.get_children()}
    assert sorted(children) == [f"{run.id}_{n}" for n in range(2)]  # max_concurrent_runs
    assert set(children.values()) == {"Canceled"}


def test_a_bad_child_configuration_writes_nothing(ws: Any, cluster: Any,
                                                  tmp_path: Path) -> None:
    config = child(tmp_path, cluster)
    config.script = "missing.py"
    experiment = Experiment(ws, unique("sweep-bad"))
    with pytest.raises(RunConfigurationException, match="was not found"):
        experiment.submit(grid(config))
    assert list(experiment.get_runs()) == []
