"""Environments on the local backend: the registry (``LocalEnvironments``) and the builder that
materialises a run's environment as a virtual environment built with uv (``EnvironmentBuilder``).

Registry: one row per version in the ``environments`` table (migration 4); ``register`` adds
version max + 1 in one ``BEGIN IMMEDIATE`` transaction unless the definition (name and version
aside) equals the latest version's, which is then returned unchanged.

Builder (called by ``simml_stage_prepare`` for environments that are not user-managed):

1. **Resolve** the definition into a spec: the Python interpreter actually used (a pin is met only
   by an interpreter already on this machine; otherwise the current one, with a WARNING line), the
   normalised pip requirements, the conda packages mapped to PyPI names (``CONDA_TO_PYPI``: no conda
   channel is reachable; an unmapped package fails Preparing), the pip options and the uv index
   settings of the environment (``UV_DEFAULT_INDEX``, ...), and simml's version. ``azureml-*``
   packages are dropped (simml's job side replaces them) unless the definition's ``simml``
   section sets ``installAzureml`` (the emulator's jobs use the real SDK). The cache key is the
   sha256 of that spec as canonical JSON.
2. **Hit**: ``<SIMML_HOME>/envs/<key>/`` exists: one log line, no uv call.
3. **Miss**: under an ``flock`` on ``envs/<key>.lock`` (a concurrent builder of the same spec
   waits, then hits), ``uv venv --relocatable`` and ``uv pip install`` into
   ``envs/.building-<key>-<pid>/`` with ``UV_PYTHON_DOWNLOADS=never``, every output line streamed
   to the driver log; simml's job side (the ``simml`` package's ``.py`` files) is copied into
   ``simml-job/<fingerprint>/`` and put on ``sys.path`` by a relative ``.pth`` file; an import check;
   then one ``rename`` into place. A failed build leaves nothing behind and raises
   ``EnvironmentBuildException`` with the log's tail.

A cached environment whose injected job side differs from the installed simml's (an editable
checkout that changed) gets a fresh copy and a new ``.pth`` (no rebuild).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from simml.core.conda_dependencies import (
    CondaDependencies,
    canonical_name,
    is_pip_option,
    pip_requirement_name,
)
from simml.core.environment import (
    INSTALL_AZUREML,
    SIMML_SECTION,
    EnvironmentBuildException,
    EnvironmentNotFoundException,
)
from simml.entities import EnvironmentInfo, PreparedEnvironment, WorkspaceInfo
from simml.exceptions import UserErrorException
from simml.plugins import hookimpl
from simml_local.files import lock_or_wait
from simml_local.store import write_transaction

ENVS_DIR = "envs"
SPEC_FORMAT = 2  # bumped when builds change
MIN_JOB_PYTHON = (3, 10)
"""simml's job side (``simml.core.run``, ``simml.job``) needs this Python or newer."""
LOG_PREFIX = "[preparing] "
ERROR_TAIL_LINES = 40
INDEX_VARIABLES = ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL",
                   "UV_FIND_LINKS", "UV_NO_INDEX", "UV_INDEX_STRATEGY", "UV_PRERELEASE",
                   "UV_EXCLUDE_NEWER", "UV_OFFLINE")
"""uv settings from the environment that change what gets installed: part of the cache key."""

