from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# CI explores the same Hypothesis examples every time (a red CI is then reproducible); local runs
# keep exploring new ones.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _hermetic(simml_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own SIMML_HOME and working directory, and no stray seed or mode; at
    teardown, runners and jobs it left behind (a failed test may leave a job waiting) are killed."""
    monkeypatch.chdir(tmp_path)
    for name in ("SIMML_SEED", "SIMML_OFFLINE_MODE", "AZUREML_RUN_ID", "SIMML_RUN_JOURNAL"):
        monkeypatch.delenv(name, raising=False)
    yield
    kill_processes_mentioning(str(simml_home))


def kill_processes_mentioning(marker: str) -> None:
    """SIGKILL every process whose command line or environment mentions ``marker``."""
    import signal
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in text:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def ws(simml_workspace):
    return simml_workspace


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python process that imports this checkout."""
    env = dict(os.environ)
    env.update(extra)
    return env


PYTHON = sys.executable
