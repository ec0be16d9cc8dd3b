"""The main job: examples/seed.py, the seed doc end to end on the local backend, run twice in a
fresh folder with a fresh SIMML_HOME (the first run creates the cluster and builds the
environment; the second finds both). Each run registers a new version of the model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_seed(cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "seed.py")], cwd=cwd,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_seed_runs_end_to_end_twice(simml_home: Path, tmp_path: Path) -> None:
    first = run_seed(tmp_path)
    assert "Creating a new compute target..." in first
    assert "Minimum number of nodes requested have been provisioned" in first
    assert "'SKLearn' estimator is deprecated" in first
    assert "legacy pins" in first
    assert "Uploaded 1 files" in first
    assert "Accuracy of SVM classifier on test set" in first
    assert "Read 150 rows from" in first  # the mounted data reference
    assert "Execution Summary" in first
    assert re.search(r"\{'Kernel type': 'linear', 'Penalty': 1\.0, 'Accuracy': 0\.9\d*\}", first)
    assert "Registered model sklearn-iris version 1" in first
    # the last step: the model deployed as a local web service, two rows scored, service deleted
    assert "Local webservice is running at http://localhost:" in first
    assert re.search(r"Scored 2 rows at http://localhost:\d+/score: \[0, 2\]", first)
    assert "Deleted service sklearn-iris-svc" in first
    assert "[clock] run finished: simulated" in first

    workdir = tmp_path / "seed-work"
    config = json.loads((workdir / ".azureml" / "config.json").read_text())
    assert config["workspace_name"] == "seed-ws" and config["clock"] == "scaled:60"
    assert (workdir / ".gitignore").read_text().strip().endswith("*")

    second = run_seed(tmp_path)
    assert "Found existing compute target" in second
    assert "Registered model sklearn-iris version 2" in second
    assert re.search(r"Scored 2 rows at http://localhost:\d+/score: \[0, 2\]", second)
    assert "'Accuracy': 0.9" in second

    from simml.core import Model, Workspace
    ws = Workspace.from_config(str(workdir))
    assert Model(ws, "sklearn-iris").version == 2
    assert ws.clock.kind == "scaled"
    assert [r.status for r in ws.experiments["sklearn-iris"].get_runs()] == ["Completed"] * 2
    from simml.core.webservice import Webservice
    assert Webservice.list(ws) == []          # the seed deletes its service