# --- conda -> PyPI ------------------------------------------------------------------------------------
CONDA_TO_PYPI: dict[str, str] = {
    # scientific stack
    "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "scikit-learn": "scikit-learn",
    "sklearn": "scikit-learn", "joblib": "joblib", "threadpoolctl": "threadpoolctl",
    "matplotlib": "matplotlib", "matplotlib-base": "matplotlib", "seaborn": "seaborn",
    "statsmodels": "statsmodels", "sympy": "sympy", "networkx": "networkx", "numba": "numba",
    "numexpr": "numexpr", "bottleneck": "bottleneck", "xarray": "xarray", "h5py": "h5py",
    "pytables": "tables", "pyarrow": "pyarrow", "polars": "polars", "dask": "dask",
    "distributed": "distributed", "cloudpickle": "cloudpickle", "scikit-image": "scikit-image",
    "imbalanced-learn": "imbalanced-learn", "shap": "shap", "plotly": "plotly",
    "bokeh": "bokeh", "pillow": "pillow", "opencv": "opencv-python-headless",
    "py-opencv": "opencv-python-headless", "umap-learn": "umap-learn", "hdbscan": "hdbscan",
    # boosting and deep learning
    "py-xgboost": "xgboost", "xgboost": "xgboost", "py-xgboost-cpu": "xgboost",
    "lightgbm": "lightgbm", "catboost": "catboost", "pytorch": "torch",
    "pytorch-cpu": "torch", "torchvision": "torchvision", "torchaudio": "torchaudio",
    "tensorflow": "tensorflow", "tensorflow-cpu": "tensorflow-cpu", "keras": "keras",
    "onnx": "onnx", "onnxruntime": "onnxruntime", "transformers": "transformers",
    # text
    "nltk": "nltk", "spacy": "spacy", "gensim": "gensim", "beautifulsoup4": "beautifulsoup4",
    "lxml": "lxml",
    # general purpose
    "pyyaml": "pyyaml", "requests": "requests", "tqdm": "tqdm", "click": "click",
    "six": "six", "attrs": "attrs", "python-dateutil": "python-dateutil", "pytz": "pytz",
    "tzdata": "tzdata", "packaging": "packaging", "setuptools": "setuptools", "wheel": "wheel",
    "cython": "cython", "psutil": "psutil", "protobuf": "protobuf", "tabulate": "tabulate",
    "openpyxl": "openpyxl", "xlrd": "xlrd", "sqlalchemy": "sqlalchemy",
    "psycopg2": "psycopg2-binary", "pyodbc": "pyodbc", "fsspec": "fsspec", "s3fs": "s3fs",
    "boto3": "boto3", "azure-storage-blob": "azure-storage-blob", "pydantic": "pydantic",
    "flask": "flask", "fastapi": "fastapi", "uvicorn": "uvicorn", "gunicorn": "gunicorn",
    "jinja2": "jinja2", "ipykernel": "ipykernel", "jupyter": "jupyter", "notebook": "notebook",
    "pytest": "pytest", "mlflow": "mlflow", "pyspark": "pyspark", "certifi": "certifi",
}
"""Conda package name -> PyPI project name (the conda name, lower-cased, after any ``channel::``).
Extend it by listing the package under ``pip_packages`` instead: there is no conda here."""

CONDA_IGNORED: dict[str, str] = {
    "pip": "uv installs the pip packages; pip itself is not needed",
    **{name: "provided by the interpreter and the operating system" for name in (
        "_libgcc_mutex", "_openmp_mutex", "ld_impl_linux-64", "libgcc-ng", "libgcc",
        "libgomp", "libstdcxx-ng", "libstdcxx", "libffi", "ncurses", "readline", "sqlite",
        "tk", "xz", "zlib", "bzip2", "openssl", "ca-certificates", "libuuid", "libnsl",
        "libzlib", "libsqlite", "libxcrypt", "liblzma", "libexpat", "libmpdec", "tzdata-conda",
        "python_abi")},
}
"""Conda packages skipped with a note: they exist in conda only to build its own Python."""

SKIPPED_PIP_PREFIXES = ("azureml-", "azureml")
KEPT_AZUREML_PACKAGES = ("azureml-inference-server-http",)
"""``azureml-*`` packages that are installed anyway: the inference server is a real server, which
web services can run on (``docs/deployment.md``), not part of the SDK simml replaces."""


