"""``Webservice``: Azure's deployed-service API (``azureml.core.webservice.Webservice``).

``Webservice(ws, name)`` looks a service up and returns the subclass of its compute type
(``LocalWebservice`` or ``AciWebservice``), as Azure's does; ``Webservice.list(ws)`` lists them.
Everything goes through the workspace's backend (``simml_service_*`` hooks): services and their
state live in the workspace and outlive the process that deployed them.

The scoring server: simml's own (``simml.job.scoring``, the default), or
``azureml-inference-server-http`` when ``SIMML_INFERENCE_SERVER=azmlinfsrv`` is set at deploy time
(the package must be in the service's environment: ``pip install 'simml[inference]'`` for the
interpreter simml runs on). See ``docs/deployment.md``.
"""

from __future__ import annotations

import http.client
import os
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from simml.entities import ServiceDeployment, ServiceInfo
from simml.exceptions import WebserviceException, WebserviceNotFoundException

if TYPE_CHECKING:
    from simml.core.workspace import Workspace

SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
INVALID_NAME = ("Error, provided service name is invalid. It must only consist of lowercase "
                "letters, numbers, or dashes, start with a letter, end with a letter or number, "
                "and be between 3 and 32 characters long.")
SERVER_VARIABLE = "SIMML_INFERENCE_SERVER"
SERVERS = ("simml", "azmlinfsrv")


def validate_service_name(name: Any) -> str:
    """Azure's rule: ``^[a-z]([-a-z0-9]*[a-z0-9])?$``, 3-32 characters."""
    if not isinstance(name, str) or not 3 <= len(name) <= 32 or not SERVICE_NAME.match(name):
        raise WebserviceException(INVALID_NAME + f" Provided: {name!r}")
    return name


def inference_server() -> str:
    """The scoring server chosen by ``SIMML_INFERENCE_SERVER`` (default ``simml``)."""
    value = (os.environ.get(SERVER_VARIABLE) or "simml").strip().lower()
    aliases = {"azureml-inference-server-http": "azmlinfsrv", "azureml": "azmlinfsrv"}
    value = aliases.get(value, value)
    if value not in SERVERS:
        raise WebserviceException(f"{SERVER_VARIABLE}={value!r} is not a scoring server; use "
                                  f"one of {', '.join(SERVERS)}.")
    return value


