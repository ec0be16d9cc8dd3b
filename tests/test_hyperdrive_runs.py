"""HyperDrive sweeps end to end: the real runner, real child processes, an instant cluster.

The training scripts are stdlib-only (they log through ``simml.job``) so each trial is a
fraction of a second; nothing here asserts on timing.

``local_only`` (docs/testing.md): the local sweep engine (``simml_local.sweep``), its reproducibility
at any concurrency, instant clusters and a manual clock; on Azure the HyperDrive service sweeps
(``tests/test_hyperdrive_contract.py`` holds on every backend).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

import _waiting
from simml.cli import cli
from simml.core import Experiment, ScriptRunConfig
from simml.core.compute import AmlCompute, ComputeTarget
from simml.core.compute.cluster import INSTANT
from simml.exceptions import RunConfigurationException
from simml.train.estimator import Estimator
from simml.train.hyperdrive import (
    BanditPolicy,
    BayesianParameterSampling,
    GridParameterSampling,
    HyperDriveConfig,
    HyperDriveRun,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    PrimaryMetricGoal,
    PrimaryMetricNotFoundException,
    RandomParameterSampling,
    TruncationSelectionPolicy,
    choice,
    quniform,
    uniform,
)

pytestmark = pytest.mark.local_only

EPOCHS = 6

TRAIN = textwrap.dedent("""
    import argparse, math, os, sys
    from simml.job import JobRun
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--kind", default="a")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--fail-kind", default="")
    args = parser.parse_args()
    run = JobRun.get_context()
    os.makedirs("outputs", exist_ok=True)
    if args.kind == args.fail_kind:
        print("this kind fails", flush=True)
        sys.exit(3)
    bonus = 0.05 if args.kind == "b" else 0.0
    for epoch in range(1, args.epochs + 1):
        open(f"outputs/epoch_{epoch}", "w").close()
        run.log("acc", round(1 - math.exp(-args.rate * epoch) + bonus, 6))
    open("outputs/done", "w").close()
""")

BLOCKING = textwrap.dedent("""
    import argparse, pathlib, time
    from simml.job import JobRun
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=0.1)
    args = parser.parse_args()
    run = JobRun.get_context()
    run.log("acc", args.rate)
    run.flush()
    while not pathlib.Path("release").exists():
        time.sleep(0.02)