# --- registry -------------------------------------------------------------------------------------------
def definition_digest(definition: dict[str, Any]) -> str:
    """sha256 of a definition without ``name`` and ``version`` (canonical JSON)."""
    body = {k: v for k, v in definition.items() if k not in ("name", "version")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


class LocalEnvironments:
    """Mixin of ``LocalBackend``: the environment registry."""

    store: Any
    home: Path

    @hookimpl
    def simml_environment_register(self, workspace: WorkspaceInfo, name: str,
                                   definition: dict[str, Any]) -> EnvironmentInfo:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,254}",
                                                         name):
            raise UserErrorException(f"Invalid environment name {name!r}.")
        digest = definition_digest(definition)
        con = self.store(workspace).connection()
        with write_transaction(con):
            row = con.execute("SELECT version, digest, definition FROM environments WHERE name = ? "
                              "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
            if row is not None and row[1] == digest:
                return EnvironmentInfo(name, str(row[0]), json.loads(row[2]))
            version = (row[0] if row is not None else 0) + 1
            stored = dict(definition, name=name, version=str(version))
            con.execute("INSERT INTO environments (name, version, created_time, digest, "
                        "definition) VALUES (?,?,?,?,?)",
                        (name, version, datetime.now(timezone.utc).timestamp(), digest,
                         json.dumps(stored)))
        return EnvironmentInfo(name, str(version), stored)

    @hookimpl
    def simml_environment_get(self, workspace: WorkspaceInfo, name: str, version: str | None
                              ) -> EnvironmentInfo:
        con = self.store(workspace).connection()
        if version is None:
            row = con.execute("SELECT version, definition FROM environments WHERE name = ? "
                              "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        else:
            number = int(version) if str(version).isdigit() else -1
            row = con.execute("SELECT version, definition FROM environments WHERE name = ? AND "
                              "version = ?", (name, number)).fetchone()
        if row is None:
            versions = [str(r[0]) for r in con.execute(
                "SELECT version FROM environments WHERE name = ? ORDER BY version", (name,))]
            if versions:
                raise EnvironmentNotFoundException(
                    f"Environment {name!r} has no version {version!r} (versions: "
                    f"{', '.join(versions)}).")
            raise EnvironmentNotFoundException(
                f"Environment {name!r} is not registered in workspace {workspace.name!r}.")
        return EnvironmentInfo(name, str(row[0]), json.loads(row[1]))

    @hookimpl
    def simml_environment_list(self, workspace: WorkspaceInfo) -> list[EnvironmentInfo]:
        """The latest version of every environment, by name (``Environment.list``)."""
        con = self.store(workspace).connection()
        rows = con.execute(
            "SELECT e.name, e.version, e.definition FROM environments e JOIN (SELECT name, "
            "MAX(version) AS version FROM environments GROUP BY name) m ON m.name = e.name AND "
            "m.version = e.version ORDER BY e.name").fetchall()
        return [EnvironmentInfo(name, str(version), json.loads(definition))
                for name, version, definition in rows]


# --- interpreters ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interpreter:
    executable: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def current_interpreter() -> Interpreter:
    return Interpreter(sys.executable, tuple(sys.version_info[:3]))  # type: ignore[arg-type]


def _cheap_interpreters() -> Iterator[Interpreter]:
    """Interpreters whose version is known without running them: this one, pyenv's, uv's."""
    yield current_interpreter()
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    uv_dir = Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path(
        os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "uv" / "python")
    for base, pattern in ((pyenv, r"(\d+)\.(\d+)\.(\d+)"),
                          (uv_dir, r"cpython-(\d+)\.(\d+)\.(\d+)-.*")):
        try:
            entries = sorted(os.listdir(base))
        except OSError:
            continue
        for entry in entries:
            match = re.fullmatch(pattern, entry)
            if not match:
                continue
            major, minor, micro = (int(g) for g in match.groups())
            executable = base / entry / "bin" / f"python{major}.{minor}"
            if executable.is_file() and os.access(executable, os.X_OK):
                yield Interpreter(str(executable), (major, minor, micro))


def _path_interpreters(major_minor: set[tuple[int, int]], cache: dict[str, Any] | None = None
                       ) -> Iterator[Interpreter]:
    """``python3.X`` executables on PATH (pyenv shims skipped), run once to learn their version;
    ``cache`` (realpath -> stamp and version) spares the run while the file is unchanged."""
    seen: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or "shims" in Path(folder).parts:
            continue
        for major, minor in sorted(major_minor):
            candidate = Path(folder) / f"python{major}.{minor}"
            try:
                if not candidate.is_file() or not os.access(candidate, os.X_OK):
                    continue
                real = os.path.realpath(candidate)
                status = os.stat(real)
            except OSError:
                continue
            if real in seen:
                continue
            seen.add(real)
            stamp = [status.st_mtime_ns, status.st_size]
            known = (cache or {}).get(real)
            if known and known.get("stamp") == stamp:
                version = tuple(known["version"])
            else:
                try:
                    out = subprocess.run(
                        [str(candidate), "-I", "-S", "-c",
                         "import sys; print(*sys.version_info[:3])"],
                        capture_output=True, text=True, timeout=10, check=True).stdout.split()
                    version = (int(out[0]), int(out[1]), int(out[2]))
                except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                    continue
                if cache is not None:
                    cache[real] = {"stamp": stamp, "version": list(version)}
            yield Interpreter(str(candidate), version)  # type: ignore[arg-type]


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache: losing it costs one probe


def python_matcher(request: str) -> tuple[Callable[[tuple[int, int, int]], bool],
                                          tuple[int, ...]]:
    """A predicate for a conda Python spec (``3.10``, ``3.10.13``, ``3.10.*``, ``>=3.9,<3.12``)
    and the version a prefix pin names (``()`` for a range)."""
    text = request.strip().replace(" ", "")
    if text and text[0] in "<>!~=" and not re.fullmatch(r"==?[\d.]+\*?(=.*)?", text):
        clauses = []
        for clause in text.split(","):
            match = re.fullmatch(r"(>=|<=|==|!=|~=|>|<)([\d.]*\d)(\.\*)?", clause)
            if not match:
                raise EnvironmentBuildException(f"Unsupported Python version spec {request!r}.")
            clauses.append((match.group(1), _version_tuple(match.group(2))))

        def in_range(version: tuple[int, int, int]) -> bool:
            for op, bound in clauses:
                head = version[:len(bound)]
                padded = bound + (0,) * (3 - len(bound))
                if (op == "==" and head != bound) or (op == "!=" and head == bound) or \
                        (op == ">=" and version < padded) or (op == ">" and head <= bound) or \
                        (op == "<=" and head > bound) or (op == "<" and version >= padded) or \
                        (op == "~=" and (version < padded or
                                         head[:len(bound) - 1] != bound[:len(bound) - 1])):
                    return False
            return True

        return in_range, ()
    version = text.lstrip("=").split("=")[0].rstrip("*").rstrip(".")
    if not re.fullmatch(r"\d+(\.\d+){0,2}", version):
        raise EnvironmentBuildException(f"Unsupported Python version spec {request!r}.")
    parts = _version_tuple(version)
    return (lambda v: v[:len(parts)] == parts), parts


def find_interpreter(request: str | None, notes: list[str], warnings: list[str],
                     probe_cache: Path | None = None) -> Interpreter:
    """The interpreter meeting a Python pin among those on this machine (never downloaded): the
    current one when it matches, else the newest match (pyenv's and uv's interpreters, then
    ``python3.X`` on PATH); ``3.10.13`` with only another 3.10 here takes that 3.10 (noted).
    No match, or one older than simml's job side supports: the current interpreter, warned."""
    current = current_interpreter()
    if not request:
        return current
    matches, pinned = python_matcher(request)

    def pick(found: list[Interpreter]) -> Interpreter | None:
        good = [i for i in found if matches(i.version)]
        if not good:
            return None
        return current if matches(current.version) else max(good, key=lambda i: i.version)

    cheap = list(_cheap_interpreters())
    chosen = pick(cheap)
    probed: list[Interpreter] = []
    if chosen is None:
        minors = {pinned[:2]} if len(pinned) >= 2 else {(3, m) for m in range(8, 20)}
        cache = _read_json(probe_cache) if probe_cache is not None else None
        before = json.dumps(cache, sort_keys=True)
        probed = list(_path_interpreters(minors, cache))  # type: ignore[arg-type]
        if probe_cache is not None and json.dumps(cache, sort_keys=True) != before:
            _write_json(probe_cache, cache)
        chosen = pick(probed)
    if chosen is None and len(pinned) == 3:
        near = [i for i in cheap + probed if i.version[:2] == pinned[:2]]
        if near:
            chosen = current if current.version[:2] == pinned[:2] else \
                max(near, key=lambda i: i.version)
            notes.append(f"Python {request} is not on this machine; using {chosen.version_text} "
                         f"({chosen.executable}), the same minor version")
    if chosen is None:
        warnings.append(
            f"WARNING: Python {request} was requested but no such interpreter is on this machine "
            f"and Python downloads are disabled (UV_PYTHON_DOWNLOADS=never); using the current "
            f"interpreter, Python {current.version_text} ({current.executable}).")
        return current
    if chosen.version[:2] < MIN_JOB_PYTHON:
        warnings.append(
            f"WARNING: Python {request} was requested and {chosen.version_text} is on this "
            f"machine, but simml's job side needs Python >= {MIN_JOB_PYTHON[0]}."
            f"{MIN_JOB_PYTHON[1]}; using the current interpreter, Python "
            f"{current.version_text} ({current.executable}).")
        return current
    return chosen


# --- the spec ---------------------------------------------------------------------------------------------
def conda_to_pip(spec: str, notes: list[str]) -> str | None:
    """A conda package spec as a pip requirement (None when it is skipped).

    ``numpy=1.26`` -> ``numpy==1.26.*``; ``numpy==1.26.4`` and ``numpy>=1.2`` are kept;
    ``conda-forge::pkg`` loses its channel; build strings (``=py311_0``) are dropped.

    :raises EnvironmentBuildException: the package has no known PyPI name.
    """
    text = re.sub(r"^[^\s:]+::", "", spec.strip())
    match = re.fullmatch(r"([A-Za-z0-9_][A-Za-z0-9._-]*)\s*(.*)", text)
    if not match:
        raise EnvironmentBuildException(f"Cannot read the conda package spec {spec!r}.")
    name, rest = match.group(1).lower(), match.group(2).strip()
    if name in CONDA_IGNORED:
        notes.append(f"conda package {spec!r} skipped: {CONDA_IGNORED[name]}")
        return None
    pypi = CONDA_TO_PYPI.get(name)
    if pypi is None:
        raise EnvironmentBuildException(
            f"The conda package {name!r} ({spec!r}) has no PyPI equivalent known to simml. No "
            f"conda channel is reachable, so conda packages are installed from PyPI under a "
            f"mapped name (the conda -> PyPI map in docs/environments.md). List the PyPI "
            f"project under pip_packages instead, e.g. "
            f"CondaDependencies.create(pip_packages=['<pypi-name>']).")
    version = _conda_version(rest, spec)
    requirement = f"{pypi}{version}"
    if name != pypi or rest:
        notes.append(f"conda package {spec!r} -> pip {requirement!r}")
    return requirement


def _conda_version(rest: str, spec: str) -> str:
    if not rest:
        return ""
    if "|" in rest:
        raise EnvironmentBuildException(
            f"The conda version spec of {spec!r} uses '|', which simml cannot map to pip; "
            "list the package under pip_packages instead.")
    if rest.startswith("=="):
        return "==" + rest[2:].split("=")[0].strip()
    if rest.startswith("="):
        return _wildcard(rest[1:].split("=")[0].strip(), fuzzy=True)
    if rest[0] in "<>!~":
        return rest.replace(" ", "")
    first = rest.split()[0]  # "1.26.* py311_0": version, then a build string
    if first[0] in "<>=!~":
        return _conda_version(first, spec)
    return _wildcard(first, fuzzy=False)


def _wildcard(version: str, fuzzy: bool) -> str:
    if version.endswith("*"):
        return f"=={version.rstrip('*').rstrip('.')}.*"
    return f"=={version}.*" if fuzzy else f"=={version}"


def _normalise_pip(entry: str) -> str:
    text = " ".join(entry.split())
    if is_pip_option(text):
        return text
    name = pip_requirement_name(text)
    if name is None:
        return text
    match = re.match(r"\s*[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?", text)
    assert match is not None
    rest = text[match.end():]
    if rest.startswith(("[", " [")):
        rest = re.sub(r"\s*\[\s*([^\]]*)\]", lambda m: "[" + ",".join(sorted(
            canonical_name(x.strip()) for x in m.group(1).split(",") if x.strip())) + "]",
            rest, count=1)
    spec, semicolon, marker = rest.partition(";")
    if "@" not in spec:  # version specifiers: whitespace is insignificant
        spec = re.sub(r"\s+", "", spec)
    else:
        spec = " " + spec.strip()
    return name + spec + (f"; {marker.strip()}" if semicolon else "")


@dataclass
class ResolvedSpec:
    """What a build needs and what its cache key hashes."""

    name: str
    version: str | None
    interpreter: Interpreter
    pip: list[str]
    conda: list[str]
    options: list[str]
    index: dict[str, str]
    simml_version: str
    environment_variables: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_key_dict(self) -> dict[str, Any]:
        return {"format": SPEC_FORMAT, "simml": self.simml_version,
                "python": {"version": self.interpreter.version_text,
                           "executable": self.interpreter.executable},
                "pip": self.pip, "conda": self.conda, "pipOptions": self.options,
                "index": self.index}

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.as_key_dict(), sort_keys=True,
                                         separators=(",", ":")).encode()).hexdigest()

    def requirements(self) -> list[str]:
        return [*self.options, *self.conda, *self.pip]


