"""The pytest fixtures simml ships for its users, and the clock settings behind them.

``local_only`` (docs/testing.md): the fixtures give local workspaces, manual clocks and instant
clusters.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from simml.core import Experiment, ScriptRunConfig
from simml.exceptions import ConfigurationException, InvalidValueException, UserErrorException

pytestmark = pytest.mark.local_only


def test_manual_clock_fixture(simml_manual_clock, simml_workspace) -> None:
    start = simml_manual_clock.now()
    assert start.isoformat() == "2026-01-01T00:00:00+00:00"
    assert (simml_manual_clock.advance(90) - start).total_seconds() == 90
    assert simml_workspace.clock.kind == "manual"


def test_instant_cluster_runs_a_job(simml_instant_cluster, simml_workspace, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "job.py").write_text(textwrap.dedent("""
        from simml.core.run import Run
        Run.get_context().log("x", 2)
    """))
    run = Experiment(simml_workspace, "kit").submit(
        ScriptRunConfig(str(folder), "job.py", compute_target=simml_instant_cluster))
    assert run.wait_for_completion()["status"] == "Completed"
    assert run.get_metrics() == {"x": 2}


@pytest.mark.parametrize("setting", ["fast", "scaled:0", "scaled:-2", "scaled:x",
                                     "manual:yesterday", "manual:2026-01-01T00:00:00"])
def test_bad_clock_settings(ws, setting: str) -> None:
    with pytest.raises(ConfigurationException):
        ws.set_clock(setting)
    assert ws.clock.kind == "system"


def test_only_manual_clocks_advance(ws) -> None:
    with pytest.raises(UserErrorException, match="manual"):
        ws.advance_clock(10)
    ws.set_clock("manual")
    with pytest.raises(InvalidValueException):
        ws.advance_clock(-1)
    ws.set_clock("scaled:60")
    assert ws.clock.kind == "scaled"