""")


def eventually(condition: Callable[[], bool], what: str) -> None:
    _waiting.eventually(condition, what, seconds=90)  # sweeps take longer


def project(tmp_path: Path, source: str = TRAIN) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(source)
    return folder


def cluster(ws: Any, name: str, nodes: int) -> Any:
    config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", min_nodes=0,
                                                   max_nodes=nodes, _timings=INSTANT)
    target = ComputeTarget.create(ws, name, config)
    target.wait_for_completion(show_output=False)
    return target


def sweep(folder: Path, target: Any, sampling: Any, policy: Any = None, total: int = 8,
          concurrency: int = 2, arguments: list[Any] | None = None, **kwargs: Any
          ) -> HyperDriveConfig:
    if arguments is None:
        arguments = ["--epochs", EPOCHS]
    config = ScriptRunConfig(str(folder), "train.py", arguments=arguments, compute_target=target)
    return HyperDriveConfig(sampling, "acc", PrimaryMetricGoal.MAXIMIZE, max_total_runs=total,
                            max_concurrent_runs=concurrency, policy=policy, run_config=config,
                            **kwargs)


def signature(run: HyperDriveRun) -> tuple[Any, ...]:
    """Everything that must not depend on concurrency: trials, parameters, outcomes, best run."""
    trials = tuple((t.number, json.dumps(t.hyperparameters, sort_keys=True), t.status,
                    t.intervals, t.best_primary_metric, t.error) for t in run.trials())
    best = run.get_best_run_by_primary_metric()
    return trials, best.id.rsplit("_", 1)[-1] if best is not None else None


# --- the sweep runs ------------------------------------------------------------------------------


def test_grid_sweep_of_an_estimator_on_the_cluster(simml_workspace, simml_instant_cluster,
                                                   tmp_path: Path) -> None:
    folder = project(tmp_path)
    estimator = Estimator(str(folder), compute_target=simml_instant_cluster,
                          entry_script="train.py", user_managed=True,
                          script_params={"--rate": 0.01, "--epochs": 3})
    grid = GridParameterSampling({"--kind": choice("a", "b"), "--rate": choice(0.2, 0.5)})
    config = HyperDriveConfig(grid, "acc", PrimaryMetricGoal.MAXIMIZE, max_total_runs=10,
                              max_concurrent_runs=2, estimator=estimator)
    run = Experiment(simml_workspace, "grid").submit(config)
    assert isinstance(run, HyperDriveRun) and run.id.startswith("HD_")
    details = run.wait_for_completion()
    assert details["status"] == "Completed"
    children = list(run.get_children())
    assert [c.id for c in children] == [f"{run.id}_{n}" for n in range(4)]  # the grid, once
    assert all(c.get_status() == "Completed" for c in children)
    assert {c.id: c.parent.id for c in children} == {c.id: run.id for c in children}
    hyper = run.get_hyperparameters()
    assert json.loads(hyper[f"{run.id}_3"]) == {"--kind": "b", "--rate": 0.5}
    # the sampled value replaced script_params' --rate; --epochs kept
    arguments = children[3].get_details()["runDefinition"]["arguments"]
    assert arguments == ["--rate", 0.5, "--epochs", 3, "--kind", "b"]
    assert children[3].get_metrics()["acc"] == [round(1 - 2.718281828459045 ** (-0.5 * e) + 0.05,
                                                      6) for e in (1, 2, 3)]
    ranked = run.get_children_sorted_by_primary_metric()
    assert [r["run_id"] for r in ranked][:2] == [f"{run.id}_3", f"{run.id}_1"]
    assert ranked[0]["best_primary_metric"] == max(children[3].get_metrics()["acc"])
    assert set(ranked[0]) == {"run_id", "hyperparameters", "best_primary_metric", "status"}
    assert run.get_children_sorted_by_primary_metric(top=1, reverse=True)[0]["run_id"] \
        == f"{run.id}_0"
    assert run.get_best_run_by_primary_metric().id == f"{run.id}_3"
    assert set(run.get_metrics()) == {c.id for c in children}
    # Azure rehydrates by type: the parent comes back as a HyperDriveRun
    again = simml_workspace.get_run(run.id)
    assert isinstance(again, HyperDriveRun) and again.get_best_run_by_primary_metric().id \
        == f"{run.id}_3"
    assert isinstance(next(Experiment(simml_workspace, "grid").get_runs()), HyperDriveRun)
    # the CLI shows the sweep
    result = CliRunner().invoke(cli, ["-w", simml_workspace.name, "sweep", "show", run.id])
    assert result.exit_code == 0, result.output
    assert "GRID" in result.output and f"{run.id}_3" in result.output
    assert "4 Completed" in result.output and "best" in result.output
    doc = json.loads(CliRunner().invoke(cli, ["-w", simml_workspace.name, "--json", "sweep",
                                              "show", run.id]).output)
    assert doc["best_run_id"] == f"{run.id}_3" and len(doc["trials"]) == 4


def _bandit_sweep(ws, target, folder: Path, concurrency: int) -> HyperDriveRun:
    space = RandomParameterSampling({"--rate": uniform(0.05, 1.0), "--kind": choice("a", "b")},
                                    properties={"rngSeed": 2024})
    policy = BanditPolicy(slack_factor=0.15, evaluation_interval=1, delay_evaluation=2)
    run = Experiment(ws, f"bandit-{concurrency}").submit(
        sweep(folder, target, space, policy, total=8, concurrency=concurrency))
    assert run.wait_for_completion()["status"] == "Completed"
    return run


def test_seeded_sweep_is_identical_at_concurrency_1_2_and_4(simml_workspace,
                                                            tmp_path: Path) -> None:
    folder = project(tmp_path)
    target = cluster(simml_workspace, "four-nodes", 4)
    runs = {c: _bandit_sweep(simml_workspace, target, folder, c) for c in (1, 2, 4)}
    signatures = {c: signature(run) for c, run in runs.items()}
    assert signatures[1] == signatures[2] == signatures[4]
    trials, best = signatures[1]
    stopped = [t for t in trials if t[2] == "Canceled"]
    assert stopped, "the policy should stop some trials of this sweep"
    assert best is not None and len(trials) == 8
    # a stopped child was really stopped while it ran: fewer epochs, no 'done', Canceled with
    # an error naming the policy, and its job was stopped by the runner
    for c, run in runs.items():
        for trial in run.trials():
            child = simml_workspace.get_run(trial.run_id)
            files = child.get_file_names()
            if trial.status != "Canceled":
                assert trial.intervals == EPOCHS and "outputs/done" in files
                continue
            assert trial.intervals < EPOCHS
            assert f"outputs/epoch_{trial.intervals}" in files
            assert f"outputs/epoch_{trial.intervals + 1}" not in files
            assert "outputs/done" not in files
            details = child.get_details()
            assert details["error"]["error"]["code"] == "EarlyTerminated"
            assert "BanditPolicy stopped trial" in details["error"]["error"]["message"]
            assert [h["status"] for h in details["statusHistory"]][-3:] == [
                "Running", "CancelRequested", "Canceled"]
            log = child.get_details()["logFiles"]
            driver = "azureml-logs/70_driver_log.txt"
            assert driver in log
            text = _read(child, driver)
            assert "cancel requested: stopping the job" in text
    # at concurrency 4 on 4 nodes, trials really ran side by side
    starts = [simml_workspace.get_run(t.run_id).get_details()["statusHistory"]
              for t in runs[4].trials()]
    assert len(starts) == 8


def _read(run: Any, name: str) -> str:
    import io
    with run._store.open_file(run.id, name) as handle:
        return io.TextIOWrapper(handle, encoding="utf-8").read()


def test_median_and_truncation_policies_stop_and_finish(simml_workspace, simml_instant_cluster,
                                                       tmp_path: Path) -> None:
    folder = project(tmp_path)
    space = GridParameterSampling({"--rate": choice(0.9, 0.1, 0.8, 0.05)})
    for policy in (MedianStoppingPolicy(delay_evaluation=2),
                   TruncationSelectionPolicy(50, evaluation_interval=2)):
        run = Experiment(simml_workspace, "policies").submit(
            sweep(folder, simml_instant_cluster, space, policy, total=4, concurrency=2))
        assert run.wait_for_completion()["status"] == "Completed"
        statuses = {t.number: t.status for t in run.trials()}
        assert statuses[0] == "Completed" and statuses[1] == "Canceled", (policy, statuses)
        assert type(policy).__name__ in run.trials()[1].error
        assert run.get_properties()["simml.stoppedTrials"] != "0"


def test_failing_children_are_counted_and_the_sweep_goes_on(simml_workspace,
                                                            simml_instant_cluster,
                                                            tmp_path: Path) -> None:
    folder = project(tmp_path)
    space = GridParameterSampling({"--kind": choice("a", "b", "c"), "--rate": choice(0.3, 0.6)})
    run = Experiment(simml_workspace, "failing").submit(sweep(
        folder, simml_instant_cluster, space, total=6, concurrency=2,
        arguments=["--epochs", 2, "--fail-kind", "b"]))
    assert run.wait_for_completion()["status"] == "Completed"
    statuses = [t.status for t in run.trials()]
    assert statuses == ["Completed", "Completed", "Failed", "Failed", "Completed", "Completed"]
    properties = run.get_properties()
    assert properties["simml.failedTrials"] == "2" and properties["simml.completedTrials"] == "4"
    log = _read(run, "azureml-logs/70_driver_log.txt")
    assert "2 failed (trials [2, 3])" in log
    assert run.get_best_run_by_primary_metric(include_failed=False).id.endswith("_1")  # a tie: 1


def test_every_child_failing_fails_the_sweep(simml_workspace, simml_instant_cluster,
                                             tmp_path: Path) -> None:
    folder = project(tmp_path)
    run = Experiment(simml_workspace, "all-fail").submit(sweep(
        folder, simml_instant_cluster, GridParameterSampling({"--kind": choice("b")}), total=1,
        arguments=["--fail-kind", "b"]))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "AllTrialsFailed"


def test_a_primary_metric_no_child_logs_is_a_clear_error(simml_workspace, simml_instant_cluster,
                                                         tmp_path: Path) -> None:
    folder = project(tmp_path)
    config = ScriptRunConfig(str(folder), "train.py", arguments=["--epochs", 1],
                             compute_target=simml_instant_cluster)
    hd = HyperDriveConfig(GridParameterSampling({"--rate": choice(0.5, 0.6)}), "accuracy",
                          PrimaryMetricGoal.MAXIMIZE, max_total_runs=2, run_config=config)
    run = Experiment(simml_workspace, "no-metric").submit(hd)
    assert run.wait_for_completion()["status"] == "Completed"
    with pytest.raises(PrimaryMetricNotFoundException) as info:
        run.get_best_run_by_primary_metric()
    assert "'accuracy'" in info.value.message and "'acc'" in info.value.message
    result = CliRunner().invoke(cli, ["-w", simml_workspace.name, "sweep", "show", run.id])
    assert result.exit_code == 0 and "No child run" in result.output


def test_cancel_stops_every_child_and_samples_nothing_more(simml_workspace,
                                                           simml_instant_cluster,
                                                           tmp_path: Path) -> None:
    folder = project(tmp_path, BLOCKING)
    space = GridParameterSampling({"--rate": choice(0.1, 0.2, 0.3, 0.4, 0.5)})
    run = Experiment(simml_workspace, "cancel").submit(
        sweep(folder, simml_instant_cluster, space, total=5, concurrency=2, arguments=[]))
    eventually(lambda: [c.get_status() for c in run.get_children()] == ["Running", "Running"],
               "two children running")
    run.cancel()
    details = run.wait_for_completion()
    assert details["status"] == "Canceled"
    children = list(run.get_children())
    assert len(children) == 2
    for child in children:
        child_details = child.get_details()
        assert child_details["status"] == "Canceled"
        assert child_details["error"]["error"]["code"] == "ParentCanceled"


def test_max_duration_on_the_simulated_clock(simml_manual_clock, simml_instant_cluster,
                                             tmp_path: Path) -> None:
    ws = simml_manual_clock.workspace
    folder = project(tmp_path, BLOCKING)
    space = GridParameterSampling({"--rate": choice(0.1, 0.2, 0.3)})
    run = Experiment(ws, "deadline").submit(
        sweep(folder, simml_instant_cluster, space, total=3, concurrency=1, arguments=[],
              max_duration_minutes=10))
    eventually(lambda: [c.get_status() for c in run.get_children()] == ["Running"],
               "the first child running")
    simml_manual_clock.advance(9 * 60)
    time.sleep(0.3)  # the loop looks often; nothing may happen before the deadline
    assert run.get_status() == "Running"
    simml_manual_clock.advance(2 * 60)
    details = run.wait_for_completion()
    assert details["status"] == "Canceled"
    assert details["error"]["error"]["code"] == "MaxDurationExceeded"
    children = list(run.get_children())
    assert len(children) == 1 and children[0].get_status() == "Canceled"


def test_bayesian_sweep_is_reproducible(simml_workspace, simml_instant_cluster,
                                        tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    folder = project(tmp_path)
    space = {"--rate": uniform(0.05, 1.0), "--kind": choice("a", "b"),
             "--epochs": quniform(2, 4, 1)}
    results = []
    for concurrency in (1, 3):
        sampling = BayesianParameterSampling(space, properties={"rngSeed": 9})
        run = Experiment(simml_workspace, f"bayes-{concurrency}").submit(
            sweep(folder, simml_instant_cluster, sampling, total=6, concurrency=concurrency,
                  arguments=[]))
        assert run.wait_for_completion()["status"] == "Completed"
        results.append(signature(run))
        epochs = [c.get_details()["runDefinition"]["arguments"] for c in run.get_children()]
        assert all(isinstance(a[a.index("--epochs") + 1], int) for a in epochs)  # '3', not 3.0
    assert results[0] == results[1]
    assert len(results[0][0]) == 6


def test_what_if_replays_a_finished_sweep(simml_workspace, simml_instant_cluster,
                                          tmp_path: Path) -> None:
    folder = project(tmp_path)
    space = GridParameterSampling({"--rate": choice(0.9, 0.1, 0.8, 0.05)})
    run = Experiment(simml_workspace, "what-if").submit(
        sweep(folder, simml_instant_cluster, space, NoTerminationPolicy(), total=4))
    assert run.wait_for_completion()["status"] == "Completed"
    before = [c.get_status() for c in run.get_children()]
    report = run.what_if(BanditPolicy(slack_factor=0.2, delay_evaluation=2))
    assert [t.number for t in report.stopped] == [1, 3]
    assert all(t.stop_at == 2 and t.saved_intervals == EPOCHS - 2 for t in report.stopped)
    assert report.saved_intervals == 2 * (EPOCHS - 2) and report.total_intervals == 4 * EPOCHS
    assert report.best_trial_before == report.best_trial_after == 0
    assert [c.get_status() for c in run.get_children()] == before  # nothing was re-run
    result = CliRunner().invoke(cli, ["-w", simml_workspace.name, "sweep", "what-if", run.id,
                                      "--policy", "bandit", "--slack-factor", "0.2",
                                      "--delay-evaluation", "2"])
    assert result.exit_code == 0, result.output
    assert "2 of 4 trials would have been stopped" in result.output


def test_bad_child_config_writes_nothing(simml_workspace, tmp_path: Path) -> None:
    folder = project(tmp_path)
    config = ScriptRunConfig(str(folder), "missing.py", compute_target="local")
    hd = HyperDriveConfig(GridParameterSampling({"--rate": choice(0.5)}), "acc",
                          PrimaryMetricGoal.MAXIMIZE, max_total_runs=1, run_config=config)
    with pytest.raises(RunConfigurationException):
        Experiment(simml_workspace, "bad").submit(hd)
    assert list(Experiment(simml_workspace, "bad").get_runs(include_children=True)) == []


def test_a_cancel_reason_recorded_before_the_claim_survives_it(simml_workspace) -> None:
    """A sweep may cancel a trial (with its reason) before a runner has claimed it; the claim
    must keep the reason, so the trial still ends Canceled naming it."""
    from simml.entities import RunCreate
    local = next(iter(simml_workspace._backend.manager.get_plugins()))
    info = simml_workspace._info
    store = local.store(info)
    store.create_run(RunCreate(run_id="claim-race", experiment_name="race"))
    reason = {"code": "EarlyTerminated", "message": "stopped by BanditPolicy"}
    con = store.connection()
    con.execute("INSERT INTO run_exec (run_id, stage, heartbeat, detail) VALUES (?, 'submitted', "
                "?, ?)", ("claim-race", 0.0, json.dumps({"cancelError": reason})))
    assert local.runner_claim(info, "4242:99") == ["claim-race"]
    row = local.exec_row(info, "claim-race")
    assert row["stage"] == "claimed" and json.loads(row["detail"])["runner"] == "4242:99"
    assert local.cancel_error(info, "claim-race") == reason
