"""Run.get_context() outside a job: an offline run that records (or prints, on request)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simml.core import Experiment, Workspace
from simml.exceptions import RunEnvironmentException

ROOT = Path(__file__).resolve().parent.parent


def run_script(cwd: Path, *args: str, env_extra: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    import os
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


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


def test_offline_run_uses_workspace_of_config_json(tmp_path: Path) -> None:
    config = {"subscription_id": "s", "resource_group": "r", "workspace_name": "proj-ws"}
    (tmp_path / ".azureml").mkdir()
    (tmp_path / ".azureml" / "config.json").write_text(json.dumps(config))
    script = tmp_path / "my-script.py"
    script.write_text("from simml.core.run import Run\nrun = Run.get_context()\n"
                      "run.log('x', 1)\nraise SystemExit(0)\n")
    assert run_script(tmp_path, str(script)).returncode == 0
    ws = Workspace.get("proj-ws", subscription_id="s", resource_group="r")
    (run,) = Experiment(ws, "my-script").get_runs()
    assert run.get_metrics() == {"x": 1}
    assert run.get_status() == "Completed"


def test_crashing_script_marks_offline_run_failed(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text("from simml.core.run import Run\nrun = Run.get_context()\n"
                      "run.log('before', 1)\nraise ValueError('bad data')\n")
    done = run_script(tmp_path, str(script))
    assert done.returncode == 1 and "bad data" in done.stderr
    (run,) = Experiment(Workspace.get("default"), "crash").get_runs()
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