def resolve_spec(definition: dict[str, Any], source_dir: Path | None = None,
                 probe_cache: Path | None = None) -> ResolvedSpec:
    """The build spec of an environment definition (no I/O beyond finding interpreters).

    :raises EnvironmentBuildException: an unmapped conda package, an unreadable spec.
    """
    python = definition.get("python") or {}
    notes: list[str] = []
    warnings: list[str] = []
    structure = python.get("condaDependencies")
    conda_file = python.get("condaDependenciesFile")
    if conda_file:
        base = source_dir if source_dir is not None else Path.cwd()
        path = Path(conda_file) if Path(conda_file).is_absolute() else base / conda_file
        if not path.is_file():
            raise EnvironmentBuildException(
                f"python.conda_dependencies_file {conda_file!r} was not found in the source "
                "directory.")
    try:
        cd = CondaDependencies(path) if conda_file else \
            CondaDependencies(_underlying_structure=structure or {"dependencies": []})
    except UserErrorException as exc:
        raise EnvironmentBuildException(f"Invalid conda dependencies: {exc.message}") from exc
    interpreter = find_interpreter(cd.get_python_version(), notes, warnings, probe_cache)
    conda: list[str] = []
    for package in cd.conda_packages:
        requirement = conda_to_pip(package, notes)
        if requirement is not None:
            conda.append(_normalise_pip(requirement))
    pip: list[str] = []
    options: list[str] = []
    # the emulator's jobs talk to it through the real SDK: they install it
    install_azureml = bool((definition.get(SIMML_SECTION) or {}).get(INSTALL_AZUREML))
    for entry in [*cd.pip_options, *cd.pip_packages]:
        normalised = _normalise_pip(entry)
        if is_pip_option(normalised):
            options.append(normalised)
            continue
        name = pip_requirement_name(normalised) or ""
        if (name.startswith(SKIPPED_PIP_PREFIXES) and name not in KEPT_AZUREML_PACKAGES
                and not install_azureml) or name == "simml":
            notes.append(f"pip package {entry!r} is not installed: simml's job side provides "
                         "the run API in every environment")
            continue
        pip.append(normalised)
    index = {k: os.environ[k] for k in INDEX_VARIABLES if os.environ.get(k)}
    return ResolvedSpec(
        name=str(definition.get("name") or "unnamed"), version=definition.get("version"),
        interpreter=interpreter, pip=sorted(set(pip)), conda=sorted(set(conda)),
        options=sorted(set(options)), index=index, simml_version=simml_version(),
        environment_variables={str(k): str(v) for k, v in
                               (definition.get("environmentVariables") or {}).items()},
        notes=notes, warnings=warnings)


