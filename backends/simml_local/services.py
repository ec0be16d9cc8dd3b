"""Web services on the local backend: a scoring server process per service, state in SQLite.

``LocalServices`` is a mixin of ``LocalBackend``. A service named ``<name>`` lives in
``<workspace>/services/<name>/``::

    app/                        the app root (AML_APP_ROOT, the working directory): the inference
                                config's source directory (or the entry script, also as main.py)
    app/azureml-models/<model>/<version>/...   the models, as Azure lays them out
    logs/service.log            the environment build, the server's output, tracebacks
    run/ready.json              written by the server once init() succeeded
    keys.json                   primary and secondary keys (auth_enabled only), read by the server

and one row of the ``services`` table (migration 5): state, port, process (``pid:start time``, so
a reused pid is never mistaken for the service), the deployment it was made from, keys, error.

Deploying: everything that can be refused is checked first (name, models, a requested port is
bound at once, so "port in use" leaves nothing behind); the environment is prepared (the cached
uv environments of ``environments.py``; the interpreter simml runs on when there is none or it is
user-managed); the app is staged in ``services/.staging-*`` while a previous version keeps
serving; then the old process is stopped, the staged folder renamed into place and the server
started detached (``posix_spawn`` in a new session: it outlives the client) with its listening
socket already bound to 127.0.0.1 (file descriptor 3). The row is written last, in one transaction.

State is looked at, not tracked: each ``get`` checks the recorded process (gone: ``failed``, with
the log's tail) and the ready marker (present: ``running``). Deploy, update and delete of one
service are serialised by an ``flock`` on ``services/<name>.lock``.

The runtime follows the rule runs follow (``docker_runtime.choose_runtime``): the environment's
``docker.enabled`` when set explicitly, else the workspace's runtime (``ws.set_runtime``). With
``docker``, the environment becomes an image (``docker_images.EnvironmentImages``: simml's base
image plus the environment's packages and simml's job side, cached) and the server runs in a
container named ``simml-svc-<workspace id>-<name>``: the app folder is bind-mounted at
``/var/azureml-app`` (Azure's path) and the service folder at ``/var/simml``, the container's port
5001 is published on ``127.0.0.1:<port>``, the server writes the same log and ready marker, and
the row records ``container:<id>``; looking asks the engine whether the container still runs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from simml.entities import ServiceDeployment, ServiceInfo, WorkspaceInfo
from simml.exceptions import WebserviceException, WebserviceNotFoundException
from simml.plugins import hookimpl
from simml_local.execution import process_identity
from simml_local.files import upload_tree
from simml_local.store import write_transaction

SERVICES_DIR = "services"
SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LOG_FILE = "logs/service.log"
READY_FILE = "run/ready.json"
KEYS_FILE = "keys.json"
SOCKET_FD = 3
STOP_SECONDS = 5.0
POLL_SECONDS = 0.01
LOG_TAIL_LINES = 40
LIVE_STATES = ("deploying", "running")
SERVERS = {"simml": "simml.job.scoring", "azmlinfsrv": "simml.job.azmlinfsrv"}
CONTAINER_APP = "/var/azureml-app"
CONTAINER_SERVICE = "/var/simml"
CONTAINER_PORT = 5001
LABEL_SERVICE = "simml.service"
LABEL_SERVICE_WORKSPACE = "simml.service-workspace"
LABEL_HOME = "simml.home"
SCRUBBED_VARIABLES = ("AZUREML_RUN_ID", "SIMML_RUN_JOURNAL", "AZUREML_MODEL_DIR",
                      "AZUREML_ENTRY_SCRIPT", "AML_APP_ROOT", "AZUREML_SOURCE_DIRECTORY",
                      "SIMML_SERVICE_FD", "SIMML_SERVICE_KEYS", "SIMML_SERVICE_READY",
                      "SIMML_SERVICE_LOG", "SIMML_SERVICE_HOST", "SIMML_SERVICE_PORT",
                      "SIMML_SERVICE_CWD", "VIRTUAL_ENV", "PYTHONHOME")
"""Variables of the client that must not leak into a service (a job context, another service)."""


def _now() -> float:
    return datetime.now(timezone.utc).timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, timezone.utc)


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a text file, read from its end."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            block, data = 8192, b""
            while end > 0 and data.count(b"\n") <= count:
                start = max(0, end - block)
                handle.seek(start)
                data = handle.read(end - start) + data
                end = start
                block *= 2
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-count:]


def bind_loopback(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1 (``port`` None or 0: a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port or 0))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise WebserviceException(
                f"Error: port {port} is already in use on 127.0.0.1. Choose another port "
                "(LocalWebservice.deploy_configuration(port=...)) or leave it out to get a free "
                "one.") from None
        if exc.errno == errno.EACCES:
            raise WebserviceException(f"Error: no permission to listen on port {port} "
                                      "(ports below 1024 need privileges).") from None
        raise WebserviceException(f"Error: cannot listen on 127.0.0.1:{port}: {exc}") from None
    return sock


class LocalServices:
    """Mixin of ``LocalBackend``: the ``simml_service_*`` hooks."""

    store: Any
    root: Any
    home: Path
    simml_model_get: Any
    simml_model_download: Any

    # --- paths and rows ------------------------------------------------------------------------
    def services_dir(self, workspace: WorkspaceInfo) -> Path:
        return self.root(workspace) / SERVICES_DIR

    def service_dir(self, workspace: WorkspaceInfo, name: str) -> Path:
        if not isinstance(name, str) or not SERVICE_NAME.match(name) or len(name) > 32:
            raise WebserviceException(f"Invalid service name {name!r}.")
        return self.services_dir(workspace) / name

    @contextmanager
    def _svc_lock(self, workspace: WorkspaceInfo, name: str) -> Iterator[None]:
        folder = self.services_dir(workspace)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{name}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    _SVC_COLUMNS = ("name, compute_type, state, port, pid, process, runtime, server, deployment, "
                    "keys, "
                "error, created_time, updated_time, generation")

    def _svc_row(self, workspace: WorkspaceInfo, name: str) -> dict[str, Any] | None:
        row = self.store(workspace).connection().execute(
            f"SELECT {self._SVC_COLUMNS} FROM services WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._svc_as_dict(row)

    def _svc_as_dict(self, row: tuple[Any, ...]) -> dict[str, Any]:
        keys = [c.strip() for c in self._SVC_COLUMNS.split(",")]
        data = dict(zip(keys, row))
        data["deployment"] = json.loads(data["deployment"])
        data["keys"] = json.loads(data["keys"]) if data["keys"] else None
        data["error"] = json.loads(data["error"]) if data["error"] else None
        return data

    def _svc_require(self, workspace: WorkspaceInfo, name: str) -> dict[str, Any]:
        self.service_dir(workspace, name)
        row = self._svc_row(workspace, name)
        if row is None:
            raise WebserviceNotFoundException(
                f"WebserviceNotFound: Webservice with name {name} not found in provided "
                "workspace")
        return row

    def _svc_info(self, workspace: WorkspaceInfo, row: dict[str, Any]) -> ServiceInfo:
        deployment = row["deployment"]
        port = row["port"]
        base = f"http://localhost:{port}" if port else None
        return ServiceInfo(
            name=row["name"], compute_type=row["compute_type"], state=row["state"], port=port,
            scoring_uri=f"{base}/score" if base else None,
            swagger_uri=f"{base}/swagger.json" if base else None,
            created_time=_dt(row["created_time"]), updated_time=_dt(row["updated_time"]),
            models=tuple((str(n), int(v)) for n, v in deployment.get("models", ())),
            auth_enabled=bool(deployment.get("auth_enabled")), server=row["server"],
            runtime=row["runtime"], error=row["error"],
            config=dict(deployment.get("config") or {}),
            inference_config=dict(deployment.get("inference_config") or {}),
            environment=deployment.get("environment"),
            tags=dict(deployment.get("tags") or {}),
            properties=dict(deployment.get("properties") or {}),
            description=deployment.get("description"))

    # --- looking -------------------------------------------------------------------------------
    def _svc_look(self, workspace: WorkspaceInfo, row: dict[str, Any]) -> dict[str, Any]:
        """Refresh a row's state from its process and ready marker (persisted when it changed)."""
        if row["state"] not in LIVE_STATES:
            return row
        folder = self.service_dir(workspace, row["name"])
        alive = self._svc_alive(row)
        if alive is None:     # the Docker engine does not answer: nothing can be said
            return row
        if not alive:
            self._svc_reap(row["pid"])
            was_ready = (folder / READY_FILE).is_file()
            tail = tail_lines(folder / LOG_FILE, LOG_TAIL_LINES)
            if row["state"] == "deploying" and not was_ready:
                message = ("Error: Service has crashed. Did your init method fail? The service "
                           "process exited before init() completed.")
                code = "ServiceStartupFailed"
            else:
                message = "Error: the service process exited (killed or crashed)."
                code = "ServiceProcessExited"
            error = {"code": code, "message": message, "logTail": "\n".join(tail)}
            return self._svc_set_state(workspace, row, "failed", error)
        if row["state"] == "deploying" and (folder / READY_FILE).is_file():
            return self._svc_set_state(workspace, row, "running", None)
        return row

    def _svc_alive(self, row: dict[str, Any]) -> bool | None:
        """Whether the service's process (or container) still runs; None: cannot tell."""
        process = row.get("process") or ""
        if row.get("runtime") == "docker":
            try:
                client = _docker_client()
                container = client.containers.get(process.partition(":")[2])
            except WebserviceException:
                return None
            except Exception:  # noqa: BLE001 - docker.errors.NotFound: removed meanwhile
                return False
            return container.status in ("created", "running", "restarting")
        return bool(process) and process_identity(row["pid"]) == process

    def _svc_set_state(self, workspace: WorkspaceInfo, row: dict[str, Any], state: str,
                       error: dict[str, Any] | None) -> dict[str, Any]:
        con = self.store(workspace).connection()
        now = _now()
        with write_transaction(con):
            con.execute("UPDATE services SET state = ?, error = ?, updated_time = ? WHERE name = ? "
                        "AND generation = ? AND state = ?",
                        (state, json.dumps(error) if error else None, now, row["name"],
                         row["generation"], row["state"]))
        fresh = self._svc_row(workspace, row["name"])
        return fresh if fresh is not None else dict(row, state="deleted")

    # --- hooks ---------------------------------------------------------------------------------
    @hookimpl
    def simml_service_get(self, workspace: WorkspaceInfo, name: str) -> ServiceInfo:
        row = self._svc_look(workspace, self._svc_require(workspace, name))
        return self._svc_info(workspace, row)

    @hookimpl
    def simml_service_list(self, workspace: WorkspaceInfo) -> list[ServiceInfo]:
        rows = self.store(workspace).connection().execute(
            f"SELECT {self._SVC_COLUMNS} FROM services ORDER BY name").fetchall()
        return [self._svc_info(workspace, self._svc_look(workspace, self._svc_as_dict(r)))
                for r in rows]

    @hookimpl
    def simml_service_wait(self, workspace: WorkspaceInfo, name: str, timeout_seconds: float
                           ) -> ServiceInfo:
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        delay = POLL_SECONDS
        while True:
            row = self._svc_look(workspace, self._svc_require(workspace, name))
            if row["state"] != "deploying" or time.monotonic() >= deadline:
                return self._svc_info(workspace, row)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    @hookimpl
    def simml_service_logs(self, workspace: WorkspaceInfo, name: str, num_lines: int) -> str:
        self._svc_require(workspace, name)
        lines = tail_lines(self.service_dir(workspace, name) / LOG_FILE, int(num_lines))
        return "\n".join(lines) + ("\n" if lines else "")

    @hookimpl
    def simml_service_deploy(self, workspace: WorkspaceInfo, deployment: ServiceDeployment,
                             log: Callable[[str], None]) -> ServiceInfo:
        self.service_dir(workspace, deployment.name)
        with self._svc_lock(workspace, deployment.name):
            existing = self._svc_row(workspace, deployment.name)
            if existing is not None and not deployment.overwrite and \
                    deployment.compute_type != "Local":
                raise WebserviceException(
                    f"Error, there is already a service with name {deployment.name} found in "
                    f"workspace {workspace.name}. Use overwrite=True to replace it, or choose "
                    "another name.")
            keys = None
            if deployment.auth_enabled:
                keys = {"primaryKey": deployment.primary_key or _new_key(),
                        "secondaryKey": deployment.secondary_key or _new_key()}
            return self._svc_start(workspace, deployment, log, existing, keys, None)

    @hookimpl
    def simml_service_update(self, workspace: WorkspaceInfo, name: str,
                             deployment: ServiceDeployment, log: Callable[[str], None]
                             ) -> ServiceInfo:
        with self._svc_lock(workspace, name):
            existing = self._svc_require(workspace, name)
            keys = existing["keys"]
            if deployment.auth_enabled:
                keys = {"primaryKey": deployment.primary_key or (keys or {}).get("primaryKey")
                        or _new_key(),
                        "secondaryKey": deployment.secondary_key or
                        (keys or {}).get("secondaryKey") or _new_key()}
            else:
                keys = None
            port = deployment.port if deployment.port is not None else existing["port"]
            return self._svc_start(workspace, replace(deployment, name=name, port=port), log,
                                   existing, keys, existing["created_time"])

    @hookimpl
    def simml_service_delete(self, workspace: WorkspaceInfo, name: str) -> bool:
        with self._svc_lock(workspace, name):
            row = self._svc_require(workspace, name)
            self._svc_stop(row)
            con = self.store(workspace).connection()
            with write_transaction(con):
                con.execute("DELETE FROM services WHERE name = ?", (name,))
            folder = self.service_dir(workspace, name)
            if folder.exists():
                trash = folder.with_name(f".deleted-{name}-{os.getpid()}-{secrets.token_hex(4)}")
                os.rename(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)
        return True

    @hookimpl
    def simml_service_get_keys(self, workspace: WorkspaceInfo, name: str) -> tuple[str, str]:
        row = self._svc_require(workspace, name)
        if not row["keys"]:
            raise WebserviceException(f"Error, auth is not enabled for service {name}: it has "
                                      "no keys.")
        return row["keys"]["primaryKey"], row["keys"]["secondaryKey"]

    @hookimpl
    def simml_service_regen_key(self, workspace: WorkspaceInfo, name: str, key: str,
                                set_key: str | None) -> tuple[str, str]:
        field = {"primary": "primaryKey", "secondary": "secondaryKey"}.get(str(key).lower())
        if field is None:
            raise WebserviceException("Error, key must be either \"Primary\" or \"Secondary\".")
        with self._svc_lock(workspace, name):
            row = self._svc_require(workspace, name)
            if not row["keys"]:
                raise WebserviceException(f"Error, auth is not enabled for service {name}: it "
                                          "has no keys to regenerate.")
            keys = dict(row["keys"], **{field: set_key or _new_key()})
            self._svc_write_keys(self.service_dir(workspace, name), keys)
            con = self.store(workspace).connection()
            with write_transaction(con):
                con.execute("UPDATE services SET keys = ?, updated_time = ? WHERE name = ?",
                            (json.dumps(keys), _now(), name))
        return keys["primaryKey"], keys["secondaryKey"]

    # --- deploying -----------------------------------------------------------------------------
    def _svc_start(self, workspace: WorkspaceInfo, deployment: ServiceDeployment,
                   log: Callable[[str], None], existing: dict[str, Any] | None,
                   keys: dict[str, str] | None, created: float | None) -> ServiceInfo:
        if deployment.server not in SERVERS:
            raise WebserviceException(f"Unknown scoring server {deployment.server!r}; use one "
                                      f"of {', '.join(SERVERS)}.")
        for model_name, version in deployment.models:  # ModelNotFoundException before anything
            self.simml_model_get(workspace, model_name, version)
        name = deployment.name
        folder = self.service_dir(workspace, name)
        services = self.services_dir(workspace)
        runtime = self._svc_runtime(workspace, deployment.environment)
        client = _docker_client() if runtime == "docker" else None  # no engine: refused now
        old_alive = existing is not None and existing["state"] in LIVE_STATES and \
            bool(self._svc_alive(existing))
        sock = None
        if not (old_alive and deployment.port is not None and deployment.port == existing["port"]):
            sock = bind_loopback(deployment.port)   # a busy port: refused, nothing written
        _remove_leftovers(services)
        staging = services / f".staging-{name}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            for sub in ("app", "logs", "run"):
                (staging / sub).mkdir(parents=True)
            log_path = staging / LOG_FILE

            def build_log(line: str) -> None:
                with open(log_path, "a", encoding="utf-8") as handle:
                    handle.write(line.rstrip("\n") + "\n")
                log(line)

            if client is not None:
                python, variables, image = self._svc_image(client, deployment.environment,
                                                           build_log)
            else:
                python, variables = self._svc_environment(deployment.environment, build_log)
                image = None
            upload_tree(staging / "app", deployment.source_items, overwrite=True)
            model_dirs = []
            for model_name, version in deployment.models:
                target = staging / "app" / "azureml-models" / model_name / str(version)
                target.mkdir(parents=True, exist_ok=True)
                self.simml_model_download(workspace, model_name, version, str(target), True)
                model_dirs.append(target)
            (staging / "app" / "azureml-models").mkdir(exist_ok=True)
            if keys:
                self._svc_write_keys(staging, keys)
            if existing is not None:
                self._svc_stop(existing)
            if sock is None:
                sock = bind_loopback(deployment.port)
            port = sock.getsockname()[1]
            # swap the staged folder in (the old one, if any, goes to the trash)
            trash = None
            if folder.exists():
                trash = services / f".deleted-{name}-{os.getpid()}-{secrets.token_hex(4)}"
                os.rename(folder, trash)
            os.rename(staging, folder)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if sock is not None:
                sock.close()
            raise
        try:
            app = folder / "app"
            if len(model_dirs) == 1:
                model_dir = app / "azureml-models" / deployment.models[0][0] / \
                    str(deployment.models[0][1])
            else:
                model_dir = app / "azureml-models"
            env = self._svc_variables(workspace, deployment, folder, model_dir, port,
                                      variables, bool(keys))
            if client is not None:
                sock.close()    # the port was held until now; Docker publishes it
                pid, identity = None, self._svc_launch_container(
                    client, workspace, image, python, deployment, folder, env, variables,
                    port)
            else:
                pid = self._svc_launch(python, deployment, folder, env, sock)
                identity = None
                for _ in range(200):   # /proc may lag the spawn by a moment
                    identity = process_identity(pid)
                    if identity:
                        break
                    time.sleep(0.001)
                identity = identity or f"{pid}:?"
        finally:
            sock.close()
        stored = asdict(deployment)
        stored.pop("source_items", None)
        stored.pop("primary_key", None)
        stored.pop("secondary_key", None)
        stored["port"] = deployment.port
        now = _now()
        con = self.store(workspace).connection()
        with write_transaction(con):
            generation = con.execute("SELECT generation FROM services WHERE name = ?",
                                     (name,)).fetchone()
            con.execute(
                "INSERT OR REPLACE INTO services (name, compute_type, state, port, pid, process, "
                "runtime, server, deployment, keys, error, created_time, updated_time, "
                "generation) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, deployment.compute_type, "deploying", port, pid, identity,
                 runtime, deployment.server, json.dumps(stored),
                 json.dumps(keys) if keys else None, None, created or now, now,
                 (generation[0] + 1) if generation else 1))
        return self._svc_info(workspace, self._svc_require(workspace, name))

    def _svc_runtime(self, workspace: WorkspaceInfo, definition: dict[str, Any] | None) -> str:
        """``process`` or ``docker``: the environment's explicit ``docker.enabled``, else the
        workspace's runtime (the rule of runs, without a run's own ``use_docker``)."""
        docker = (definition or {}).get("docker") or {}
        if docker.get("enabledSetExplicitly"):
            return "docker" if docker.get("enabled") else "process"
        getter = getattr(self, "simml_runtime_get", None)
        if getter is None:
            return "process"
        runtime = str(getter(workspace))
        return runtime if runtime in ("process", "docker") else "process"

    def _svc_image(self, client: Any, definition: dict[str, Any] | None,
                   log: Callable[[str], None]) -> tuple[str, dict[str, str], str]:
        """The interpreter, extra variables and image id of a service in a container."""
        from simml_local.docker_images import EnvironmentImages
        from simml.exceptions import AzureMLException
        definition = definition or {"name": "default-environment",
                                    "python": {"userManagedDependencies": True}}
        try:
            prepared = EnvironmentImages(self.home).prepare(client, definition, log)
        except AzureMLException as exc:
            raise WebserviceException(f"Error: building the service's image failed.\n"
                                      f"{exc.message}", inner_exception=exc) from None
        variables = {str(k): str(v) for k, v in
                     (definition.get("environmentVariables") or {}).items()}
        return (str(prepared.details.get("python") or "python3"), variables,
                str(prepared.details.get("image_id") or prepared.details["image"]))

    def _svc_environment(self, definition: dict[str, Any] | None,
                         log: Callable[[str], None]) -> tuple[str, dict[str, str]]:
        """The interpreter and extra variables a service process runs with."""
        variables: dict[str, str] = {}
        if definition is None:
            log("[environment] no environment given: the interpreter simml runs on "
                f"({sys.executable})")
            return sys.executable, variables
        variables.update({str(k): str(v) for k, v in
                          (definition.get("environmentVariables") or {}).items()})
        python = definition.get("python") or {}
        if python.get("userManagedDependencies") is False:
            from simml_local.environments import EnvironmentBuilder
            from simml.core.environment import EnvironmentBuildException
            try:
                prepared = EnvironmentBuilder(self.home).prepare(definition, log)
            except EnvironmentBuildException as exc:
                raise WebserviceException(
                    f"Error: building the service's environment failed.\n{exc.message}",
                    inner_exception=exc) from None
            return str(prepared.details["python"]), variables
        interpreter = str(python.get("interpreterPath") or "python")
        if os.path.isabs(interpreter):
            # a user-managed environment naming its interpreter (Azure's meaning of
            # interpreter_path): simml's job side comes from the simml installed here
            if not (os.path.isfile(interpreter) and os.access(interpreter, os.X_OK)):
                raise WebserviceException(
                    f"Error: the environment's interpreter_path {interpreter} is not an "
                    "executable file.")
            import simml
            job_side = str(Path(simml.__file__).resolve().parent.parent)
            variables["PYTHONPATH"] = os.pathsep.join(
                p for p in (job_side, variables.get("PYTHONPATH")) if p)
            log(f"[environment] {definition.get('name')}: user-managed, interpreter "
                f"{interpreter}")
            return interpreter, variables
        log(f"[environment] {definition.get('name')}: user-managed, the interpreter simml runs on "
            f"({sys.executable})")
        return sys.executable, variables

    def _svc_variables(self, workspace: WorkspaceInfo, deployment: ServiceDeployment,
                           folder: Path, model_dir: Path, port: int,
                           variables: dict[str, str], auth: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_VARIABLES}
        env.update(variables)
        app = folder / "app"
        env.update({
            "AZUREML_ENTRY_SCRIPT": str(app / deployment.entry_script),
            "AZUREML_MODEL_DIR": str(model_dir),
            "AML_APP_ROOT": str(app),
            "AZUREML_SOURCE_DIRECTORY": str(app),
            "SIMML_SERVICE_FD": str(SOCKET_FD),
            "SIMML_SERVICE_READY": str(folder / READY_FILE),
            "SERVICE_NAME": deployment.name,
            "WORKSPACE_NAME": workspace.name,
            "HOSTNAME": deployment.name,
            "SERVER_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        })
        # Azure reads the worker count from the environment's variables (WORKER_COUNT)
        env["WORKER_COUNT"] = variables.get("WORKER_COUNT") or str(deployment.worker_count)
        if auth:
            env["SIMML_SERVICE_KEYS"] = str(folder / KEYS_FILE)
        return env

    def _svc_launch(self, python: str, deployment: ServiceDeployment, folder: Path,
                    env: dict[str, str], sock: socket.socket) -> int:
        """Start the server as a detached process on the bound socket; return its pid."""
        log_path = folder / LOG_FILE
        # dup2 onto the same number would keep close-on-exec: make sure the numbers differ
        source_fd = os.dup(sock.fileno()) if sock.fileno() == SOCKET_FD else sock.fileno()
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
             0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
            (os.POSIX_SPAWN_DUP2, source_fd, SOCKET_FD),
        ]
        argv = [python, "-m", SERVERS[deployment.server]]
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(f"[service] starting {' '.join(argv)} in {folder / 'app'} "
                         f"(127.0.0.1:{sock.getsockname()[1]})\n")
        # posix_spawn has no working-directory action before Python 3.13: the server changes
        # into SIMML_SERVICE_CWD itself
        env = dict(env, SIMML_SERVICE_CWD=str(folder / "app"))
        try:
            pid = os.posix_spawn(python, argv, env, file_actions=actions, setsid=True)
        except OSError as exc:
            raise WebserviceException(f"Error: cannot start the service with {python}: {exc}"
                                      ) from None
        finally:
            if source_fd != sock.fileno():
                os.close(source_fd)
        self._svc_spawned.add(pid)
        return pid

    def _svc_launch_container(self, client: Any, workspace: WorkspaceInfo, image: str,
                              python: str, deployment: ServiceDeployment, folder: Path,
                              env: dict[str, str], variables: dict[str, str], port: int) -> str:
        """Start the server in a container publishing 127.0.0.1:``port``; return
        ``container:<id>``."""
        from simml_local.docker_runtime import container_user
        app = str(folder / "app")
        inside = {k: v for k, v in env.items() if k.startswith(("AZUREML_", "AML_", "SERVICE_",
                                                                "WORKSPACE_", "WORKER_"))}
        inside.update(_container_paths(env, str(folder)))
        inside.update(variables)        # the environment's own environment_variables
        inside.update({"SIMML_SERVICE_HOST": "0.0.0.0", "SIMML_SERVICE_PORT": str(CONTAINER_PORT),
                       "SIMML_SERVICE_LOG": f"{CONTAINER_SERVICE}/{LOG_FILE}",
                       "SIMML_SERVICE_CWD": CONTAINER_APP, "PYTHONUNBUFFERED": "1",
                       "HOME": "/tmp", "SERVER_PORT": str(CONTAINER_PORT)})
        inside.pop("SIMML_SERVICE_FD", None)
        name = f"simml-svc-{workspace.workspace_id[:8]}-{deployment.name}"
        labels = {LABEL_SERVICE: deployment.name,
                  LABEL_SERVICE_WORKSPACE: workspace.workspace_id,
                  LABEL_HOME: str(self.home)}
        with open(folder / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(f"[service] starting {python} -m {SERVERS[deployment.server]} in "
                         f"container {name} ({image[:19]}), 127.0.0.1:{port} -> "
                         f"{CONTAINER_PORT}\n")
        options = dict(
            command=[python, "-m", SERVERS[deployment.server]], name=name, detach=True,
            user=container_user(), environment=inside, working_dir=CONTAINER_APP,
            volumes={app: {"bind": CONTAINER_APP, "mode": "rw"},
                     str(folder): {"bind": CONTAINER_SERVICE, "mode": "rw"}},
            ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)}, labels=labels, init=True)
        try:
            try:
                container = client.containers.run(image, **options)
            except Exception as exc:  # noqa: BLE001 - a leftover of the same name: replace it
                if getattr(exc, "status_code", None) != 409:
                    raise
                client.containers.get(name).remove(force=True)
                container = client.containers.run(image, **options)
        except Exception as exc:  # noqa: BLE001 - the engine refused (port taken, ...)
            raise WebserviceException(f"Error: the Docker engine could not start the service: "
                                      f"{' '.join(str(exc).split())[:500]}") from None
        return f"container:{container.id}"

    @property
    def _svc_spawned(self) -> set[int]:
        """Service processes this backend object started (and so may reap)."""
        return self.__dict__.setdefault("_spawned_pids", set())

    def _svc_reap(self, pid: int | None) -> None:
        """Collect a service process we started that exited (no zombie left behind)."""
        if pid and pid in self._svc_spawned:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self._svc_spawned.discard(pid)

    def _svc_stop(self, row: dict[str, Any]) -> None:
        """Stop a service's process group (SIGTERM, then SIGKILL) if it is still its process;
        a container is stopped and removed."""
        if row.get("runtime") == "docker":
            container_id = (row.get("process") or "").partition(":")[2]
            try:
                client = _docker_client()
                container = client.containers.get(container_id)
            except WebserviceException:
                raise
            except Exception:  # noqa: BLE001 - already gone
                return
            try:
                container.stop(timeout=3)
            except Exception:  # noqa: BLE001 - exited meanwhile
                pass
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - removed meanwhile
                pass
            return
        pid, identity = row.get("pid"), row.get("process")
        if not pid or not identity or process_identity(pid) != identity:
            self._svc_reap(pid)
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline:
            self._svc_reap(pid)
            if process_identity(pid) != identity:
                break
            time.sleep(0.01)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            while process_identity(pid) == identity:
                self._svc_reap(pid)
                time.sleep(0.01)
        self._svc_reap(pid)

    @staticmethod
    def _svc_write_keys(folder: Path, keys: dict[str, str]) -> None:
        tmp = folder / f".{KEYS_FILE}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(keys, handle)
        os.replace(tmp, folder / KEYS_FILE)


