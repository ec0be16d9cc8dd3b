"""Submitting scripts to the 'local' target: a real detached runner and real job processes.

``local_only``: status histories, process groups, the runner itself. What every backend serves is
in ``tests/test_submit_contract.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from simml.core import Experiment, Run, ScriptRunConfig
from simml.exceptions import (
    ActivityFailedException,
    ComputeTargetException,
    RunConfigurationException,
    UserErrorException,
)

pytestmark = pytest.mark.local_only

ROOT = Path(__file__).resolve().parent.parent


def project(tmp_path: Path, script: str, name: str = "job.py") -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(script))
    return folder


def statuses(run: Run) -> list[str]:
    return [h["status"] for h in run.get_details()["statusHistory"]]


def test_train_iris_on_local_target(ws, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train_iris.py").write_text((ROOT / "train_iris.py").read_text())
    config = ScriptRunConfig(str(folder), "train_iris.py",
                             arguments=["--kernel", "linear", "--penalty", 1.0])
    run = Experiment(ws, "sklearn-iris").submit(config)
    details = run.wait_for_completion(show_output=True)
    out = capsys.readouterr().out
    assert details["status"] == "Completed"
    assert f"RunId: {run.id}" in out and "Execution Summary" in out
    assert "Streaming azureml-logs/70_driver_log.txt" in out
    assert "Accuracy of SVM classifier on test set" in out
    assert statuses(run) == ["NotStarted", "Starting", "Preparing", "Running", "Finalizing",
                             "Completed"]
    metrics = run.get_metrics()
    assert metrics["Kernel type"] == "linear" and metrics["Penalty"] == 1.0
    assert 0.9 < metrics["Accuracy"] <= 1.0
    assert "outputs/model.joblib" in run.get_file_names()
    assert run.id.startswith("sklearn-iris_")
    model = run.register_model("sklearn-iris", "outputs/model.joblib")
    assert model.version == 1


def test_crashing_script_fails_with_traceback(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        print("about to fail")
        raise ValueError("broken input data")
    """)
    run = Experiment(ws, "crash").submit(ScriptRunConfig(str(folder), "job.py"))
    with pytest.raises(ActivityFailedException, match="broken input data"):
        run.wait_for_completion()
    details = run.get_details()
    assert details["status"] == "Failed"
    assert "Traceback" in details["error"]["error"]["message"]
    assert "broken input data" in details["error"]["error"]["message"]
    assert statuses(run)[-2:] == ["Finalizing", "Failed"]
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"


def test_script_killed_by_a_signal(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    run = Experiment(ws, "killed").submit(ScriptRunConfig(str(folder), "job.py"))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "KilledBySignal"
    assert "SIGKILL" in details["error"]["error"]["message"]


def test_bad_submissions_create_nothing(ws, tmp_path: Path) -> None:
    exp = Experiment(ws, "bad")
    folder = project(tmp_path, "print('hi')\n")
    cases = [
        (RunConfigurationException, ScriptRunConfig(str(tmp_path / "absent"), "job.py")),
        (RunConfigurationException, ScriptRunConfig(str(folder), "missing.py")),
        (RunConfigurationException, ScriptRunConfig(str(folder), "../job.py")),
        (RunConfigurationException, ScriptRunConfig(str(folder), "job.py",
                                                     arguments=["--x", object()])),
        (ComputeTargetException, ScriptRunConfig(str(folder), "job.py",
                                                 compute_target="no-such-cluster")),
    ]
    for error, config in cases:
        with pytest.raises(error):
            exp.submit(config)
    assert list(exp.get_runs()) == []
    root = Path(ws.get_details()["root"])
    assert not (root / "snapshots").exists() or not any((root / "snapshots").iterdir())


def test_snapshot_is_taken_at_submit(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import time
        time.sleep(0.5)
        print(open("data.txt").read())
    """)
    (folder / "data.txt").write_text("original")
    run = Experiment(ws, "snap").submit(ScriptRunConfig(str(folder), "job.py"))
    (folder / "data.txt").write_text("edited after submit")
    run.wait_for_completion()
    log = Path(ws.get_details()["root"], "artifacts", run.id, "user_logs", "std_log.txt")
    assert log.read_text().strip() == "original"


def test_cancel_stops_the_process_tree(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open("outputs_pids.txt", "w").write(f"{os.getpid()} {child.pid}")
        print("started", flush=True)
        time.sleep(600)
    """)
    run = Experiment(ws, "cancel").submit(ScriptRunConfig(str(folder), "job.py"))
    wd = Path(ws.get_details()["root"], "runs", run.id, "wd")
    deadline = time.time() + 60
    while not (wd / "outputs_pids.txt").exists() and time.time() < deadline:
        time.sleep(0.05)
    pids = [int(p) for p in (wd / "outputs_pids.txt").read_text().split()]
    run.cancel()
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Canceled"
    assert "CancelRequested" in statuses(run)
    for pid in pids:
        assert not _alive(pid), f"process {pid} survived the cancel"
    with pytest.raises(UserErrorException, match="already Canceled"):
        run.cancel()


def test_runner_killed_ends_failed_on_next_look(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, "import time\ntime.sleep(600)\n")
    run = Experiment(ws, "orphan").submit(ScriptRunConfig(str(folder), "job.py"))
    backend, info = ws._backend, ws._info
    local = next(iter(backend.manager.get_plugins()))
    deadline = time.time() + 60
    while time.time() < deadline:
        row = local.exec_row(info, run.id)
        if row and row["job_pid"]:
            break
        time.sleep(0.05)
    os.kill(row["runner_pid"], signal.SIGKILL)
    os.kill(row["job_pid"], signal.SIGKILL)
    deadline = time.time() + 30
    while run.get_status() != "Failed" and time.time() < deadline:
        backend.run_observe(info, run.id, 0)
        time.sleep(0.1)
    details = run.get_details()
    assert details["status"] == "Failed"
    assert details["error"]["error"]["code"] == "RunnerDied"


def test_client_may_exit_and_reattach(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, "import time\ntime.sleep(1)\nprint('done')\n")
    client = textwrap.dedent(f"""
        from simml.core import Workspace, Experiment, ScriptRunConfig
        ws = Workspace.get("test-ws")
        run = Experiment(ws, "detached").submit(ScriptRunConfig({str(folder)!r}, "job.py"))
        print(run.id)
    """)
    done = subprocess.run([sys.executable, "-c", client], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    run = Run(Experiment(ws, "detached"), run_id)
    assert run.wait_for_completion()["status"] == "Completed"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