# --- simml's job side ----------------------------------------------------------------------------------------
_VERSION: list[str] = []
_FINGERPRINT: list[str] = []


def simml_version() -> str:
    """The installed simml's version: from its ``.dist-info`` folder's name (a directory listing;
    ``importlib.metadata`` takes tens of milliseconds, a lot for a cache hit)."""
    if not _VERSION:
        for entry in sys.path:
            try:
                names = os.listdir(entry or ".")
            except OSError:
                continue
            found = [n for n in names if n.startswith("simml-") and n.endswith(".dist-info")]
            if found:
                _VERSION.append(found[0][len("simml-"):-len(".dist-info")])
                break
        else:
            import simml
            _VERSION.append(str(simml.__version__))
    return _VERSION[0]


def _simml_root() -> Path:
    import simml
    return Path(simml.__file__).resolve().parent


def _job_side_files() -> list[Path]:
    root = _simml_root()
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        found.extend(Path(folder, f) for f in sorted(files) if f.endswith(".py"))
    return found


def job_side_fingerprint() -> str:
    """Hash of the ``simml`` package's ``.py`` files (what gets injected)."""
    if not _FINGERPRINT:
        root = _simml_root()
        digest = hashlib.sha256()
        for path in _job_side_files():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        _FINGERPRINT.append(digest.hexdigest()[:16])
    return _FINGERPRINT[0]


