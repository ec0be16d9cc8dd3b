"""The ``simml`` command line on every backend (``contract``, ``tests/_contract.py``): started in
a folder whose config.json names the workspace, it shows what simml's API made there (runs, their
metrics and files, models) and reports unknown names with its not-found exit code. Names are
unique: they hold in a shared workspace. ``tests/test_cli.py`` has the CLI's own behaviour
(``local_only``)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from _contract import unique
from simml.cli import EXIT_NOT_FOUND, cli
from simml.core import Experiment
from simml.core.model import Model

pytestmark = pytest.mark.contract


@pytest.fixture
def here(contract_config: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI runs in the folder of the contract workspace's config.json (no ``-w``)."""
    monkeypatch.chdir(contract_config)
    return contract_config


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_run_show_metrics_and_download(ws: Any, here: Path) -> None:
    experiment = unique("cli")
    run = Experiment(ws, experiment).start_logging()
    run.log("acc", 0.9)
    run.log("acc", 0.95)
    run.set_tags({"team": "ml"})
    run.upload_file("outputs/model.txt", io.BytesIO(b"model"))
    run.complete()
    doc = as_json(invoke("--json", "run", "show", run.id))
    assert doc["status"] == "Completed" and doc["experiment"] == experiment
    assert doc["tags"]["team"] == "ml" and doc["error"] is None
    assert as_json(invoke("--json", "run", "metrics", run.id)) == {"acc": [0.9, 0.95]}
    result = invoke("run", "download", run.id, "--prefix", "outputs/", "--output", "dl")
    assert result.exit_code == 0, result.output
    assert (here / "dl" / "outputs" / "model.txt").read_bytes() == b"model"
    missing = invoke("run", "show", unique("no-such-run"))
    assert missing.exit_code == EXIT_NOT_FOUND and "Traceback" not in missing.output


def test_model_show_and_download(ws: Any, here: Path) -> None:
    name = unique("cli-model")
    (here / "m").mkdir()
    (here / "m" / "model.pkl").write_bytes(b"weights")
    model = Model.register(ws, "m/model.pkl", name, tags={"stage": "dev"})
    doc = as_json(invoke("--json", "model", "show", f"{name}:{model.version}"))
    assert doc["id"] == f"{name}:{model.version}" and doc["tags"] == {"stage": "dev"}
    assert doc["files"] == ["model.pkl"]
    result = invoke("model", "download", name, "--output", "dl")
    assert result.exit_code == 0, result.output
    assert (here / "dl" / "model.pkl").read_bytes() == b"weights"
    missing = invoke("model", "show", unique("no-such-model"))
    assert missing.exit_code == EXIT_NOT_FOUND
