"""``LocalWebservice`` (``azureml.core.webservice.LocalWebservice``): a service on this machine.

Azure's runs a Docker container built through the cloud; simml's is a scoring-server process
bound to 127.0.0.1 in the inference config's environment, started in about a second when the
environment is cached. The API and states are Azure's: ``deploying``, ``running``, ``failed``,
``deleted`` (plus ``unknown``), ``run()`` raising ``'Error: Scoring was unsuccessful.'`` on a
non-200 answer, ``reload()`` for code changes without rebuilding the environment, ``get_keys()``
and friends raising ``NotImplementedError``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from simml.core.webservice.webservice import Webservice
from simml.exceptions import WebserviceException

if TYPE_CHECKING:
    from simml.core.workspace import Workspace
    from simml.entities import ServiceInfo


class LocalWebserviceDeploymentConfiguration:
    """What ``LocalWebservice.deploy_configuration`` returns."""

    _webservice_type = "Local"

    def __init__(self, port: int | None = None) -> None:
        self.port = port

    def validate_configuration(self) -> None:
        if self.port is not None and (isinstance(self.port, bool) or
                                      not isinstance(self.port, int) or
                                      not 1 <= self.port <= 65535):
            raise WebserviceException("Invalid configuration, port must be an integer in range "
                                      "[1, 65535]")

    def _serialize(self) -> dict[str, Any]:
        return {"port": self.port}


class LocalWebservice(Webservice):
    """A web service on this machine."""

    _webservice_type = "Local"
    _compute_type = "Local"

    STATE_DELETED = "deleted"
    STATE_DEPLOYING = "deploying"
    STATE_FAILED = "failed"
    STATE_RUNNING = "running"
    STATE_UNKNOWN = "unknown"

    def __init__(self, workspace: "Workspace", name: str, must_exist: bool = True, *,
                 _info: "ServiceInfo | None" = None) -> None:
        super().__init__(workspace, name, _info=_info)

    @staticmethod
    def deploy_configuration(port: int | None = None) -> LocalWebserviceDeploymentConfiguration:
        """A local deployment on ``port`` of 127.0.0.1 (a free one when None)."""
        config = LocalWebserviceDeploymentConfiguration(port)
        config.validate_configuration()
        return config

    def _ready_text(self) -> str:
        return f"Local webservice is running at {self._base_uri()}"

    def _waiting_text(self) -> str:
        return f"Checking health of local webservice {self.name}"

    def _base_uri(self) -> str:
        return f"http://localhost:{self.port}"

    def _failure_text(self, info: "ServiceInfo") -> str:
        error = info.error or {}
        headline = ("Error: Container has crashed. Did your init method fail?"
                    if error.get("code") == "ServiceStartupFailed"
                    else error.get("message", "Error: the service failed."))
        return (f"{headline}\nService {info.name} is {info.state}. Last lines of its log "
                f"(get_logs() has more):\n{error.get('logTail', '')}")

    def _in_state(self, method: str, states: tuple[str, ...]) -> None:
        if self.state not in states:
            raise WebserviceException(f"Cannot call {method}() when service is {self.state}.")

    def run(self, input_data: Any) -> Any:
        """POST ``input_data`` (a JSON string) to ``/score``; return the decoded JSON answer.

        :raises WebserviceException: the service answered with a status other than 200 (the
            message has the status and body; the traceback of ``run()`` is in ``get_logs()``), or
            it is not running.
        """
        self._in_state("run", (self.STATE_DEPLOYING, self.STATE_RUNNING))
        if self.state == self.STATE_DEPLOYING:
            self.wait_for_deployment()
        try:
            status, headers, body = self._score(input_data, None)
        except WebserviceException:
            self._refresh()           # no answer: say "failed" when the service is gone
            self._in_state("run", (self.STATE_RUNNING,))
            raise
        if status != 200:
            raise WebserviceException(
                "Error: Scoring was unsuccessful.\n"
                f"Response Code: {status}\nContent: {body.decode('utf-8', 'replace')}\n"
                "More information can be found by calling .get_logs() on the webservice object.",
                status_code=status)
        return json.loads(body)

    def reload(self, wait: bool = False) -> None:
        """Restart the service with fresh copies of the entry script and source directory (the
        environment is not rebuilt: use ``update`` for dependency changes)."""
        self._in_state("reload", (self.STATE_DEPLOYING, self.STATE_RUNNING, self.STATE_FAILED))
        self._redeploy(self._current_deployment())
        if wait:
            self.wait_for_deployment()

    def update(self, models: list[Any] | None = None, image_config: Any = None,
               deployment_config: LocalWebserviceDeploymentConfiguration | None = None,
               wait: bool = False, inference_config: Any = None) -> None:
        """Redeploy with other models, inference config or port (the environment is prepared
        again: a cache hit unless it changed)."""
        from simml.core.model import InferenceConfig, _deployed_models
        self._in_state("update", (self.STATE_DEPLOYING, self.STATE_RUNNING, self.STATE_FAILED))
        if image_config is not None:
            raise WebserviceException("Error, image_config is not supported: images are an "
                                      "Azure cloud concept; give inference_config instead.")
        if deployment_config is not None and not isinstance(
                deployment_config, LocalWebserviceDeploymentConfiguration):
            raise WebserviceException("Error, provided deployment configuration must be of type "
                                      "LocalWebserviceDeploymentConfiguration in order to update "
                                      "a local service.")
        if inference_config is not None and not isinstance(inference_config, InferenceConfig):
            raise WebserviceException("Error, inference_config must be an InferenceConfig.")
        if deployment_config is not None:
            deployment_config.validate_configuration()
        current = self._current_deployment()
        if inference_config is not None:
            current = inference_config._deployment(
                name=current.name, compute_type=current.compute_type, models=current.models,
                port=current.port, auth_enabled=False, config=current.config, tags=current.tags,
                properties=current.properties, description=current.description,
                server=current.server, worker_count=current.worker_count)
        changes: dict[str, Any] = {}
        if models is not None:
            changes["models"] = _deployed_models(self.workspace, models)
        if deployment_config is not None:
            changes["port"] = deployment_config.port
            changes["config"] = dict(current.config, **deployment_config._serialize())
        from dataclasses import replace
        self._redeploy(replace(current, **changes))
        if wait:
            self.wait_for_deployment()

    def get_keys(self) -> tuple[str, str]:
        raise NotImplementedError("Local web services do not support auth keys.")

    def regen_key(self, key: str, set_key: str | None = None) -> None:
        raise NotImplementedError("Local web services do not support auth keys.")

    def get_token(self) -> Any:
        raise NotImplementedError("Local web services do not support Token Authentication.")

    @staticmethod
    def list(workspace: "Workspace", model_name: str | None = None,  # type: ignore[override]
             model_id: str | None = None, all: bool | None = None) -> list[Webservice]:
        return Webservice.list(workspace, compute_type="Local", model_name=model_name,
                               model_id=model_id)
