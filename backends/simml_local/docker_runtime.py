"""The local backend's Docker runtime: a run's job in a container (Azure's Running on a node).

``choose_runtime`` decides, first match wins and never by probing for an engine: the run's
explicit ``use_docker`` (``definition["docker"]["explicit"]``; an estimator's implicit default
does not count), then ``environment.docker.enabled`` when set explicitly, then the compute
target's ``runtime``, then the workspace's (``ws.set_runtime``; default ``process``).

``execute_in_container`` runs one job (the shared part of ``simml_stage_execute`` has copied the
snapshot into ``<run>/wd`` and resolved the data references):

* the run folder is bind-mounted at ``/mnt/simml/run`` and ``wd/`` is the working directory, so
  ``./outputs`` and ``./logs`` land in the run folder; the journal (``SIMML_RUN_JOURNAL``) is in
  it too, so metrics arrive with the network off;
* the container runs as the calling user (``uid:gid`` of the runner, or ``SIMML_DOCKER_USER``), so
  what the job writes belongs to that user (the runner hands the run folder to it when it differs);
* mounted data references are bind-mounted read-only at ``/mnt/simml/data/<name>``, downloaded
  ones are the private copies, read-write;
* the node's cores and memory become ``nano_cpus``, ``mem_limit`` and ``memswap_limit`` (no swap);
  a job killed for exceeding its memory (``State.OOMKilled``) fails with ``OutOfMemory``;
* the job's output streams live into ``user_logs/std_log.txt`` and the driver log;
* ``cancel()`` and ``max_run_duration_seconds`` stop it (``stop(timeout=3)``); the container is
  always removed afterwards;
* containers carry labels (``simml.run-id``, ``simml.workspace-id``, ``simml.home``,
  ``simml.runner``): before every container start the runner removes the containers of its
  workspace whose run has ended or whose runner is gone (``reconcile``);
* an engine that stops answering while the job runs fails the run with ``Docker engine
  unreachable`` (its container is removed by the next reconciliation once the engine answers).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from simml.entities import Allocation, ExecutionResult, PreparedEnvironment, StageContext
from simml.exceptions import DockerEngineException, InvalidValueException

if TYPE_CHECKING:
    from simml_local.execution import LocalExecution, ResolvedReferences

RUNTIMES = ("process", "docker")
CONTAINER_RUN_DIR = "/mnt/simml/run"
CONTAINER_DATA_DIR = "/mnt/simml/data"
LABEL_RUN = "simml.run-id"
LABEL_WORKSPACE = "simml.workspace-id"
LABEL_HOME = "simml.home"
LABEL_RUNNER = "simml.runner"
ENGINE_GRACE_SECONDS = 3.0
"""How long an engine that stopped answering gets before the run fails."""
POLL_SECONDS = 0.05
STOP_TIMEOUT = 3
ENGINE_HINT = (
    "Start one (as root): `dockerd --storage-driver=overlay2 &` after `apt-get install "
    "docker.io` (this repository's `bash .ci/docker-setup.sh engine` does both; docs/docker.md), "
    "or point DOCKER_HOST at a running engine; or run on processes: ws.set_runtime('process') / "
    "use_docker=False.")

_ACTIVE: set[str] = set()
"""Run ids whose container this process is driving right now (never reconciled away)."""
_ACTIVE_LOCK = threading.Lock()
_CLIENTS: dict[tuple[str, float], Any] = {}


# --- the choice ----------------------------------------------------------------------------------

def check_runtime(value: Any, what: str = "runtime") -> str:
    if value not in RUNTIMES:
        raise InvalidValueException(
            f"Invalid {what} {value!r}: expected {' or '.join(repr(r) for r in RUNTIMES)}.")
    return str(value)


def choose_runtime(definition: dict[str, Any], compute_runtime: str | None,
                   workspace_runtime: str | None) -> tuple[str, str]:
    """``(runtime, why)`` for a run definition; see the module doc."""
    docker = definition.get("docker") or {}
    if docker.get("explicit"):
        enabled = bool(docker.get("enabled"))
        return ("docker" if enabled else "process"), f"use_docker={enabled} on the run"
    environment = (definition.get("environment") or {}).get("docker") or {}
    if environment.get("enabledSetExplicitly"):
        enabled = bool(environment.get("enabled"))
        return (("docker" if enabled else "process"),
                f"environment.docker.enabled={enabled}")
    if compute_runtime:
        return check_runtime(compute_runtime), \
            f"compute target {definition.get('target')}'s runtime"
    return check_runtime(workspace_runtime or "process"), "the workspace's runtime"


# --- the engine ----------------------------------------------------------------------------------

def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(timeout: float = 60) -> Any:
    """A Docker SDK client that has answered a ping.

    :raises DockerEngineException: no SDK, or no engine answers (the message says how to start
        one).
    """
    try:
        import docker
    except ImportError as exc:
        raise DockerEngineException(
            "The Docker runtime needs the Docker SDK for Python: pip install 'simml[docker]'.",
            inner_exception=exc) from exc
    key = (engine_address(), timeout)
    client = _CLIENTS.get(key)
    try:
        if client is None:  # one client per engine and process (it negotiates the API version)
            client = docker.from_env(timeout=timeout)
        client.ping()
        _CLIENTS[key] = client
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine here
        _CLIENTS.pop(key, None)
        reason = " ".join(str(exc).split())[:300]
        raise DockerEngineException(
            f"Docker engine unreachable at {engine_address()} ({reason}). {ENGINE_HINT}",
            inner_exception=exc) from exc
    return client


def reconcile(client: Any, local: "LocalExecution", workspace: Any,
              log: Callable[[str], None] | None = None) -> list[str]:
    """Remove this workspace's containers whose run has ended or whose runner is gone; returns
    the run ids whose containers were removed."""
    from simml_local.execution import TERMINAL, process_identity
    removed = []
    containers = client.containers.list(all=True, filters={
        "label": [f"{LABEL_WORKSPACE}={workspace.workspace_id}"]})
    store = local.store(workspace)
    for container in containers:
        labels = container.labels or {}
        run_id = labels.get(LABEL_RUN, "")
        with _ACTIVE_LOCK:
            if run_id in _ACTIVE:
                continue
        runner = labels.get(LABEL_RUNNER, "")
        try:
            status = store.get_run(run_id).status
        except Exception:  # noqa: BLE001 - a run that does not exist (any more) is over
            status = "Failed"
        runner_alive = bool(runner) and process_identity(int(runner.split(":")[0])) == runner
        if status not in TERMINAL and runner_alive:
            continue  # another live runner's job
        try:
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - gone meanwhile
            continue
        removed.append(run_id)
        if log is not None:
            log(f"[running] removed the orphaned container of run {run_id} ({status}, runner "
                f"{'alive' if runner_alive else 'gone'})")
    return removed


# --- a job in a container ------------------------------------------------------------------------

def container_user() -> str:
    return os.environ.get("SIMML_DOCKER_USER") or f"{os.getuid()}:{os.getgid()}"


def _hand_over(run_dir: Path, user: str) -> None:
    """Give the run folder to the container's user when it is not the runner's (root runners)."""
    uid, _, gid = user.partition(":")
    try:
        uid_n, gid_n = int(uid), int(gid or uid)
    except ValueError:
        return  # a user name: the image's business
    if (uid_n, gid_n) == (os.getuid(), os.getgid()) or os.getuid() != 0:
        return
    for folder, dirs, files in os.walk(run_dir):
        os.lchown(folder, uid_n, gid_n)
        for name in (*dirs, *files):
            os.lchown(os.path.join(folder, name), uid_n, gid_n)


def container_references(references: "ResolvedReferences") -> tuple[dict[str, Any], Any]:
    """Bind mounts for the data references, and the same references with container paths."""
    from simml_local.execution import ResolvedReferences
    mounts: dict[str, Any] = {}
    inside = ResolvedReferences()
    mounted = {str(guard.path) for guard in references.mounts}
    for name, host_path in references.paths.items():
        target = f"{CONTAINER_DATA_DIR}/{name}"
        if os.path.isfile(host_path):
            target = f"{target}/{os.path.basename(host_path)}"
        mounts[os.path.realpath(host_path)] = {
            "bind": target, "mode": "ro" if host_path in mounted else "rw"}
        inside.paths[name] = target
    return mounts, inside


def docker_options(definition: dict[str, Any]) -> dict[str, str]:
    """``network`` / ``shm_size`` from the environment's docker section, then the run's."""
    from simml.core.runconfig import docker_run_options
    environment = (definition.get("environment") or {}).get("docker") or {}
    options = docker_run_options(environment.get("arguments"), environment.get("shmSize"))
    run = definition.get("docker") or {}
    options.update(docker_run_options(run.get("arguments"), run.get("shmSize")))
    return options


def execute_in_container(local: "LocalExecution", context: StageContext,
                         environment: PreparedEnvironment, allocation: Allocation,
                         log: Callable[[str], None], references: "ResolvedReferences"
                         ) -> ExecutionResult:
    from simml_local.execution import process_identity
    workspace, run_id = context.workspace, context.run_id
    try:
        client = connect()
    except DockerEngineException as exc:
        log(f"[running] {exc.message}")
        return ExecutionResult(exit_code=None, error={"code": "DockerEngineUnreachable",
                                                      "message": exc.message})
    with _ACTIVE_LOCK:
        _ACTIVE.add(run_id)
    # orphans are other runs' containers: removed while this one starts
    reconciler = threading.Thread(target=_reconcile_quietly, args=(client, local, workspace, log),
                                  daemon=True)
    reconciler.start()
    run_dir = local.run_dir(workspace, run_id)
    journal = run_dir / "journal.jsonl"
    journal.touch()
    (run_dir / "files").mkdir(exist_ok=True)
    user = container_user()
    _hand_over(run_dir, user)
    data_mounts, inside = container_references(references)
    volumes = {str(run_dir): {"bind": CONTAINER_RUN_DIR, "mode": "rw"}, **data_mounts}
    arguments = [inside.argument(a) for a in context.definition.get("arguments", [])]
    command = [environment.details.get("python", "python3"), context.definition["script"],
               *arguments]
    job_env = local.job_environment(context, Path(CONTAINER_RUN_DIR) / "journal.jsonl")
    env = {k: v for k, v in job_env.items() if k.startswith(("AZUREML_", "SIMML_RUN_",
                                                             "SIMML_JOB_"))}
    env.update({"PYTHONUNBUFFERED": "1", "HOME": "/tmp"})
    env.update(environment.details.get("environment_variables") or {})
    env.update({str(k): str(v) for k, v in
                (context.definition.get("environmentVariables") or {}).items()})
    env.update(inside.environment)
    options = docker_options(context.definition)
    cores = max(1, min(allocation.v_cpus, os.cpu_count() or 1))
    memory = int(allocation.memory_gb * 2**30)
    labels = {LABEL_RUN: run_id, LABEL_WORKSPACE: workspace.workspace_id,
              LABEL_HOME: str(getattr(local, "home", "")),
              LABEL_RUNNER: process_identity(os.getpid()) or ""}
    network = options.get("network", "bridge")
    log(f"[running] on {allocation.node_id} ({allocation.v_cpus} cores, "
        f"{allocation.memory_gb:g} GB) in a container of {environment.details.get('image')} "
        f"(user {user}, network {network}): {' '.join(command[1:])}")
    log(f"[running] container limits: {cores} cores (nano_cpus), memory {memory / 2**30:g} GB, "
        "no swap")
    std_log = local.open_std_log(workspace, run_id)
    container = None
    try:
        try:
            container = _create(
                client, f"simml-{run_id}",
                environment.details.get("image_id") or environment.details["image"], command,
                working_dir=f"{CONTAINER_RUN_DIR}/wd", user=user,
                environment=env, volumes=volumes, labels=labels, network_mode=network,
                mem_limit=memory, memswap_limit=memory, nano_cpus=cores * 10**9,
                shm_size=options.get("shm_size"), stdin_open=False, tty=False,
                init=True)
            container.start()
            reconciler.join()
        except Exception as exc:  # noqa: BLE001 - the engine refused or vanished
            return _engine_failure(log, exc, "starting the container")
        return _follow(local, context, container, client, journal, run_dir, std_log, log,
                       references, allocation)
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(run_id)
        if container is not None:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - the engine is gone: reconciliation removes it
                pass


def _create(client: Any, name: str, image: str, command: list[str], **options: Any) -> Any:
    """``containers.create``; a leftover container of the same name (a runner killed between
    create and remove) is removed first."""
    import docker.errors
    try:
        return client.containers.create(image, command, name=name, **options)
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409 Conflict: the name is taken
            raise
    client.containers.get(name).remove(force=True)
    return client.containers.create(image, command, name=name, **options)


def _reconcile_quietly(client: Any, local: "LocalExecution", workspace: Any,
                       log: Callable[[str], None]) -> None:
    try:
        reconcile(client, local, workspace, log)
    except Exception as exc:  # noqa: BLE001 - reconciliation must never fail a run
        log(f"[running] could not reconcile orphaned containers: {exc}")


def _engine_failure(log: Callable[[str], None], exc: BaseException, during: str
                    ) -> ExecutionResult:
    reason = " ".join(str(exc).split())[:300]
    message = (f"Docker engine unreachable at {engine_address()} while {during} ({reason}). "
               "The container is removed once the engine answers again. " + ENGINE_HINT)
    log(f"[running] {message}")
    return ExecutionResult(exit_code=None, error={"code": "DockerEngineUnreachable",
                                                  "message": message})


def _follow(local: "LocalExecution", context: StageContext, container: Any, client: Any,
            journal: Path, run_dir: Path, std_log: Path, log: Callable[[str], None],
            references: "ResolvedReferences", allocation: Allocation) -> ExecutionResult:
    from simml_local.execution import JobWatch, job_outcome
    run_id = context.run_id
    tail: list[str] = []
    stream_error: list[BaseException] = []

    def pump() -> None:
        pending = b""
        try:
            with open(std_log, "ab") as user_log:
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    user_log.write(chunk)
                    user_log.flush()
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for raw in lines:
                        line = raw.decode("utf-8", "replace").rstrip("\r")
                        log(line)
                        tail.append(line)
                        del tail[:-50]
                if pending:
                    line = pending.decode("utf-8", "replace")
                    log(line)
                    tail.append(line)
        except Exception as exc:  # noqa: BLE001 - the engine went away mid-stream
            stream_error.append(exc)

    reader_thread = threading.Thread(target=pump, daemon=True, name=f"logs-{run_id}")
    reader_thread.start()
    watch = JobWatch(local, context, journal, run_dir, log, "container")
    while reader_thread.is_alive():
        reader_thread.join(POLL_SECONDS)
        if watch.tick():
            try:
                container.stop(timeout=STOP_TIMEOUT)
            except Exception:  # noqa: BLE001 - noticed below
                pass
    state = _final_state(container)
    watch.ingest()
    canceled, timed_out, max_seconds = watch.canceled, watch.timed_out, watch.max_seconds
    if state is None:
        cause = stream_error[0] if stream_error else RuntimeError("no answer")
        return references.check_mounts(log, _engine_failure(
            log, cause, "the job ran"))
    code = int(state.get("ExitCode", -1))
    out_of_memory = bool(state.get("OOMKilled"))
    signal_number = code - 128 if code > 128 and not out_of_memory else None
    how = ("its container went over that limit and was stopped by the kernel's out-of-memory "
           "killer (State.OOMKilled)") if out_of_memory else ""
    return references.check_mounts(log, job_outcome(
        code, signal_number, canceled=canceled, timed_out=timed_out, max_seconds=max_seconds,
        out_of_memory=how, allocation=allocation, tail=tail))


def _final_state(container: Any) -> dict[str, Any] | None:
    """The ended container's ``State``; None when the engine stops answering for longer than
    ``ENGINE_GRACE_SECONDS``."""
    deadline = time.monotonic() + ENGINE_GRACE_SECONDS
    while True:
        try:
            container.reload()
            state = container.attrs.get("State") or {}
            if state.get("Status") in ("exited", "dead"):
                return state
            # the log stream ended but the container still runs: the stream was cut
            if time.monotonic() > deadline:
                return None
        except Exception:  # noqa: BLE001 - connection refused, reset, timeout
            if time.monotonic() > deadline:
                return None
        time.sleep(0.1)
