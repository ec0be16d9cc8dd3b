"""Submitting a script as every backend serves it (``contract``, ``tests/_contract.py``): submit,
stream the driver log, end Completed / Failed / Canceled, and the run's metrics and files.

The job runs on the ``local`` target in a user-managed environment (the interpreter the backend
gives it, with simml's job side: no environment build). Names are unique: they hold in a shared
workspace. ``tests/test_submit_local.py`` has the local runner's own (status history, process
groups, a killed runner: ``local_only``).
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from _contract import unique
from simml.core import Environment, Experiment, ScriptRunConfig
from simml.exceptions import ActivityFailedException

pytestmark = pytest.mark.contract

TERMINAL = ("Completed", "Failed", "Canceled")


def project(tmp_path: Path, script: str) -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / "job.py").write_text(textwrap.dedent(script))
    return folder


def config(folder: Path, **kwargs: Any) -> ScriptRunConfig:
    environment = Environment(unique("user-managed"))
    environment.python.user_managed_dependencies = True
    return ScriptRunConfig(str(folder), "job.py", compute_target="local",
                           environment=environment, **kwargs)


def test_submit_streams_logs_and_records_metrics_and_files(ws, tmp_path: Path, capsys) -> None:
    folder = project(tmp_path, """
        import os, sys
        from simml.core.run import Run
        run = Run.get_context()
        print("hello from the job", sys.argv[1:])
        run.log("loss", 0.5)
        run.log("loss", 0.25)
        run.log("kernel", "linear")
        os.makedirs("outputs", exist_ok=True)
        with open("outputs/result.txt", "w") as handle:
            handle.write("done")
    """)
    experiment = Experiment(ws, unique("submit"))
    run = experiment.submit(config(folder, arguments=["--alpha", 0.5]))
    details = run.wait_for_completion(show_output=True)
    out = capsys.readouterr().out
    assert details["status"] == "Completed" and run.get_status() == "Completed"
    assert f"RunId: {run.id}" in out and "Execution Summary" in out
    assert "hello from the job ['--alpha', '0.5']" in out     # the driver log, streamed
    assert run.get_metrics() == {"loss": [0.5, 0.25], "kernel": "linear"}
    assert "outputs/result.txt" in run.get_file_names()
    run.download_file("outputs/result.txt", str(tmp_path / "result.txt"))
    assert (tmp_path / "result.txt").read_text() == "done"
    assert details["runDefinition"] and details["startTimeUtc"] and details["endTimeUtc"]
    model = run.register_model(unique("submitted"), "outputs/result.txt")
    assert model.version == 1 and model.run_id == run.id


def test_a_failing_script_ends_failed_with_its_error(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        print("about to fail")
        raise ValueError("broken input data")
    """)
    run = Experiment(ws, unique("crash")).submit(config(folder))
    with pytest.raises(ActivityFailedException, match="broken input data"):
        run.wait_for_completion()
    details = run.get_details()
    assert details["status"] == "Failed"
    assert "broken input data" in details["error"]["error"]["message"]
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Failed"


def test_cancel_a_running_script(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import time
        print("started", flush=True)
        time.sleep(600)
    """)
    run = Experiment(ws, unique("cancel")).submit(config(folder))
    deadline = time.monotonic() + 300  # a deadline for the wait, not a timing assertion
    while run.get_status() != "Running" and time.monotonic() < deadline:
        assert run.get_status() not in TERMINAL, run.get_details()
        time.sleep(0.5)
    assert run.get_status() == "Running"
    run.cancel()
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Canceled"