def _docker_client() -> Any:
    """The Docker runtime's engine client, or ``WebserviceException`` saying why there is none."""
    from simml.exceptions import DockerEngineException
    from simml_local.docker_runtime import connect
    try:
        return connect()
    except DockerEngineException as exc:
        raise WebserviceException(f"Error: the service runs in a container (the Docker runtime "
                                  f"is selected) but {exc.message}", inner_exception=exc) from None


def _container_paths(env: dict[str, str], folder: str) -> dict[str, str]:
    """The host paths of a service's variables, as its container sees them."""
    out = {}
    app = os.path.join(folder, "app")
    for key, value in env.items():
        if value.startswith(app):
            out[key] = CONTAINER_APP + value[len(app):]
        elif value.startswith(folder):
            out[key] = CONTAINER_SERVICE + value[len(folder):]
    return out


def _remove_leftovers(services: Path) -> None:
    """Staging and trash folders left by a deployer that died (its pid is gone)."""
    for leftover in list(services.glob(".staging-*")) + list(services.glob(".deleted-*")):
        parts = leftover.name.rsplit("-", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        if pid is not None and pid != os.getpid() and process_identity(pid) is None:
            shutil.rmtree(leftover, ignore_errors=True)


def _new_key() -> str:
    return secrets.token_urlsafe(24)

