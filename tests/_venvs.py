"""Virtual environments that some tests need beside simml's own interpreter (a package whose pins
clash with the dev install, such as azureml-inference-server-http): built once with uv into a
cache folder, under a file lock, and reused by later runs. The README's test command therefore
needs nothing installed by hand; with no package index, the tests that need one skip outside CI
and fail in CI."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from simml_local.environments import uv_command


def venv_root() -> Path:
    return Path(os.environ.get("SIMML_TEST_VENVS")
                or Path(tempfile.gettempdir()) / "simml-test-venvs")


def cached_venv(name: str, requirements: list[str], probe: str) -> tuple[str | None, str]:
    """(python of a venv with ``requirements`` in which ``import probe`` works, "") or
    (None, why it could not be built)."""
    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]
    root = venv_root()
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}-{key}"
    python = target / "bin" / "python"
    complete = target / ".simml-complete"
    with open(root / f".{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes build it once
        if complete.exists() and _imports(python, probe):
            return str(python), ""
        # Built in place (a venv's scripts name its path); the marker is written last, so an
        # interrupted build is removed and redone.
        shutil.rmtree(target, ignore_errors=True)
        uv = uv_command()
        steps = [[*uv, "venv", "--quiet", "--python", sys.executable, str(target)],
                 [*uv, "pip", "install", "--quiet", "--python", str(python), *requirements]]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                shutil.rmtree(target, ignore_errors=True)
                return None, (f"could not build the {name} test environment "
                              f"({' '.join(step[1:3])}): {done.stderr.strip()[-400:]}")
        if not _imports(python, probe):
            return None, f"the {name} test environment was built but cannot import {probe}"
        complete.touch()
        return str(python), ""


def _imports(python: Path, module: str) -> bool:
    done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True,
                          timeout=300)
    return done.returncode == 0
