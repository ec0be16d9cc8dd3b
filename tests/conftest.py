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
def ws(request: pytest.FixtureRequest):
    """The workspace a test works in: a fresh local one, or, for the contract suite on another
    backend (``tests/_contract.py``), the shared workspace config.json names."""
    from _contract import backend
    if backend() == "local":
        return request.getfixturevalue("simml_workspace")
    return _contract_workspace()


_CONTRACT_WORKSPACE: list = []


def _contract_workspace():
    """The contract suite's workspace on a remote backend, opened once per session."""
    if not _CONTRACT_WORKSPACE:
        from _contract import CONFIG_ENV
        from simml.core import Workspace
        _CONTRACT_WORKSPACE.append(Workspace.from_config(path=os.environ[CONFIG_ENV]))
    return _CONTRACT_WORKSPACE[0]


@pytest.fixture
def contract_backend() -> str:
    """The backend the contract tests run against (``local`` unless ``SIMML_CONTRACT_BACKEND``)."""
    from _contract import backend
    return backend()


@pytest.fixture
def contract_config(ws, tmp_path: Path) -> Path:
    """A folder whose ``.azureml/config.json`` names the contract workspace, so a process (an
    offline script, the CLI) started there opens it: the local one, or the remote backend's
    config.json as given."""
    import json
    from _contract import CONFIG_ENV, backend
    folder = tmp_path / "configured"
    (folder / ".azureml").mkdir(parents=True, exist_ok=True)
    if backend() == "local":
        config = {"subscription_id": ws.subscription_id, "resource_group": ws.resource_group,
                  "workspace_name": ws.name}
    else:
        config = json.loads(Path(os.environ[CONFIG_ENV]).read_text())
    (folder / ".azureml" / "config.json").write_text(json.dumps(config))
    return folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On another backend only ``contract`` tests run; the emulator's listed gaps are skipped
    with their reason (``tests/_contract.py``)."""
    from _contract import backend, skip_reason
    if backend() == "local":
        return
    for item in items:
        if item.get_closest_marker("contract") is None or \
                item.get_closest_marker("local_only") is not None:
            item.add_marker(pytest.mark.skip(reason=f"not a contract test (backend {backend()})"))
            continue
        reason = skip_reason(item.nodeid)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python process that imports this checkout."""
    env = dict(os.environ)
    env.update(extra)
    return env


PYTHON = sys.executable


# --- the Docker runtime's tests ------------------------------------------------------------------

@pytest.fixture(scope="session")
def docker_engine():
    """A Docker SDK client of a running engine that has simml's base image. Skips with the reason
    when there is none, except under CI (the ``CI`` variable), where that is a failure."""
    reason = None
    try:
        import docker
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure: no engine here
        reason = (f"no Docker engine answers ({' '.join(str(exc).split())[:200]}); start one: "
                  "docs/docker.md (`bash .ci/docker-setup.sh`)")
    else:
        from simml_local.docker_images import default_base_tag
        try:
            client.images.get(default_base_tag())
        except docker.errors.ImageNotFound:
            reason = (f"the Docker engine has no {default_base_tag()}: build it with "
                      "`simml docker build-base`")
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the Docker tests must run, but {reason}")
        pytest.skip(reason)
    return client


@pytest.fixture
def docker_client(docker_engine, simml_home: Path):
    """``docker_engine`` for one test; the containers of the test's SIMML_HOME are removed at
    teardown (a failed test may leave one running)."""
    yield docker_engine
    for container in docker_engine.containers.list(
            all=True, filters={"label": [f"simml.home={simml_home}"]}):
        try:
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass


# --- the emulator's tests (`simml serve` and the real azureml-core client) -----------------------

@pytest.fixture(scope="session")
def azureml_venv() -> Path:
    """The real client's venv (``_emulator_server.azureml_venv``): reused or built once with uv."""
    from _emulator_server import azureml_venv as build
    return build()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory):
    """One `simml serve` process (and its simulated cluster) shared by every emulator test."""
    from _emulator_server import Emulator
    server = Emulator(tmp_path_factory.mktemp("emulator"))
    server.start()
    yield server
    server.stop()
