"""Environments (issue 5 item 1): the Environment / CondaDependencies API, the registry, and runs
whose Preparing stage builds a uv virtual environment, cached by a hash of the resolved spec.

Package installs never reach PyPI: a session fixture builds tiny pure-Python wheels and serves them
as a PEP 503 index on 127.0.0.1 (``UV_DEFAULT_INDEX``), with a private uv cache.

The registry (register, get, versions, list) is ``contract`` (docs/testing.md; unique names: a
shared workspace). Runs that build environments are ``local_only``: the local backend's uv venvs
from this test index, on this machine's interpreters (Azure builds images). The API itself
touches no backend: no marker.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import sys
import textwrap
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from _contract import unique
from simml.core import Experiment, ScriptRunConfig
from simml.core.conda_dependencies import CondaDependencies, parse_conda_yaml
from simml.core.environment import (
    EnvironmentBuildException,
    EnvironmentNotFoundException,
    Environment,
)
from simml.exceptions import ActivityFailedException, NotFoundException, UserErrorException

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "backends"))
from simml_local.environments import (  # noqa: E402
    CONDA_TO_PYPI,
    PTH_NAME,
    EnvironmentBuilder,
    _cheap_interpreters,
    conda_to_pip,
    find_interpreter,
    resolve_spec,
)

DRIVER_LOG = "azureml-logs/70_driver_log.txt"


# --- a local wheel index --------------------------------------------------------------------------
def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = (),
                body: str | None = None) -> Path:
    """A valid pure-Python wheel of one module ``<name>`` (``VALUE = "<name>-<version>"``)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": (body or f'VALUE = "{name}-{version}"\n').encode(),
        f"{dist}/METADATA": ("Metadata-Version: 2.1\n"
                             f"Name: {name}\nVersion: {version}\n"
                             + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: simml-tests\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
    return path


def write_simple_index(root: Path, wheels: list[Path]) -> None:
    """A PEP 503 "simple" index over ``wheels`` under ``root/simple``."""
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        project = wheel.name.split("-")[0].replace("_", "-").lower()
        projects.setdefault(project, []).append(wheel)
    (root / "simple").mkdir(parents=True, exist_ok=True)
    (root / "simple" / "index.html").write_text("<html><body>" + "".join(
        f'<a href="{p}/">{p}</a>' for p in sorted(projects)) + "</body></html>")
    for project, found in projects.items():
        (root / "simple" / project).mkdir(exist_ok=True)
        links = "".join(
            f'<a href="../../files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">'
            f"{w.name}</a><br>" for w in found)
        (root / "simple" / project / "index.html").write_text(
            f"<html><body>{links}</body></html>")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if "simml-testpkg-slow" in self.path:  # a build that takes long: for cancellation
            import time
            time.sleep(20)
        super().do_GET()


@pytest.fixture(scope="session")
def wheel_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Serve simml_testpkg_a 1.0 / 2.0 and simml_testpkg_b 1.0 (needs a) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("wheel-index")
    (root / "files").mkdir()
    wheels = [build_wheel(root / "files", "simml_testpkg_a", "1.0"),
              build_wheel(root / "files", "simml_testpkg_a", "2.0"),
              build_wheel(root / "files", "simml_testpkg_b", "1.0",
                          requires=("simml_testpkg_a>=1.0",))]
    wheels.append(build_wheel(root / "files", "simml_testpkg_slow", "1.0"))
    write_simple_index(root, wheels)
    handler = lambda *a, **k: _Quiet(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    yield {"url": url, "cache": str(tmp_path_factory.mktemp("uv-cache"))}
    server.shutdown()
    server.server_close()


@pytest.fixture
def index(wheel_index: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """uv (in the runners these tests start) installs from the local index only."""
    for name in ("UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS",
                 "UV_NO_INDEX", "UV_OFFLINE", "PIP_FIND_LINKS", "UV_PYTHON"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UV_DEFAULT_INDEX", wheel_index["url"])
    monkeypatch.setenv("UV_CACHE_DIR", wheel_index["cache"])
    return wheel_index


# --- helpers --------------------------------------------------------------------------------------
def project(tmp_path: Path, script: str, name: str = "job.py") -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(script))
    return folder


def driver_log(ws, run) -> str:
    return Path(ws.get_details()["root"], "artifacts", run.id, DRIVER_LOG).read_text()


def statuses(run) -> list[str]:
    return [h["status"] for h in run.get_details()["statusHistory"]]


def pip_env(name: str, *packages: str, python_version: str | None = None) -> Environment:
    env = Environment(name)
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=list(packages), python_version=python_version)
    return env


USES_PACKAGE = """
    import sys
    import simml_testpkg_a
    from simml.core import Run
    run = Run.get_context()
    print("value", simml_testpkg_a.VALUE, "python", sys.executable)
    run.log("pkg", simml_testpkg_a.VALUE)
    run.log("in_venv", sys.prefix != sys.base_prefix)
"""


# --- CondaDependencies ----------------------------------------------------------------------------
def test_conda_dependencies_create_and_edit() -> None:
    cd = CondaDependencies.create(pip_packages=["scikit-learn==1.5.0", "joblib"],
                                  conda_packages=["numpy=1.26"], python_version="3.11",
                                  pip_indexurl="https://example.org/simple")
    assert isinstance(cd.pip_packages, type(iter([])))  # iterators, as in Azure
    assert list(cd.pip_packages) == ["azureml-defaults", "scikit-learn==1.5.0", "joblib"]
    assert list(cd.conda_packages) == ["numpy=1.26"]
    assert list(cd.pip_options) == ["--index-url https://example.org/simple"]
    assert cd.get_python_version() == "3.11"
    cd.add_pip_package("scikit_learn>=1.6")           # same project: replaced
    cd.remove_pip_package("joblib")
    cd.add_conda_package("numpy=2.0")
    cd.add_channel("conda-forge")
    cd.add_channel("pytorch")
    cd.set_python_version("3.12")
    assert list(cd.pip_packages) == ["azureml-defaults", "scikit_learn>=1.6"]
    assert list(cd.conda_packages) == ["numpy=2.0"]
    assert cd.get_python_version() == "3.12"
    assert list(cd.conda_channels) == ["anaconda", "conda-forge", "pytorch"]
    with pytest.raises(UserErrorException):
        cd.add_pip_package("")


def test_conda_yaml_round_trip(tmp_path: Path) -> None:
    cd = CondaDependencies.create(pip_packages=["requests>=2", "weird: name"],
                                  conda_packages=["conda-forge::pandas>=2"], python_version="3.11")
    text = cd.serialize_to_string()
    assert text.startswith("# Conda environment specification")
    assert "- python=3.11" in text and "- pip:" in text and "  - requests>=2" in text
    path = cd.save(tmp_path / "env.yml")
    again = CondaDependencies(path)
    assert again == cd
    assert list(again.pip_packages) == list(cd.pip_packages)
    yaml = pytest.importorskip("yaml")  # our reader and writer agree with a real YAML parser
    assert yaml.safe_load(text) == cd.as_dict()


def test_conda_yaml_subset_reader() -> None:
    text = textwrap.dedent("""\
        # an exported environment
        name: demo   # trailing comment
        channels: [conda-forge, "defaults"]
        dependencies:
          - python=3.11
          - conda-forge::numpy=1.26
          - pip
          - pip:
              - "--extra-index-url http://127.0.0.1:9/simple"
              - requests==2.31  # pinned
              - 'it''s'
        prefix: /opt/envs/demo
        """)
    assert parse_conda_yaml(text) == {
        "name": "demo", "channels": ["conda-forge", "defaults"],
        "dependencies": ["python=3.11", "conda-forge::numpy=1.26", "pip", {"pip": [
            "--extra-index-url http://127.0.0.1:9/simple", "requests==2.31", "it's"]}],
        "prefix": "/opt/envs/demo"}
    with pytest.raises(UserErrorException, match="line 2"):
        parse_conda_yaml("name: x\ndependencies: &anchor\n")


# --- Environment API and registry -------------------------------------------------------------------
def test_environment_defaults_and_definition() -> None:
    env = Environment("sklearn-env")
    assert env.version is None
    assert env.python.user_managed_dependencies is False
    assert env.python.interpreter_path == "python"
    assert isinstance(env.python.conda_dependencies, CondaDependencies)
    assert env.docker.enabled is False and env.docker.enabled_set_explicitly is False
    env.docker.enabled = False
    assert env.docker.enabled_set_explicitly is True
    definition = env._definition()
    json.dumps(definition)  # JSON-able: the run definition carries it
    assert definition["python"]["userManagedDependencies"] is False
    assert definition["docker"]["enabledSetExplicitly"] is True
    assert Environment._from_definition(definition) == env


@pytest.mark.contract
def test_register_get_versions_list_clone(ws) -> None:
    name, other = unique("my-env"), unique("other-env")
    env = pip_env(name, "simml_testpkg_a")
    first = env.register(ws)
    assert (first.name, first.version) == (name, "1")
    assert env.register(ws).version == "1"                  # unchanged: no new version
    env.python.conda_dependencies.add_pip_package("simml_testpkg_b")
    assert env.register(ws).version == "2"
    env.environment_variables["MODE"] = "fast"
    assert env.register(ws).version == "3"
    latest = Environment.get(ws, name)
    assert latest.version == "3" and latest.environment_variables["MODE"] == "fast"
    one = Environment.get(ws, name, version="1")
    assert list(one.python.conda_dependencies.pip_packages) == ["azureml-defaults",
                                                                "simml_testpkg_a"]
    assert Environment.get(ws, name, version=2).version == "2"
    with pytest.raises(EnvironmentNotFoundException, match="no version '9'"):
        Environment.get(ws, name, version="9")
    with pytest.raises(NotFoundException, match="not registered"):
        Environment.get(ws, unique("nope"))
    pip_env(other).register(ws)
    listed = Environment.list(ws)
    assert {name, other} <= set(listed) and listed[name].version == "3"
    clone = latest.clone(f"{name}-copy")
    assert clone.name == f"{name}-copy" and clone.version is None
    assert clone._definition()["python"] == latest._definition()["python"]
    assert clone.register(ws).version == "1"
    with pytest.raises(UserErrorException, match="reserved"):
        Environment("AzureML-sklearn").register(ws)


def test_from_pip_requirements_and_conda_specification(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# deps\nsimml_testpkg_a==1.0\n\n--extra-index-url http://x/simple\n"
                            "simml_testpkg_b  # with a comment\n")
    env = Environment.from_pip_requirements("req-env", requirements, pip_version="24.0")
    cd = env.python.conda_dependencies
    assert list(cd.pip_packages) == ["azureml-defaults", "simml_testpkg_a==1.0",
                                     "simml_testpkg_b"]
    assert list(cd.pip_options) == ["--extra-index-url http://x/simple"]
    assert list(cd.conda_packages) == ["pip=24.0"]

    spec = tmp_path / "environment.yml"
    spec.write_text("name: conda-env\nchannels:\n  - conda-forge\ndependencies:\n"
                    "  - python=3.11\n  - numpy=1.26\n  - pip:\n    - simml_testpkg_a\n")
    env = Environment.from_conda_specification("conda-env", spec)
    cd = env.python.conda_dependencies
    assert cd.get_python_version() == "3.11"
    assert list(cd.conda_packages) == ["numpy=1.26"]
    assert list(cd.pip_packages) == ["simml_testpkg_a"]
    with pytest.raises(UserErrorException, match="not found"):
        Environment.from_conda_specification("x", tmp_path / "missing.yml")


def test_save_to_directory_and_load(tmp_path: Path) -> None:
    env = pip_env("saved", "simml_testpkg_a", python_version="3.11")
    env.environment_variables = {"A": "1"}
    env.docker.base_image = "python:3.11-slim"
    env.save_to_directory(tmp_path / "env")
    assert (tmp_path / "env" / "azureml_environment.json").is_file()
    assert "simml_testpkg_a" in (tmp_path / "env" / "conda_dependencies.yml").read_text()
    with pytest.raises(UserErrorException, match="overwrite"):
        env.save_to_directory(tmp_path / "env")
    env.save_to_directory(tmp_path / "env", overwrite=True)
    loaded = Environment.load_from_directory(tmp_path / "env")
    assert loaded == env


# --- spec resolution (no build) ---------------------------------------------------------------------------
def test_conda_to_pypi_mapping() -> None:
    notes: list[str] = []
    assert conda_to_pip("numpy=1.26", notes) == "numpy==1.26.*"
    assert conda_to_pip("numpy>=1.2", notes) == "numpy>=1.2"
    assert conda_to_pip("conda-forge::scikit-learn==1.5.2=py311_0", notes) == \
        "scikit-learn==1.5.2"
    assert conda_to_pip("py-xgboost", notes) == "xgboost"
    assert conda_to_pip("pytorch=2.3", notes) == "torch==2.3.*"
    assert conda_to_pip("opencv", notes) == "opencv-python-headless"
    assert conda_to_pip("pip", notes) is None
    assert {"numpy", "scipy", "pandas", "matplotlib", "joblib", "pyyaml"} <= set(CONDA_TO_PYPI)
    with pytest.raises(EnvironmentBuildException, match="no PyPI equivalent.*environments.md"):
        conda_to_pip("not-a-conda-thing=1.0", [])


def test_resolved_spec_is_normalised_and_drops_azureml() -> None:
    a = pip_env("a", "Simml_TestPkg_A>=1.0", "simml_testpkg_b")._definition()
    b = pip_env("b", "simml_testpkg_b", "simml-testpkg-a >= 1.0")._definition()
    spec_a, spec_b = resolve_spec(a), resolve_spec(b)
    assert spec_a.pip == ["simml-testpkg-a>=1.0", "simml-testpkg-b"]
    assert spec_a.key == spec_b.key                                   # the name is not hashed
    assert any("azureml-defaults" in n for n in spec_a.notes)
    c = pip_env("c", "simml_testpkg_a==2.0")._definition()
    assert resolve_spec(c).key != spec_a.key


def test_python_pin_resolution() -> None:
    current = ".".join(map(str, sys.version_info[:2]))
    notes: list[str] = []
    warnings: list[str] = []
    assert find_interpreter(current, notes, warnings).executable == sys.executable
    assert find_interpreter(None, notes, warnings).executable == sys.executable
    assert not warnings
    assert find_interpreter("3.2", notes, warnings).executable == sys.executable
    assert warnings and "3.2" in warnings[0] and "UV_PYTHON_DOWNLOADS=never" in warnings[0]


# --- runs ---------------------------------------------------------------------------------------------------
@pytest.mark.local_only
@pytest.mark.slow
def test_run_builds_a_venv_then_hits_the_cache(ws, index, tmp_path: Path) -> None:
    folder = project(tmp_path, USES_PACKAGE)
    env = pip_env("pkg-env", "simml_testpkg_a==1.0")
    experiment = Experiment(ws, "envs")
    first = experiment.submit(ScriptRunConfig(str(folder), "job.py", environment=env))
    assert first.wait_for_completion()["status"] == "Completed", driver_log(ws, first)
    assert first.get_metrics() == {"pkg": "simml_testpkg_a-1.0", "in_venv": True}
    log = driver_log(ws, first)
    assert "[preparing] Building environment pkg-env" in log
    assert "Creating virtual environment" in log                  # uv's own lines, streamed
    assert "+ simml-testpkg-a==1.0" in log
    assert "azureml-defaults" in log and "not installed" in log
    envs = sorted(p.name for p in (Path(os.environ["SIMML_HOME"]) / "envs").iterdir()
                  if p.is_dir())
    assert len(envs) == 1 and len(envs[0]) == 64
    assert statuses(first) == ["NotStarted", "Starting", "Preparing", "Running", "Finalizing",
                               "Completed"]

    # the same spec (another Environment object, registered): a cache hit, no uv call
    registered = pip_env("pkg-env", "simml_testpkg_a==1.0").register(ws)
    second = experiment.submit(ScriptRunConfig(str(folder), "job.py",
                                               environment=Environment.get(ws, "pkg-env")))
    assert second.wait_for_completion()["status"] == "Completed", driver_log(ws, second)
    log = driver_log(ws, second)
    assert f"Environment pkg-env (version {registered.version}) is up to date (cached " \
           f"{envs[0][:12]})" in log
    assert "Building environment" not in log and "Creating virtual environment" not in log
    assert second.get_metrics()["pkg"] == "simml_testpkg_a-1.0"

    # another spec: another environment
    third = experiment.submit(ScriptRunConfig(str(folder), "job.py", environment=pip_env(
        "pkg-env-2", "simml_testpkg_b")))
    assert third.wait_for_completion()["status"] == "Completed", driver_log(ws, third)
    log = driver_log(ws, third)
    assert "Building environment pkg-env-2" in log and "+ simml-testpkg-b==1.0" in log
    assert third.get_metrics()["pkg"] == "simml_testpkg_a-2.0"     # b's dependency, resolved
    assert len([p for p in (Path(os.environ["SIMML_HOME"]) / "envs").iterdir()
                if p.is_dir()]) == 2


@pytest.mark.local_only
@pytest.mark.slow
def test_user_managed_environment_runs_on_the_current_interpreter(ws, tmp_path: Path) -> None:
    folder = project(tmp_path, """
        import sys
        from simml.core import Run
        Run.get_context().log("python", sys.executable)
    """)
    env = Environment("mine")
    env.python.user_managed_dependencies = True
    run = Experiment(ws, "envs").submit(ScriptRunConfig(str(folder), "job.py", environment=env))
    assert run.wait_for_completion()["status"] == "Completed"
    assert run.get_metrics()["python"] == sys.executable
    assert "user-managed, the current interpreter" in driver_log(ws, run)
    assert not (Path(os.environ["SIMML_HOME"]) / "envs").exists()


@pytest.mark.local_only
@pytest.mark.slow
def test_unknown_pip_package_fails_in_preparing(ws, index, tmp_path: Path) -> None:
    folder = project(tmp_path, "print('never runs')\n")
    env = pip_env("broken", "simml_testpkg_does_not_exist")
    run = Experiment(ws, "envs").submit(ScriptRunConfig(str(folder), "job.py", environment=env))
    with pytest.raises(ActivityFailedException):
        run.wait_for_completion()
    details = run.get_details()
    message = details["error"]["error"]["message"]
    assert "EnvironmentBuildException" in message and "uv pip install exited" in message
    assert "not found" in message or "No solution" in message
    assert "simml-testpkg-does-not-exist" in message
    assert statuses(run)[-2:] == ["Preparing", "Failed"]
    assert "never runs" not in driver_log(ws, run)
    envs = Path(os.environ["SIMML_HOME"]) / "envs"
    assert not [p for p in envs.iterdir() if p.is_dir()]           # nothing half-built is left


@pytest.mark.local_only
@pytest.mark.slow
def test_unmapped_conda_package_fails_in_preparing(ws, index, tmp_path: Path) -> None:
    folder = project(tmp_path, "print('never runs')\n")
    env = Environment("conda-env")
    env.python.conda_dependencies = CondaDependencies.create(conda_packages=["mkl-service=2.4"])
    run = Experiment(ws, "envs").submit(ScriptRunConfig(str(folder), "job.py", environment=env))
    with pytest.raises(ActivityFailedException, match="mkl-service"):
        run.wait_for_completion()
    message = run.get_details()["error"]["error"]["message"]
    assert "no PyPI equivalent" in message and "docs/environments.md" in message
    assert statuses(run)[-2:] == ["Preparing", "Failed"]


@pytest.mark.local_only
@pytest.mark.slow
def test_python_pin_not_on_the_machine_falls_back_with_a_warning(ws, index, tmp_path: Path
                                                                ) -> None:
    folder = project(tmp_path, USES_PACKAGE)
    env = pip_env("old-python", "simml_testpkg_a", python_version="3.2")
    run = Experiment(ws, "envs").submit(ScriptRunConfig(str(folder), "job.py", environment=env))
    assert run.wait_for_completion()["status"] == "Completed", driver_log(ws, run)
    log = driver_log(ws, run)
    assert "WARNING: Python 3.2 was requested" in log and "current interpreter" in log
    assert run.get_metrics()["pkg"] == "simml_testpkg_a-2.0"


@pytest.mark.local_only
@pytest.mark.slow
def test_concurrent_runs_with_a_new_spec_build_it_once(ws, index, tmp_path: Path) -> None:
    folder = project(tmp_path, USES_PACKAGE)
    experiment = Experiment(ws, "envs")
    runs = [experiment.submit(ScriptRunConfig(str(folder), "job.py",
                                              environment=pip_env(f"twin-{i}", "simml_testpkg_b")))
            for i in range(2)]
    for run in runs:
        assert run.wait_for_completion()["status"] == "Completed", driver_log(ws, run)
    logs = [driver_log(ws, run) for run in runs]
    assert sum("Creating virtual environment" in log for log in logs) == 1
    assert sum("Building environment" in log for log in logs) == 1
    other = next(log for log in logs if "Building environment" not in log)
    assert "built by another run meanwhile" in other or "is up to date" in other
    envs = Path(os.environ["SIMML_HOME"]) / "envs"
    assert len([p for p in envs.iterdir() if p.is_dir()]) == 1


@pytest.mark.local_only
@pytest.mark.slow
def test_builder_refreshes_a_changed_job_side_without_rebuilding(index, tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "home")
    definition = pip_env("direct", "simml_testpkg_a")._definition()
    lines: list[str] = []
    first = builder.prepare(definition, lines.append)
    assert not first.cached and any("Creating virtual environment" in line for line in lines)
    env = Path(first.details["path"])
    assert (env / "simml-env.json").is_file() and not list((tmp_path / "home" / "envs").glob(
        ".building-*"))
    pth = next(env.glob(f"lib/python*/site-packages/{PTH_NAME}"))
    pth.write_text("../../../simml-job/0000000000000000\n")    # as if simml changed since
    lines.clear()
    second = builder.prepare(definition, lines.append)
    assert second.cached and second.environment_key == first.environment_key
    assert any("refreshed" in line for line in lines)
    assert not any("Creating virtual environment" in line for line in lines)
    lines.clear()
    assert builder.prepare(definition, lines.append).cached and len(lines) == 1


@pytest.mark.local_only
@pytest.mark.slow
def test_python_pin_met_by_another_interpreter_on_this_machine(ws, index, tmp_path: Path
                                                              ) -> None:
    others = [i for i in _cheap_interpreters()
              if i.version[:2] != tuple(sys.version_info[:2]) and i.version[:2] >= (3, 10)]
    if not others:
        pytest.skip("no other Python >= 3.10 on this machine")
    other = max(others, key=lambda i: i.version)
    pin = f"{other.version[0]}.{other.version[1]}"
    folder = project(tmp_path, """
        import platform
        from simml.core import Run
        Run.get_context().log("python", platform.python_version())
    """)
    run = Experiment(ws, "envs").submit(ScriptRunConfig(str(folder), "job.py", environment=pip_env(
        "pinned", "simml_testpkg_a", python_version=pin)))
    assert run.wait_for_completion()["status"] == "Completed", driver_log(ws, run)
    assert run.get_metrics()["python"].startswith(pin + ".")
    assert f"Using CPython {other.version_text}" in driver_log(ws, run)


@pytest.mark.local_only
@pytest.mark.slow
def test_cancel_during_the_build_stops_it_and_leaves_nothing(ws, index, tmp_path: Path) -> None:
    import time
    folder = project(tmp_path, "print('never runs')\n")
    run = Experiment(ws, "envs").submit(ScriptRunConfig(str(folder), "job.py", environment=pip_env(
        "slow", "simml_testpkg_slow")))
    deadline = time.monotonic() + 60
    while "requirement: simml-testpkg-slow" not in driver_log(ws, run):
        assert time.monotonic() < deadline, driver_log(ws, run)
        time.sleep(0.05)
    started = time.monotonic()
    run.cancel()
    assert run.wait_for_completion(raise_on_error=False)["status"] == "Canceled"
    assert time.monotonic() - started < 10                        # the 20 s download was cut
    assert "the environment build was stopped" in driver_log(ws, run)
    envs = Path(os.environ["SIMML_HOME"]) / "envs"
    assert not [p for p in envs.iterdir() if p.is_dir()]


def test_resolved_spec_maps_conda_packages_and_reads_a_conda_file(tmp_path: Path) -> None:
    env = Environment("conda")
    env.python.conda_dependencies = CondaDependencies.create(
        conda_packages=["conda-forge::numpy=1.26", "pip", "py-xgboost>=2"],
        pip_packages=["azureml-core", "simml_testpkg_a"])
    spec = resolve_spec(env._definition())
    assert spec.conda == ["numpy==1.26.*", "xgboost>=2"]
    assert spec.pip == ["simml-testpkg-a"]
    assert spec.requirements() == ["numpy==1.26.*", "xgboost>=2", "simml-testpkg-a"]

    (tmp_path / "env.yml").write_text("dependencies:\n  - pip:\n    - simml_testpkg_b==1.0\n")
    env.python.conda_dependencies_file = "env.yml"
    assert resolve_spec(env._definition(), source_dir=tmp_path).pip == ["simml-testpkg-b==1.0"]
    with pytest.raises(EnvironmentBuildException, match="was not found"):
        resolve_spec(env._definition(), source_dir=tmp_path / "elsewhere")