class Webservice:
    """A deployed web service. ``Webservice(workspace, name)`` returns the right subclass."""

    _webservice_type: str | None = None
    _compute_type: str | None = None

    def __new__(cls, workspace: "Workspace | None" = None, name: str | None = None,
                *args: Any, **kwargs: Any) -> "Webservice":
        if cls is Webservice and workspace is not None and name is not None and \
                kwargs.get("_info") is None:
            info = workspace._backend.service_get(workspace._info, name)
            subclass = _subclass_for(info.compute_type)
            instance = super().__new__(subclass)
            instance._prefetched = info   # type: ignore[attr-defined]
            return instance
        return super().__new__(cls)

    def __init__(self, workspace: "Workspace", name: str, *, _info: ServiceInfo | None = None
                 ) -> None:
        info = _info or self.__dict__.pop("_prefetched", None)
        if info is None:
            info = workspace._backend.service_get(workspace._info, name)
        if self._compute_type is not None and info.compute_type != self._compute_type:
            raise WebserviceException(
                f"WebserviceNotFound: there is no {self._compute_type} service named {name} in "
                f"this workspace (the service {name} is a {info.compute_type} service; use "
                "Webservice(ws, name) to get it).")
        self.workspace = workspace
        self._connection: http.client.HTTPConnection | None = None
        self._set(info)

    # --- state ---------------------------------------------------------------------------------
    def _set(self, info: ServiceInfo) -> None:
        self._info = info
        self.name = info.name
        self.compute_type = info.compute_type
        self.scoring_uri = info.scoring_uri
        self.swagger_uri = info.swagger_uri
        self.created_time: datetime = info.created_time
        self.updated_time: datetime = info.updated_time
        self.tags = dict(info.tags)
        self.properties = dict(info.properties)
        self.description = info.description
        self.auth_enabled = info.auth_enabled
        self.token_auth_enabled = False
        self.error = info.error
        self.image_id = None
        self.state = self._state_name(info.state)

    def _state_name(self, state: str) -> str:
        return state

    @property
    def port(self) -> int | None:
        return self._info.port

    @property
    def models(self) -> list[Any]:
        """The deployed model versions (``Model`` objects)."""
        from simml.core.model import Model
        return [Model(self.workspace, name=n, version=v) for n, v in self._info.models]

    @property
    def inference_server(self) -> str:
        """simml addition: ``simml`` or ``azmlinfsrv``, the server the service runs on."""
        return self._info.server

    def _refresh(self) -> ServiceInfo:
        info = self.workspace._backend.service_get(self.workspace._info, self.name)
        self._set(info)
        return info

    def update_deployment_state(self) -> None:
        """Refresh the state (and everything else) from the workspace."""
        self._refresh()

    # --- deployment ------------------------------------------------------------------------------
    _DEFAULT_TIMEOUT = 60.0

    def wait_for_deployment(self, show_output: bool = False,
                            timeout_sec: float | None = None) -> None:
        """Wait until the service answers its health check (``init()`` done), or has failed.

        :raises WebserviceException: the service failed (``init()`` raised, the process exited) or
            is still not healthy after the timeout; the message holds the log's tail.
        """
        timeout = float(timeout_sec) if timeout_sec is not None else self._DEFAULT_TIMEOUT
        if show_output:
            print(f"{self._waiting_text()}", end="", flush=True)
        started = time.monotonic()
        info = self.workspace._backend.service_wait(self.workspace._info, self.name, timeout)
        self._set(info)
        if show_output:
            print(f" ({time.monotonic() - started:.1f} s)", flush=True)
        if info.state == "running":
            if show_output:
                print(self._ready_text())
            return
        if info.state == "deploying":
            tail = self.get_logs(40)
            raise WebserviceException(
                f"Error: the service {self.name} is not healthy after {timeout:g} s (init() is "
                f"still running?). Call wait_for_deployment() again to keep waiting, or look at "
                f"get_logs().\n{tail}")
        raise WebserviceException(self._failure_text(info))

    def _waiting_text(self) -> str:
        return f"Waiting for service {self.name} to become healthy"

    def _ready_text(self) -> str:
        return f"Service {self.name} is running at {self.scoring_uri}"

    def _failure_text(self, info: ServiceInfo) -> str:
        error = info.error or {}
        return (f"{error.get('message', 'Error: the service failed.')}\n"
                f"Service state: {self._state_name(info.state)}. Last lines of the log "
                f"(get_logs() has more):\n{error.get('logTail', '')}")

    # --- scoring ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: bytes | None,
                 headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request on a kept-open connection (reopened once if the service dropped it)."""
        port = self._info.port
        if port is None:
            raise WebserviceException("Error attempting to call webservice, scoring_uri "
                                      "unavailable. This could be due to a failed deployment.")
        for attempt in (1, 2):
            if self._connection is None or self._connection.port != port:
                self._close()
                self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            try:
                self._connection.request(method, path, body=body, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self._close()
                return response.status, dict(response.getheaders()), data
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self._close()
                if attempt == 2:
                    raise WebserviceException(
                        f"Error: the service {self.name} did not answer at "
                        f"{self.scoring_uri}: {exc}. Look at its state and get_logs().") from None
        raise AssertionError("unreachable")

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _score(self, input_data: Any, key: str | None) -> tuple[int, dict[str, str], bytes]:
        if isinstance(input_data, str):
            body = input_data.encode("utf-8")
        elif isinstance(input_data, (bytes, bytearray)):
            body = bytes(input_data)
        else:
            raise WebserviceException(
                "Error: input_data must be the request body as a JSON string (for example "
                "json.dumps({'data': rows})), not a " + type(input_data).__name__ + ".")
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return self._request("POST", "/score", body, headers)

    def run(self, input_data: Any) -> Any:
        raise NotImplementedError

    # --- logs, keys ------------------------------------------------------------------------------
    def get_logs(self, num_lines: int = 5000, **kwargs: Any) -> str:
        """The last ``num_lines`` lines of the service's log (server output, tracebacks)."""
        if isinstance(num_lines, bool) or not isinstance(num_lines, int) or num_lines < 0:
            raise WebserviceException(f"num_lines must be a non-negative integer, not "
                                      f"{num_lines!r}.")
        return self.workspace._backend.service_logs(self.workspace._info, self.name, num_lines)

    def get_keys(self) -> tuple[str, str]:
        raise NotImplementedError

    def regen_key(self, key: str, set_key: str | None = None) -> None:
        raise NotImplementedError

    def get_token(self) -> Any:
        raise NotImplementedError(f"{self._compute_type} webservices do not support Token "
                                  "Authentication.")

    # --- changing --------------------------------------------------------------------------------
    def _redeploy(self, deployment: ServiceDeployment, show_output: bool = False) -> None:
        self._close()
        info = self.workspace._backend.service_update(
            self.workspace._info, self.name, deployment, print if show_output else _quiet)
        self._set(info)

    def _current_deployment(self) -> ServiceDeployment:
        """The stored deployment, with the app's files collected again from the client's disk."""
        from simml.core.model import InferenceConfig
        info = self._info
        inference = InferenceConfig._from_serialized(info.inference_config, info.environment)
        return inference._deployment(
            name=info.name, compute_type=info.compute_type, models=info.models,
            port=info.config.get("port"), auth_enabled=info.auth_enabled,
            config=info.config, tags=info.tags, properties=info.properties,
            description=info.description, server=info.server,
            worker_count=int(info.config.get("worker_count") or 1))

    def delete(self) -> None:
        """Stop the service and remove it from the workspace."""
        self._close()
        self.workspace._backend.service_delete(self.workspace._info, self.name)
        self.state = self._state_name("deleted")

    # --- (de)serialising, listing ----------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        return {
            "name": self.name, "tags": self.tags, "properties": self.properties,
            "state": self.state, "createdTime": self.created_time.isoformat(),
            "updatedTime": self.updated_time.isoformat(), "error": self.error,
            "computeType": self.compute_type, "workspaceName": self.workspace.name,
            "imageId": self.image_id, "scoringUri": self.scoring_uri,
            "swaggerUri": self.swagger_uri, "port": self.port,
            "description": self.description, "authEnabled": self.auth_enabled,
            "models": [f"{n}:{v}" for n, v in self._info.models],
            "inferenceServer": self._info.server,
        }

    @staticmethod
    def list(workspace: "Workspace", compute_type: str | None = None,
             image_name: str | None = None, image_id: str | None = None,
             model_name: str | None = None, model_id: str | None = None,
             tags: Any = None, properties: Any = None, image_digest: str | None = None
             ) -> list["Webservice"]:
        """The workspace's services, optionally filtered (``compute_type`` ``'Local'`` /
        ``'ACI'``, a model name or id ``'name:version'``, tags and properties as Azure's
        ``['key']`` / ``[['key', 'value']]`` lists)."""
        found = []
        for info in workspace._backend.service_list(workspace._info):
            if compute_type is not None and info.compute_type.lower() != compute_type.lower():
                continue
            if model_name is not None and model_name not in [n for n, _ in info.models]:
                continue
            if model_id is not None and model_id not in [f"{n}:{v}" for n, v in info.models]:
                continue
            if not _matches(info.tags, tags) or not _matches(info.properties, properties):
                continue
            found.append(_subclass_for(info.compute_type)(workspace, info.name, _info=info))
        return found

    @staticmethod
    def check_for_existing_webservice(workspace: "Workspace", name: str,
                                      overwrite: bool = False, **kwargs: Any) -> None:
        """Raise when a service named ``name`` exists and ``overwrite`` is False."""
        if overwrite:
            return
        try:
            workspace._backend.service_get(workspace._info, name)
        except WebserviceNotFoundException:
            return
        raise WebserviceException(f"Error, there is already a service with name {name} found "
                                  f"in workspace {workspace.name}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(workspace={self.workspace!r}, name={self.name}, "
                f"image_id={self.image_id}, compute_type={self.compute_type}, "
                f"state={self.state}, scoring_uri={self.scoring_uri}, tags={self.tags}, "
                f"properties={self.properties}, created_by=None)")

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:
            pass


def _quiet(line: str) -> None:
    pass


def _matches(values: dict[str, str], filters: Any) -> bool:
    for item in filters or []:
        if isinstance(item, str):
            key, _, value = item.partition("=")
            wanted = value if "=" in item else None
        else:
            key, wanted = item[0], (item[1] if len(item) > 1 else None)
        if key not in values or (wanted is not None and values[key] != wanted):
            return False
    return True


def _subclass_for(compute_type: str) -> Callable[..., Webservice]:
    from simml.core.webservice.aci import AciWebservice
    from simml.core.webservice.local import LocalWebservice
    types: dict[str, Any] = {"Local": LocalWebservice, "ACI": AciWebservice}
    if compute_type not in types:
        raise WebserviceException(f"Unsupported compute type {compute_type!r}.")
    return types[compute_type]
