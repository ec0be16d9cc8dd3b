from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _hermetic(simml_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own SIMML_HOME and working directory, and no stray seed or mode."""
    monkeypatch.chdir(tmp_path)
    for name in ("SIMML_SEED", "SIMML_OFFLINE_MODE", "AZUREML_RUN_ID", "SIMML_RUN_JOURNAL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ws(simml_workspace):
    return simml_workspace


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python process that imports this checkout."""
    env = dict(os.environ)
    env.update(extra)
    return env


PYTHON = sys.executable
