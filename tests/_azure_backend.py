"""The Azure backend's test environment: a venv with the real ``azureml-core`` client and simml
installed from this checkout (editable, so the tests always run the current code), built once
with uv by ``tests/_venvs.py`` and reused. Tests run simml code in it as subprocesses against
the shared ``simml serve`` of ``tests/_emulator_server.py`` with config.json's ``backend`` set to
``azure``: the real client, the real emulator, no mocked azureml class.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
AZURE_REQUIREMENTS = ["azureml-core", "azureml-train-core", "pytest", "hypothesis",
                      "matplotlib"]
"""The azure extra, and what the contract suite imports (``test_log_image`` draws a figure)."""


def _install_key() -> str:
    """What an editable install fixes at build time: dependencies, extras and entry points (a
    change to them builds a new venv; code changes need none)."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the whole file decides
        return hashlib.sha256(text.encode()).hexdigest()[:8]
    project = tomllib.loads(text)["project"]
    fixed = {key: project.get(key) for key in ("dependencies", "optional-dependencies",
                                                "entry-points")}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:8]


def azure_venv_python() -> Path:
    """Python of the simml-with-azure venv (``SIMML_AZURE_VENV`` names one of your own). Skips
    when it cannot be built outside CI; fails in CI."""
    named = os.environ.get("SIMML_AZURE_VENV")
    if named:
        return Path(named) / "bin" / "python"
    from _venvs import cached_venv
    python, problem = cached_venv(f"simml-azure-{_install_key()}",
                                  [*AZURE_REQUIREMENTS, "-e", str(REPO)], "simml_azure.plugin")
    if python is None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return Path(python)


def client_env(emulator: Any, home: Path, **extra: str) -> dict[str, str]:
    """Environment of a simml-on-azure process: no simml or azureml variable of the test run
    leaks in, its own HOME (the client caches discovery answers there), the emulator's key."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SIMML_", "AZUREML_")) and "PROXY" not in k.upper()}
    (home / ".azureml").mkdir(parents=True, exist_ok=True)
    env.update({"HOME": str(home), "SIMML_EMULATOR_KEY": emulator.key,
                "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def azure_config(emulator: Any, folder: Path, **overrides: Any) -> Path:
    """``folder/.azureml/config.json`` naming the emulator's workspace on the azure backend."""
    config = {"subscription_id": emulator.config["subscription_id"],
              "resource_group": emulator.config["resource_group"],
              "workspace_name": emulator.config["workspace_name"], "backend": "azure",
              "auth": {"type": "simml_emulator", "endpoint": emulator.url,
                       "key_env": "SIMML_EMULATOR_KEY"}}
    config.update(overrides)
    config = {k: v for k, v in config.items() if v is not None}
    target = folder / ".azureml" / "config.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=2))
    return target


def run_python(python: Path, args: list[str], cwd: Path, env: dict[str, str],
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