def _site_packages(env: Path) -> Path:
    found = sorted(env.glob("lib/python*/site-packages"))
    if not found:
        raise EnvironmentBuildException(f"The virtual environment {env} has no site-packages.")
    return found[0]


PTH_NAME = "_simml_job.pth"


def inject_job_side(env: Path) -> str:
    """Copy simml's ``.py`` files into ``env/simml-job/<fingerprint>/`` and point a relative
    ``.pth`` at them (written atomically, so a running job keeps a consistent view)."""
    fingerprint = job_side_fingerprint()
    root = _simml_root()
    target = env / "simml-job" / fingerprint
    if not target.is_dir():
        staging = env / "simml-job" / f".tmp-{fingerprint}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        for path in _job_side_files():
            destination = staging / "simml" / path.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        os.replace(staging, target)
    site = _site_packages(env)
    relative = os.path.relpath(target, site)
    pth = site / PTH_NAME
    tmp = site / f".{PTH_NAME}.{os.getpid()}"
    tmp.write_text(relative + "\n", encoding="utf-8")
    os.replace(tmp, pth)
    for old in (env / "simml-job").iterdir():  # older copies: a day's grace for running jobs
        if old.name != fingerprint and not old.name.startswith(".") and \
                time.time() - old.stat().st_mtime > 24 * 3600:
            shutil.rmtree(old, ignore_errors=True)
    return fingerprint


