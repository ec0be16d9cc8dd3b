"""The Docker runtime of the local backend, against a real engine (``docker`` marker).

Without an engine these tests skip, saying why; with ``CI`` set they fail instead (conftest's
``docker_engine``). The runtime choice and the refusal of bad settings need no engine.

``local_only`` (docs/testing.md): the Docker runtime is the local backend's (Azure runs every job in its
own containers).
"""

from __future__ import annotations

import os
import socket
import stat
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from simml.core import Experiment, ScriptRunConfig
from simml.core.conda_dependencies import CondaDependencies
from simml.core.environment import Environment
from simml.core.runconfig import DockerConfiguration, docker_run_options
from simml.exceptions import (
    ComputeTargetException,
    InvalidValueException,
    RunConfigurationException,
)
from simml_local.docker_runtime import choose_runtime

pytestmark = pytest.mark.local_only

ROOT = Path(__file__).resolve().parent.parent
DOCKER = DockerConfiguration(use_docker=True)


def project(tmp_path: Path, script: str, name: str = "job.py") -> Path:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(textwrap.dedent(script))
    return folder


def statuses(run: Any) -> list[str]:
    return [h["status"] for h in run.get_details()["statusHistory"]]


def driver_log(ws: Any, run: Any) -> str:
    return Path(ws.get_details()["root"], "artifacts", run.id, "azureml-logs",
                "70_driver_log.txt").read_text()


def docker_env(name: str, pip: list[str] | None = None) -> Environment:
    env = Environment(name)
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=pip or [])
    env.docker.enabled = True
    return env


def containers_of(client: Any, run_id: str) -> list[Any]:
    return client.containers.list(all=True, filters={"label": [f"simml.run-id={run_id}"]})


# --- the choice (no engine needed) ----------------------------------------------------------------

def test_runtime_choice_first_match_wins() -> None:
    explicit_off = {"docker": {"enabled": False, "explicit": True},
                    "environment": {"docker": {"enabled": True, "enabledSetExplicitly": True}}}
    assert choose_runtime(explicit_off, "docker", "docker")[0] == "process"
    implicit = {"docker": {"enabled": True, "explicit": False}, "environment": {}}
    assert choose_runtime(implicit, None, None) == ("process", "the workspace's runtime")
    assert choose_runtime(implicit, "docker", "process")[0] == "docker"
    environment = {"environment": {"docker": {"enabled": True, "enabledSetExplicitly": True}}}
    assert choose_runtime(environment, "process", "process")[0] == "docker"
    unset = {"environment": {"docker": {"enabled": False, "enabledSetExplicitly": False}}}
    assert choose_runtime(unset, None, "docker")[0] == "docker"
    assert choose_runtime(unset, "process", "docker")[0] == "process"


def test_estimator_default_use_docker_does_not_choose_docker(ws, tmp_path: Path) -> None:
    from simml.train.sklearn import SKLearn
    folder = project(tmp_path, "print('hi')\n")
    implicit = SKLearn(str(folder), entry_script="job.py")._validated(Experiment(ws, "e"))
    explicit = SKLearn(str(folder), entry_script="job.py", use_docker=True)._validated(
        Experiment(ws, "e"))
    assert choose_runtime(implicit, None, "process")[0] == "process"
    assert choose_runtime(explicit, None, "process")[0] == "docker"


def test_runtime_settings_are_validated(ws, tmp_path: Path) -> None:
    from simml.core.compute import AmlCompute
    assert ws.runtime == "process"
    ws.set_runtime("docker")
    assert ws.runtime == "docker"
    with pytest.raises(InvalidValueException):
        ws.set_runtime("podman")
    assert ws.runtime == "docker"
    with pytest.raises(ComputeTargetException, match="runtime"):
        AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", max_nodes=1,
                                              runtime="vm")
    with pytest.raises(RunConfigurationException, match="not supported"):
        DockerConfiguration(use_docker=True, arguments=["--privileged"])
    with pytest.raises(RunConfigurationException, match="network"):
        DockerConfiguration(use_docker=True, arguments=["--network", "mynet"])
    assert docker_run_options(["--network", "none", "--shm-size=1g"]) == {
        "network": "none", "shm_size": "1g"}
    env = docker_env("bad-args")
    env.docker.arguments = ["--cap-add=SYS_ADMIN"]
    experiment = Experiment(ws, "bad")
    with pytest.raises(RunConfigurationException, match="not supported"):
        experiment.submit(ScriptRunConfig(str(project(tmp_path, "print(1)\n")), "job.py",
                                          environment=env))
    assert list(experiment.get_runs()) == []


