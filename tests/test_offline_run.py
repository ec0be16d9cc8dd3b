"""Run.get_context() outside a job: an offline run that records (or prints, on request).

Recording into the workspace of the nearest config.json is ``contract`` (docs/testing.md): the
script's experiment is named after it, uniquely, so it holds in a shared workspace. The
``default`` workspace without any config.json is the local backend's (``local_only``). Printing
only, and ``allow_offline=False``, touch no backend: no marker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _contract import unique
from simml.core import Experiment, Run, Workspace
from simml.exceptions import RunEnvironmentException

ROOT = Path(__file__).resolve().parent.parent


def run_script(cwd: Path, *args: str, env_extra: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    import os
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.local_only  # no config.json: the local backend's `default` workspace
def test_train_iris_offline_records_into_default_workspace(tmp_path: Path) -> None:
    done = run_script(tmp_path, str(ROOT / "train_iris.py"), "--kernel", "rbf", "--penalty", "0.5")
    assert done.returncode == 0, done.stderr
    ws = Workspace.get("default")
    runs = list(Experiment(ws, "train_iris").get_runs())
    assert len(runs) == 1
    run = runs[0]
    assert run.id.startswith("OfflineRun_")
    assert run.get_status() == "Completed"
    metrics = run.get_metrics()
    assert metrics["Kernel type"] == "rbf" and metrics["Penalty"] == 0.5
    assert 0.5 < metrics["Accuracy"] <= 1.0
    assert run.get_file_names() == ["outputs/model.joblib"]


def offline_script(folder: Path, body: str) -> Path:
    """A script named uniquely (its experiment is named after it), printing its run's id."""
    script = folder / f"{unique('offline')}.py"
    script.write_text("from simml.core.run import Run\nrun = Run.get_context()\n"
                      "print('RUN', run.id, flush=True)\n" + body)
    return script


def run_id_of(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RUN ")]
    assert lines, done.stdout + done.stderr
    return lines[0].split()[1]


@pytest.mark.contract
def test_offline_run_uses_workspace_of_config_json(ws, contract_config: Path) -> None:
    script = offline_script(contract_config, "run.log('x', 1)\nraise SystemExit(0)\n")
    done = run_script(contract_config, str(script))
    assert done.returncode == 0, done.stderr
    run = Run.get(ws, run_id_of(done))
    assert run.id.startswith("OfflineRun_") and run.experiment.name == script.stem
    assert run.get_metrics() == {"x": 1}
    assert run.get_status() == "Completed"


@pytest.mark.contract
def test_crashing_script_marks_offline_run_failed(ws, contract_config: Path) -> None:
    script = offline_script(contract_config, "run.log('before', 1)\n"
                                             "raise ValueError('bad data')\n")
    done = run_script(contract_config, str(script))
    assert done.returncode == 1 and "bad data" in done.stderr
    run = Run.get(ws, run_id_of(done))
    assert run.get_status() == "Failed"
    assert "bad data" in run.get_details()["error"]["error"]["message"]
    assert run.get_metrics() == {"before": 1}


def test_print_only_switch_restores_azure_behaviour(tmp_path: Path) -> None:
    script = tmp_path / "p.py"
    script.write_text("from simml.core.run import Run\nrun = Run.get_context()\n"
                      "print(run.id)\nrun.log('acc', 0.9)\n")
    done = run_script(tmp_path, str(script), env_extra={"SIMML_OFFLINE_MODE": "print"})
    assert done.returncode == 0
    assert "Attempted to log scalar metric acc:\n0.9" in done.stdout
    assert done.stdout.startswith("OfflineRun_")
    assert not (Path(__import__("os").environ["SIMML_HOME"]) / "workspaces").exists()


def test_allow_offline_false_raises() -> None:
    from simml.core.run import Run
    with pytest.raises(RunEnvironmentException):
        Run.get_context(allow_offline=False)
