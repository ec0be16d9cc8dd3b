"""The wheel of simml a job on Azure installs: built from this checkout, once per content.

Azure's image builder installs the run environment's pip packages; the azure backend adds this
wheel (uploaded with ``Environment.add_private_pip_wheel``) so that a script importing
``simml.core.run`` works on the node. Its version carries a hash of the sources as a local
version label (``0.1.0+g1a2b3c4d5e6f``): Azure keeps a private wheel by file name, so a changed
checkout must not reuse an older upload. No azureml import here.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from simml.exceptions import UserErrorException

WHEEL_ENV = "SIMML_AZURE_JOB_WHEEL"
"""A wheel to use instead of building one (an installed simml has no checkout to build from)."""
SOURCES = ("simml", "backends", "pyproject.toml", "README.md")


def project_root() -> Path | None:
    """The checkout simml is imported from, if it is one."""
    import simml
    root = Path(simml.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "backends").is_dir() else None


def source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        path = root / name
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix not in (".pyc",))
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def simml_wheel(cache: Path | None = None) -> Path:
    """Path of the job wheel: ``SIMML_AZURE_JOB_WHEEL``, else one built from the checkout into
    ``cache`` (default ``<SIMML_HOME>/azure/wheels``), reused while the sources are unchanged.

    :raises UserErrorException: no wheel named and no checkout to build one from, or the build
        failed (uv's output is in the message).
    """
    named = os.environ.get(WHEEL_ENV)
    if named:
        if not Path(named).is_file():
            raise UserErrorException(f"{WHEEL_ENV} names {named!r}, which is not a file.")
        return Path(named)
    root = project_root()
    if root is None:
        raise UserErrorException(
            "The azure backend adds a wheel of simml to each job's environment, but simml is not "
            f"imported from a checkout to build one: build it (`uv build --wheel`) and set "
            f"{WHEEL_ENV} to its path.")
    if cache is None:
        from simml.settings import simml_home
        cache = simml_home() / "azure" / "wheels"
    label = source_hash(root)
    folder = cache / label
    found = sorted(folder.glob("simml-*.whl")) if folder.is_dir() else []
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two submissions build it once
        found = sorted(folder.glob("simml-*.whl")) if folder.is_dir() else []
        if found:
            return found[0]
        return _build(root, label, folder)


def _build(root: Path, label: str, folder: Path) -> Path:
    from simml_local.environments import uv_command
    with tempfile.TemporaryDirectory(prefix="simml-wheel-") as scratch:
        project = Path(scratch) / "project"
        project.mkdir()
        for name in SOURCES:
            source = root / name
            if source.is_dir():
                shutil.copytree(source, project / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif source.is_file():
                shutil.copyfile(source, project / name)
        pyproject = project / "pyproject.toml"
        text = pyproject.read_text(encoding="utf-8")
        text, count = re.subn(r'(?m)^version\s*=\s*"([^"+]+)"', rf'version = "\1+g{label}"',
                              text, count=1)
        if count != 1:
            raise UserErrorException("pyproject.toml has no static version to label the job "
                                     "wheel with.")
        pyproject.write_text(text, encoding="utf-8")
        out = Path(scratch) / "dist"
        done = subprocess.run([*uv_command(), "build", "--wheel", "--quiet", "--out-dir",
                               str(out), str(project)], capture_output=True, text=True,
                              timeout=600)
        wheels = sorted(out.glob("simml-*.whl"))
        if done.returncode != 0 or not wheels:
            raise UserErrorException(f"Building simml's job wheel failed: "
                                     f"{(done.stderr or done.stdout).strip()[-1500:]}")
        staging = folder.with_name(f".{label}-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copyfile(wheels[0], staging / wheels[0].name)
        os.replace(staging, folder)
    return folder / wheels[0].name