def injected_fingerprint(env: Path) -> str | None:
    try:
        site = _site_packages(env)
        return Path((site / PTH_NAME).read_text(encoding="utf-8").strip()).name
    except (OSError, EnvironmentBuildException):
        return None


# --- the builder -----------------------------------------------------------------------------------------------
def uv_command() -> list[str]:
    """How to run uv: the binary the ``uv`` package ships, else one on PATH."""
    try:
        import uv  # the PyPI package that ships the binary
        return [uv.find_uv_bin()]
    except (ImportError, FileNotFoundError, AttributeError):
        found = shutil.which("uv")
        if found:
            return [found]
    raise EnvironmentBuildException(
        "uv is not installed: simml builds environments with uv (pip install uv), or set "
        "python.user_managed_dependencies = True to run on the current interpreter.")


class _Canceled(Exception):
    pass


class EnvironmentBuilder:
    """Builds and caches virtual environments under ``<home>/envs/`` (shared by every workspace
    of this ``SIMML_HOME``)."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.envs = Path(home) / ENVS_DIR

    def env_dir(self, key: str) -> Path:
        return self.envs / key

    def prepare(self, definition: dict[str, Any], log: Callable[[str], None],
                source_dir: Path | None = None,
                should_cancel: Callable[[], bool] | None = None) -> PreparedEnvironment:
        """Materialise ``definition``; stream the build to ``log``.

        :raises EnvironmentBuildException: the spec cannot be met or the build failed.
        """
        started = time.perf_counter()
        spec = resolve_spec(definition, source_dir, self.envs / "interpreters.json")
        label = spec.name + (f" (version {spec.version})" if spec.version else "")
        for line in spec.warnings:
            log(LOG_PREFIX + line)
        key = spec.key
        env = self.env_dir(key)
        if self._usable(env):
            self._refresh_job_side(env, key, log)
            log(f"{LOG_PREFIX}Environment {label} is up to date (cached {key[:12]})")
            return self._prepared(spec, key, env, cached=True)
        self.envs.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock(key, log, should_cancel):
                if self._usable(env):
                    log(f"{LOG_PREFIX}Environment {label} was built by another run meanwhile "
                        f"(cached {key[:12]})")
                    return self._prepared(spec, key, env, cached=True)
                self._build(spec, key, env, label, log, should_cancel)
        except _Canceled:
            log(f"{LOG_PREFIX}cancel requested: the environment build was stopped")
            return PreparedEnvironment(runtime="process", environment_key="canceled",
                                       cached=False, details={"python": sys.executable,
                                                              "canceled": True})
        log(f"{LOG_PREFIX}Environment {label} is ready ({key[:12]}, "
            f"{time.perf_counter() - started:.1f} s)")
        return self._prepared(spec, key, env, cached=False)

    # --- internals ---------------------------------------------------------------------------
    @staticmethod
    def _usable(env: Path) -> bool:
        # a venv whose base interpreter vanished has a dangling bin/python: rebuild it
        return (env / "simml-env.json").is_file() and os.path.exists(env / "bin" / "python")

    def _refresh_job_side(self, env: Path, key: str, log: Callable[[str], None]) -> None:
        if injected_fingerprint(env) == job_side_fingerprint():
            return
        with self._lock(key, log, None):
            if injected_fingerprint(env) != job_side_fingerprint():
                inject_job_side(env)
                log(f"{LOG_PREFIX}simml's job side changed: refreshed its copy in {key[:12]}")

    def _prepared(self, spec: ResolvedSpec, key: str, env: Path, cached: bool
                  ) -> PreparedEnvironment:
        return PreparedEnvironment(
            runtime="process", environment_key=key, cached=cached,
            details={"python": str(env / "bin" / "python"), "path": str(env),
                     "python_version": spec.interpreter.version_text,
                     "base_interpreter": spec.interpreter.executable,
                     "environment_name": spec.name, "environment_version": spec.version,
                     "environment_variables": dict(spec.environment_variables),
                     "warnings": list(spec.warnings)})

    class _Lock:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: Any) -> None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()

    def _lock(self, key: str, log: Callable[[str], None],
              should_cancel: Callable[[], bool] | None) -> "EnvironmentBuilder._Lock":
        self.envs.mkdir(parents=True, exist_ok=True)
        handle = open(self.envs / f"{key}.lock", "a+b")
        if not lock_or_wait(handle, lambda: log(
                f"{LOG_PREFIX}another run is building environment {key[:12]}: waiting for it"),
                should_cancel):
            handle.close()
            raise _Canceled()
        return EnvironmentBuilder._Lock(handle)

    def _build(self, spec: ResolvedSpec, key: str, env: Path, label: str,
               log: Callable[[str], None], should_cancel: Callable[[], bool] | None) -> None:
        for stale in self.envs.glob(f".building-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # we hold the key's lock: nobody uses it
        if env.exists():  # unusable leftover (its interpreter is gone)
            shutil.rmtree(env, ignore_errors=True)
        staging = self.envs / f".building-{key}-{os.getpid()}"
        log(f"{LOG_PREFIX}Building environment {label} ({key[:12]}) with uv: Python "
            f"{spec.interpreter.version_text} ({spec.interpreter.executable}), "
            f"{len(spec.pip) + len(spec.conda)} requirement(s)")
        for note in spec.notes:
            log(f"{LOG_PREFIX}note: {note}")
        transcript: list[str] = []
        try:
            uv = uv_command()
            env_vars = dict(os.environ)
            for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME", "UV_PYTHON"):
                env_vars.pop(name, None)
            env_vars.update({"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1",
                             "NO_COLOR": "1"})
            self._run([*uv, "venv", "--relocatable", "--no-project", "--python",
                       spec.interpreter.executable, str(staging)], "uv venv", env_vars, log,
                      transcript, should_cancel)
            injected: list[Any] = []  # simml's job side is copied while uv installs

            def inject() -> None:
                try:
                    injected.append(inject_job_side(staging))
                except BaseException as exc:  # re-raised below
                    injected.append(exc)

            injector = threading.Thread(target=inject, daemon=True)
            injector.start()
            # simml's job side must import with another Python than the one simml runs on (the
            # current one is covered by simml's own tests): checked while uv installs
            check = None
            if spec.interpreter.version[:2] != tuple(sys.version_info[:2]):
                injector.join()
                check = subprocess.Popen(
                    [str(staging / "bin" / "python"), "-I", "-c",
                     "import simml.core.run, simml.job"], cwd=staging, env=env_vars,
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                if spec.requirements():
                    requirements = staging / "simml-requirements.txt"
                    requirements.write_text("\n".join(spec.requirements()) + "\n",
                                            encoding="utf-8")
                    for line in spec.requirements():
                        log(f"{LOG_PREFIX}requirement: {line}")
                    # --compile-bytecode: jobs must not recompile scikit-learn on every start
                    # (they would when PYTHONDONTWRITEBYTECODE is set, as on CI machines).
                    self._run([*uv, "pip", "install", "--compile-bytecode", "--python",
                               str(staging / "bin" / "python"), "-r", str(requirements)],
                              "uv pip install", env_vars, log, transcript, should_cancel)
                output = check.communicate()[0].decode("utf-8", "replace").rstrip() \
                    if check is not None else ""
            finally:
                injector.join()
                if check is not None and check.poll() is None:
                    check.kill()
                    check.wait()
            if isinstance(injected[0], BaseException):
                raise injected[0]
            fingerprint = injected[0]
            if check is not None and check.returncode != 0:
                raise EnvironmentBuildException(
                    f"Preparing the environment failed: simml's job side does not import with "
                    f"Python {spec.interpreter.version_text} ({spec.interpreter.executable}):\n"
                    f"{output}")
            (staging / "simml-env.json").write_text(json.dumps({
                "key": key, "spec": spec.as_key_dict(), "name": spec.name,
                "version": spec.version, "job_side": fingerprint,
                "built": datetime.now(timezone.utc).isoformat()}, indent=2), encoding="utf-8")
            os.rename(staging, env)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _run(self, command: list[str], what: str, env: dict[str, str],
             log: Callable[[str], None], transcript: list[str],
             should_cancel: Callable[[], bool] | None) -> None:
        process = subprocess.Popen(command, cwd=self.envs, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def pump() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                transcript.append(line)
                log(LOG_PREFIX + line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while reader.is_alive():
            reader.join(timeout=0.25)
            if should_cancel is not None and reader.is_alive() and should_cancel():
                process.kill()
                process.wait()
                reader.join(timeout=5)
                raise _Canceled()
        code = process.wait()
        if code != 0:
            tail = "\n".join(transcript[-ERROR_TAIL_LINES:])
            raise EnvironmentBuildException(
                f"Preparing the environment failed: {what} exited with code {code}.\n{tail}\n"
                "(The whole build log is in azureml-logs/70_driver_log.txt.)")