def test_cli_workspace_runtime_and_build_base_refusals(ws, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    from click.testing import CliRunner
    from simml.cli import EXIT_USAGE, cli
    runner = CliRunner()
    result = runner.invoke(cli, ["-w", "test-ws", "--json", "workspace", "runtime", "docker"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"workspace": "test-ws", "runtime": "docker"}
    assert ws.runtime == "docker"
    assert runner.invoke(cli, ["-w", "test-ws", "workspace", "runtime", "vm"]).exit_code == \
        EXIT_USAGE
    assert ws.runtime == "docker"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    result = runner.invoke(cli, ["docker", "build-base"])
    assert result.exit_code == 1 and "Docker engine unreachable" in result.output
    assert "dockerd" in result.output


def test_docker_without_an_engine_fails_in_preparing_saying_how_to_start_one(
        ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    run = Experiment(ws, "no-engine").submit(ScriptRunConfig(
        str(project(tmp_path, "print('never')\n")), "job.py", docker_runtime_config=DOCKER))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    message = details["error"]["error"]["message"]
    assert "Docker engine unreachable" in message and "dockerd" in message
    assert "Running" not in statuses(run)


# --- runs in containers --------------------------------------------------------------------------

CONTRACT = ["test_train_iris_on_local_target", "test_crashing_script_fails_with_traceback",
            "test_script_killed_by_a_signal", "test_bad_submissions_create_nothing",
            "test_snapshot_is_taken_at_submit", "test_client_may_exit_and_reattach"]
"""The process runtime's contract tests (tests/test_submit_local.py) that do not look at host
processes; here they run with the workspace's runtime set to docker."""


@pytest.mark.docker
@pytest.mark.parametrize("name", CONTRACT)
def test_contract_on_docker(name: str, ws, tmp_path: Path, capsys, docker_client) -> None:
    import test_submit_local
    ws.set_runtime("docker")
    test = getattr(test_submit_local, name)
    arguments = {"ws": ws, "tmp_path": tmp_path, "capsys": capsys}
    import inspect
    test(**{k: arguments[k] for k in inspect.signature(test).parameters})
    runs = list(Experiment(ws, "sklearn-iris").get_runs()) + [
        r for e in ("crash", "killed", "snap", "detached") for r in Experiment(ws, e).get_runs()]
    for run in runs:
        assert run.get_details()["properties"]["simml.runtime"] == "docker"
        assert "in a container of simml-env:" in driver_log(ws, run)
        assert containers_of(docker_client, run.id) == []  # removed after the run


@pytest.mark.docker
def test_train_iris_in_a_container_and_resubmit_builds_nothing(ws, tmp_path: Path,
                                                               docker_client) -> None:
    import joblib
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train_iris.py").write_text((ROOT / "train_iris.py").read_text())
    env = docker_env("iris-docker", ["joblib"])
    experiment = Experiment(ws, "iris-docker")
    first = experiment.submit(ScriptRunConfig(str(folder), "train_iris.py",
                                              arguments=["--kernel", "rbf"], environment=env))
    assert first.wait_for_completion()["status"] == "Completed"
    assert first.get_metrics()["Kernel type"] == "rbf"
    second = experiment.submit(ScriptRunConfig(str(folder), "train_iris.py", environment=env))
    assert second.wait_for_completion()["status"] == "Completed"
    log = driver_log(ws, second)
    assert "is up to date (cached)" in log and "Building image" not in log
    model = second.register_model("iris-docker", "outputs/model.joblib")
    target = model.download(str(tmp_path / "model"))
    from sklearn.datasets import load_iris
    x, y = load_iris(return_X_y=True)
    assert joblib.load(target).score(x, y) > 0.9  # pickled in the container, loaded here


@pytest.mark.docker
def test_non_root_user_no_network_metrics_still_arrive(ws, tmp_path: Path, docker_client,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIMML_DOCKER_USER", "4321:4321")
    folder = project(tmp_path, """
        import os, socket
        from simml.core.run import Run
        run = Run.get_context()
        try:
            socket.create_connection(("pypi.org", 443), timeout=3)
            reached = "yes"
        except OSError:
            reached = "no"
        run.log("network", reached)
        run.log("uid", os.getuid())
        os.makedirs("outputs", exist_ok=True)
        open("outputs/result.txt", "w").write("ok")
        os.makedirs("logs", exist_ok=True)
        open("logs/extra.log", "w").write("log")
    """)
    config = ScriptRunConfig(str(folder), "job.py", docker_runtime_config=DockerConfiguration(
        use_docker=True, arguments=["--network=none"]))
    run = Experiment(ws, "user").submit(config)
    assert run.wait_for_completion()["status"] == "Completed"
    assert run.get_metrics() == {"network": "no", "uid": 4321}
    assert {"outputs/result.txt", "logs/extra.log"} <= set(run.get_file_names())
    wd = Path(ws.get_details()["root"], "runs", run.id, "wd")
    for path in (wd / "outputs" / "result.txt", wd / "logs" / "extra.log"):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (4321, 4321), path
    assert "network none" in driver_log(ws, run)


@pytest.mark.docker
def test_memory_limit_is_the_node_size_and_oom_fails_the_run(ws, tmp_path: Path,
                                                             docker_client) -> None:
    from simml.core.compute import AmlCompute, ComputeTarget
    from simml.core.compute.cluster import INSTANT
    target = ComputeTarget.create(ws, "tiny", AmlCompute.provisioning_configuration(
        vm_size="SIMML_TINY", max_nodes=1, _timings=INSTANT, runtime="docker"))
    target.wait_for_completion()
    folder = project(tmp_path, """
        limit = open("/sys/fs/cgroup/memory/memory.limit_in_bytes").read().strip() \\
            if __import__("os").path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes") \\
            else open("/sys/fs/cgroup/memory.max").read().strip()
        print("limit", limit, flush=True)
        block = b"x" * (600 * 2**20)
        print("still alive")
    """)
    run = Experiment(ws, "oom").submit(ScriptRunConfig(str(folder), "job.py",
                                                       compute_target=target))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    error = details["error"]["error"]
    assert error["code"] == "OutOfMemory", error
    assert "ran out of memory" in error["message"] and "0.25 GB" in error["message"]
    assert "137" not in error["message"].splitlines()[0]
    log = driver_log(ws, run)
    assert f"limit {int(0.25 * 2**30)}" in log and "still alive" not in log
    assert "runtime: docker (compute target tiny's runtime)" in log


@pytest.mark.docker
def test_data_references_mount_read_only_and_download_a_copy(ws, tmp_path: Path,
                                                             docker_client) -> None:
    source = tmp_path / "upload" / "data"
    source.mkdir(parents=True)
    (source / "a.txt").write_text("original")
    store = ws.get_default_datastore()
    store.upload(src_dir=str(source), target_path="data", overwrite=True, show_progress=False)
    folder = project(tmp_path, """
        import os, sys
        from simml.core.run import Run
        run = Run.get_context()
        for flag in ("--mounted", "--copied"):
            path = sys.argv[sys.argv.index(flag) + 1]
            text = open(os.path.join(path, "a.txt")).read()
            try:
                open(os.path.join(path, "a.txt"), "w").write("changed")
                outcome = "written"
            except OSError as exc:
                outcome = f"refused {exc.errno}"
            run.log(flag.strip("-"), f"{text} {outcome}")
        run.log("variable", os.environ["AZUREML_DATAREFERENCE_" + sys.argv[-1]])
    """)
    mounted = store.path("data").as_mount()
    copied = store.path("data").as_download()
    copied.data_reference_name = "copied_data"
    run = Experiment(ws, "refs").submit(ScriptRunConfig(
        str(folder), "job.py", arguments=["--mounted", mounted, "--copied", copied,
                                          mounted.data_reference_name],
        docker_runtime_config=DOCKER))
    assert run.wait_for_completion()["status"] == "Completed"
    metrics = run.get_metrics()
    assert metrics["mounted"] == "original refused 30"  # EROFS: a read-only bind mount
    assert metrics["copied"] == "original written"
    assert metrics["variable"].startswith("/mnt/simml/data/")
    store_file = Path(ws.get_details()["root"], "datastores", "workspaceblobstore", "data",
                      "a.txt")
    assert store_file.read_text() == "original"  # neither reference changed the datastore


@pytest.mark.docker
def test_logs_stream_live_and_cancel_removes_the_container(ws, tmp_path: Path,
                                                           docker_client) -> None:
    folder = project(tmp_path, """
        import time
        print("first line", flush=True)
        time.sleep(600)
    """)
    run = Experiment(ws, "cancel").submit(ScriptRunConfig(str(folder), "job.py",
                                                          docker_runtime_config=DOCKER))
    deadline = time.time() + 120
    while "first line" not in driver_log(ws, run) and time.time() < deadline:
        time.sleep(0.1)
    assert "first line" in driver_log(ws, run)
    assert run.get_status() == "Running"  # the line arrived while the job runs
    assert len(containers_of(docker_client, run.id)) == 1
    run.cancel()
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Canceled"
    assert containers_of(docker_client, run.id) == []


@pytest.mark.docker
def test_base_dockerfile_and_azure_base_images(ws, tmp_path: Path, docker_client) -> None:
    from simml_local.docker_images import default_base_tag
    folder = project(tmp_path, """
        import os
        from simml.core.run import Run
        marker = "/opt/marker.txt"
        Run.get_context().log("marker", open(marker).read().strip() if os.path.exists(marker)
                              else "none")
    """)
    env = docker_env("from-dockerfile")
    env.docker.base_image = None
    env.docker.base_dockerfile = (f"FROM {default_base_tag()}\n"
                                  "RUN echo from-the-dockerfile > /opt/marker.txt\n")
    azure = docker_env("azure-image")  # Azure's default base image name
    experiment = Experiment(ws, "bases")
    first = experiment.submit(ScriptRunConfig(str(folder), "job.py", environment=env))
    second = experiment.submit(ScriptRunConfig(str(folder), "job.py", environment=azure))
    assert first.wait_for_completion()["status"] == "Completed"
    assert second.wait_for_completion()["status"] == "Completed"
    assert first.get_metrics()["marker"] == "from-the-dockerfile"
    assert second.get_metrics()["marker"] == "none"
    assert f"is one of Azure's" in driver_log(ws, second)
    assert default_base_tag() in driver_log(ws, second)


# --- bad input and faults ------------------------------------------------------------------------

@pytest.mark.docker
def test_missing_base_image_that_cannot_be_pulled_fails_preparing(ws, tmp_path: Path,
                                                                  docker_client) -> None:
    env = docker_env("missing-base")
    env.docker.base_image = "simml-test-missing/no-such-image:1"
    run = Experiment(ws, "missing").submit(ScriptRunConfig(
        str(project(tmp_path, "print('never')\n")), "job.py", environment=env))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    message = details["error"]["error"]["message"]
    assert "could not be pulled" in message and "simml docker build-base" in message
    assert "Running" not in statuses(run)


@pytest.mark.docker
def test_a_package_that_does_not_exist_fails_the_build_and_leaves_nothing(
        ws, tmp_path: Path, docker_client) -> None:
    before = {c.id for c in docker_client.containers.list(all=True)}
    env = docker_env("no-such-package", ["simml-no-such-package-xyz==1.0"])
    run = Experiment(ws, "nopkg").submit(ScriptRunConfig(
        str(project(tmp_path, "print('never')\n")), "job.py", environment=env))
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    message = details["error"]["error"]["message"]
    assert "EnvironmentBuildException" in message
    assert "simml-no-such-package-xyz" in message and "No matching distribution" in message
    assert "Running" not in statuses(run)
    assert {c.id for c in docker_client.containers.list(all=True)} == before  # forcerm
    tags = [t for i in docker_client.images.list(filters={"label": "simml.kind=environment"})
            for t in i.tags]
    log = driver_log(ws, run)
    assert not any(t in log for t in tags)  # no image was tagged for the failed spec


@pytest.mark.docker
def test_environment_changed_between_submit_and_run(ws, tmp_path: Path, docker_client) -> None:
    folder = project(tmp_path, """
        import six
        from simml.core.run import Run
        Run.get_context().log("six", six.__version__)
    """)
    env = docker_env("changing", ["six==1.16.0"])
    experiment = Experiment(ws, "changing")
    first = experiment.submit(ScriptRunConfig(str(folder), "job.py", environment=env))
    env.python.conda_dependencies.add_pip_package("six==1.17.0")  # after submit, before it ran
    registered = env.register(ws)
    second = experiment.submit(ScriptRunConfig(str(folder), "job.py", environment=registered))
    assert first.wait_for_completion()["status"] == "Completed"
    assert second.wait_for_completion()["status"] == "Completed"
    assert first.get_metrics()["six"] == "1.16.0"  # the run keeps the spec it was submitted with
    assert second.get_metrics()["six"] == "1.17.0"
    tag = [line.split("Image ")[1].split()[0] for line in driver_log(ws, first).splitlines()
           if "[preparing] Image simml-env:" in line]
    tag2 = [line.split("Image ")[1].split()[0] for line in driver_log(ws, second).splitlines()
            if "[preparing] Image simml-env:" in line]
    assert tag and tag2 and tag[0] != tag2[0]
    third = experiment.submit(ScriptRunConfig(str(folder), "job.py", environment=env))
    assert third.wait_for_completion()["status"] == "Completed"
    assert "Building image" not in driver_log(ws, third)  # the new spec's image is reused


class SocketProxy:
    """A unix-socket proxy in front of the Docker engine; ``close()`` cuts every connection, as
    an engine that went away would."""

    def __init__(self, path: Path, target: str) -> None:
        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(64)
        self.server.settimeout(0.1)
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except (socket.timeout, OSError):
                continue
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    @staticmethod
    def pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        self.server.close()
        self.path.unlink()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


@pytest.mark.docker
def test_engine_lost_mid_run_then_reconciled(ws, tmp_path: Path, docker_client,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    engine = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert engine.startswith("unix://")
    target = engine.removeprefix("unix://")
    assert stat.S_ISSOCK(os.stat(target).st_mode)
    sock = tmp_path / "engine.sock"
    proxy = SocketProxy(sock, target)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock}")  # the runner inherits it
    folder = project(tmp_path, """
        import time
        print("started", flush=True)
        time.sleep(600)
    """)
    experiment = Experiment(ws, "lost")
    run = experiment.submit(ScriptRunConfig(str(folder), "job.py", docker_runtime_config=DOCKER))
    deadline = time.time() + 120
    while "started" not in driver_log(ws, run) and time.time() < deadline:
        time.sleep(0.1)
    assert "started" in driver_log(ws, run)
    proxy.close()  # the engine is gone, as far as the runner can tell
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert "Docker engine unreachable" in details["error"]["error"]["message"]
    orphan = containers_of(docker_client, run.id)
    assert len(orphan) == 1 and orphan[0].status == "running"  # the real engine still runs it
    proxy = SocketProxy(sock, target)  # the engine answers again
    try:
        later = experiment.submit(ScriptRunConfig(str(project(tmp_path, "print('ok')\n")),
                                                  "job.py", docker_runtime_config=DOCKER))
        assert later.wait_for_completion()["status"] == "Completed"
        assert containers_of(docker_client, run.id) == []  # reconciled by its labels
        assert f"removed the orphaned container of run {run.id}" in driver_log(ws, later)
    finally:
        proxy.close()
