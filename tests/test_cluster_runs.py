"""Runs on a simulated AmlCompute cluster, driven by a manual clock (the test never sleeps to
simulate: it advances simulated time and polls briefly for the detached runners to react).

``local_only`` (docs/testing.md): a manual clock and simulated cluster timings, which only the
local backend has; ``tests/test_submit_contract.py`` submits on every backend.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _waiting import eventually
from simml.core import Experiment, Run, ScriptRunConfig
from simml.core.compute import AmlCompute, ComputeTarget
from simml.core.compute.cluster import Timings

pytestmark = pytest.mark.local_only

TIMINGS = Timings(provision_seconds=60, node_start_seconds=120, node_leave_seconds=30)


def make_cluster(ws, max_nodes: int, idle: int = 300) -> AmlCompute:
    config = AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", min_nodes=0, max_nodes=max_nodes,
        idle_seconds_before_scaledown=idle, _timings=TIMINGS)
    cluster = ComputeTarget.create(ws, "cpu-cluster", config)
    ws.advance_clock(TIMINGS.provision_seconds)
    cluster.wait_for_completion(show_output=False)
    return cluster


def project(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.py").write_text(textwrap.dedent("""
        from simml.core.run import Run
        run = Run.get_context()
        run.log("done", 1)
        print("job ran", flush=True)
    """))
    return folder


def test_scale_up_run_and_scale_down(ws, tmp_path: Path, capsys) -> None:
    ws.set_clock("manual")
    cluster = make_cluster(ws, max_nodes=1, idle=300)
    assert cluster.get_status().current_node_count == 0
    run = Experiment(ws, "scaling").submit(
        ScriptRunConfig(str(project(tmp_path)), "job.py", compute_target=cluster))
    eventually(lambda: run.get_status() == "Queued", "the run to be Queued")
    queued = [h for h in run.get_details()["statusHistory"] if h["status"] == "Queued"]
    assert queued and queued[0]["time"]
    status = cluster.get_status()
    assert status.node_state_counts.preparing_node_count == 1
    ws.advance_clock(TIMINGS.node_start_seconds)
    details = run.wait_for_completion(show_output=True)
    out = capsys.readouterr().out
    assert details["status"] == "Completed"
    assert "cpu-cluster: 0 -> 1 nodes" in out
    assert "job ran" in out
    assert run.get_metrics() == {"done": 1}
    assert [h["status"] for h in details["statusHistory"]] == [
        "NotStarted", "Starting", "Preparing", "Queued", "Running", "Finalizing", "Completed"]
    status = cluster.get_status()
    assert status.node_state_counts.idle_node_count == 1
    ws.advance_clock(300)
    assert cluster.get_status().node_state_counts.leaving_node_count == 1
    ws.advance_clock(TIMINGS.node_leave_seconds)
    assert cluster.get_status().current_node_count == 0  # back to min_nodes


def test_busy_node_shows_while_the_job_runs(ws, tmp_path: Path) -> None:
    ws.set_clock("manual")
    cluster = make_cluster(ws, max_nodes=1)
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "job.py").write_text("import pathlib, time\n"
                                   "while not pathlib.Path('go').exists(): time.sleep(0.02)\n")
    run = Experiment(ws, "busy").submit(ScriptRunConfig(str(folder), "job.py",
                                                        compute_target=cluster))
    eventually(lambda: run.get_status() == "Queued", "Queued")
    ws.advance_clock(TIMINGS.node_start_seconds)
    eventually(lambda: run.get_status() == "Running", "Running")
    assert cluster.get_status().node_state_counts.running_node_count == 1
    wd = Path(ws.get_details()["root"], "runs", run.id, "wd")
    eventually(lambda: (wd / "job.py").exists(), "the job's working directory")
    (wd / "go").write_text("")
    assert run.wait_for_completion()["status"] == "Completed"


CLIENT = textwrap.dedent("""
    import sys
    from simml.core import Workspace, Experiment, ScriptRunConfig
    ws = Workspace.get("test-ws")
    run = Experiment(ws, "fifo").submit(
        ScriptRunConfig(sys.argv[1], "job.py", compute_target="cpu-cluster"))
    print(run.id)
""")


def _fifo_round(ws, tmp_path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    folder = project(tmp_path)
    run_ids = []
    for _ in range(3):  # three client processes, each exits right after submitting
        done = subprocess.run([sys.executable, "-c", CLIENT, str(folder)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        run_ids.append(done.stdout.split()[-1])
    exp = Experiment(ws, "fifo")
    runs = [Run(exp, run_id) for run_id in run_ids]
    eventually(lambda: all(r.get_status() == "Queued" for r in runs), "all three Queued")
    ws.advance_clock(TIMINGS.node_start_seconds)
    for run in runs:
        assert run.wait_for_completion()["status"] == "Completed"
    history = []
    for run in runs:
        details = run.get_details()
        history.append((run.id, [(h["status"], h["time"]) for h in details["statusHistory"]]))
    return history


START = "manual:2026-03-01T09:00:00+00:00"


def test_three_clients_fifo_on_one_node_with_reproducible_timestamps(ws, tmp_path: Path) -> None:
    ws.set_clock(START)
    make_cluster(ws, max_nodes=1, idle=10_000)
    first = _fifo_round(ws, tmp_path / "one")
    starts = [dict(h)["Running"] for _, h in first]
    assert starts == sorted(starts)
    running_order = sorted(first, key=lambda item: [t for s, t in item[1] if s == "Running"][0])
    assert [run_id for run_id, _ in running_order] == [run_id for run_id, _ in first]
    # a second, identical round from a fresh state gives identical simulated timestamps
    from simml.core import Workspace
    other = Workspace.create("test-ws-2", show_output=False)
    other.set_clock(START)
    make_cluster(other, max_nodes=1, idle=10_000)
    ws_times = [[t for _, t in h] for _, h in first]
    second = _fifo_round_in(other, tmp_path / "two")
    assert [[t for _, t in h] for _, h in second] == ws_times


def _fifo_round_in(ws, tmp_path: Path):
    global CLIENT
    saved = CLIENT
    CLIENT = saved.replace('Workspace.get("test-ws")', f'Workspace.get("{ws.name}")')
    try:
        return _fifo_round(ws, tmp_path)
    finally:
        CLIENT = saved
