"""``AciWebservice`` (``azureml.core.webservice.AciWebservice``), simulated on this machine.

The deployment configuration is validated as Azure validates it and kept with the service; the
service itself is the same local scoring-server process as ``LocalWebservice``'s, reported with
Azure's cloud states (``Transitioning``, ``Healthy``, ``Failed``; ``Deleting`` after ``delete()``)
and with key authentication when ``auth_enabled=True``: ``get_keys()``, ``regen_key()``, and
``run()`` sending ``Authorization: Bearer <primary key>``. ``cpu_cores`` and ``memory_gb`` are
recorded, not enforced; SSL, VNets, customer-managed keys and App Insights are validated and
recorded only.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from simml.core.webservice.webservice import Webservice
from simml.exceptions import WebserviceException

if TYPE_CHECKING:
    from simml.core.workspace import Workspace
    from simml.entities import ServiceInfo

CLOUD_STATES = {"deploying": "Transitioning", "running": "Healthy", "failed": "Failed",
                "deleted": "Deleting"}


class AciServiceDeploymentConfiguration:
    """What ``AciWebservice.deploy_configuration`` returns."""

    _webservice_type = "ACI"

    def __init__(self, cpu_cores: float | None = None, memory_gb: float | None = None,
                 tags: dict[str, str] | None = None, properties: dict[str, str] | None = None,
                 description: str | None = None, location: str | None = None,
                 auth_enabled: bool | None = None, ssl_enabled: bool | None = None,
                 enable_app_insights: bool | None = None, ssl_cert_pem_file: str | None = None,
                 ssl_key_pem_file: str | None = None, ssl_cname: str | None = None,
                 dns_name_label: str | None = None, primary_key: str | None = None,
                 secondary_key: str | None = None, collect_model_data: bool | None = None,
                 cmk_vault_base_url: str | None = None, cmk_key_name: str | None = None,
                 cmk_key_version: str | None = None, vnet_name: str | None = None,
                 subnet_name: str | None = None) -> None:
        self.cpu_cores = 0.1 if cpu_cores is None else cpu_cores
        self.memory_gb = 0.5 if memory_gb is None else memory_gb
        self.tags = tags
        self.properties = properties
        self.description = description
        self.location = location
        self.auth_enabled = bool(auth_enabled) if auth_enabled is not None else False
        self.ssl_enabled = bool(ssl_enabled) if ssl_enabled is not None else False
        self.enable_app_insights = bool(enable_app_insights)
        self.ssl_cert_pem_file = ssl_cert_pem_file
        self.ssl_key_pem_file = ssl_key_pem_file
        self.ssl_cname = ssl_cname
        self.dns_name_label = dns_name_label
        self.primary_key = primary_key
        self.secondary_key = secondary_key
        self.collect_model_data = collect_model_data
        self.cmk_vault_base_url = cmk_vault_base_url
        self.cmk_key_name = cmk_key_name
        self.cmk_key_version = cmk_key_version
        self.vnet_name = vnet_name
        self.subnet_name = subnet_name

    def validate_configuration(self) -> None:
        for label, value in (("cpu_cores", self.cpu_cores), ("memory_gb", self.memory_gb)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise WebserviceException(f"Invalid configuration, {label} must be positive.")
        if self.ssl_enabled:
            if not (self.ssl_cert_pem_file and self.ssl_key_pem_file and self.ssl_cname):
                raise WebserviceException("SSL is enabled, you must provide a SSL certificate, "
                                          "key, and cname.")
            for path in (self.ssl_cert_pem_file, self.ssl_key_pem_file):
                if not os.path.exists(path):
                    raise WebserviceException(f"Error, unable to find SSL file {path}")
        cmk = (self.cmk_vault_base_url, self.cmk_key_name, self.cmk_key_version)
        if any(cmk) and not all(cmk):
            raise WebserviceException("customer managed key vault_base_url, key_name and "
                                      "key_version must all have values or all are empty/null")
        if bool(self.vnet_name) != bool(self.subnet_name):
            raise WebserviceException("vnet_name and subnet_name must all have values or all "
                                      "are empty/null")
        for label, mapping in (("tags", self.tags), ("properties", self.properties)):
            if mapping is not None and not isinstance(mapping, dict):
                raise WebserviceException(f"Invalid configuration, {label} must be a dict.")
        for label, key in (("primary_key", self.primary_key),
                           ("secondary_key", self.secondary_key)):
            if key is not None and (not isinstance(key, str) or not key.strip()
                                    or any(c.isspace() for c in key)):
                raise WebserviceException(f"Invalid configuration, {label} must be a non-empty "
                                          "string without spaces.")

    def _serialize(self) -> dict[str, Any]:
        return {"cpu_cores": self.cpu_cores, "memory_gb": self.memory_gb,
                "location": self.location, "ssl_enabled": self.ssl_enabled,
                "enable_app_insights": self.enable_app_insights,
                "dns_name_label": self.dns_name_label,
                "collect_model_data": self.collect_model_data, "vnet_name": self.vnet_name,
                "subnet_name": self.subnet_name}


class AciWebservice(Webservice):
    """A simulated Azure Container Instances web service."""

    _webservice_type = "ACI"
    _compute_type = "ACI"
    _DEFAULT_TIMEOUT = 1800.0    # Azure's ACI default (30 min); a local start takes seconds

    @staticmethod
    def deploy_configuration(cpu_cores: float | None = None, memory_gb: float | None = None,
                             tags: dict[str, str] | None = None,
                             properties: dict[str, str] | None = None,
                             description: str | None = None, location: str | None = None,
                             auth_enabled: bool | None = None, ssl_enabled: bool | None = None,
                             enable_app_insights: bool | None = None,
                             ssl_cert_pem_file: str | None = None,
                             ssl_key_pem_file: str | None = None, ssl_cname: str | None = None,
                             dns_name_label: str | None = None, primary_key: str | None = None,
                             secondary_key: str | None = None,
                             collect_model_data: bool | None = None,
                             cmk_vault_base_url: str | None = None,
                             cmk_key_name: str | None = None,
                             cmk_key_version: str | None = None, vnet_name: str | None = None,
                             subnet_name: str | None = None
                             ) -> AciServiceDeploymentConfiguration:
        config = AciServiceDeploymentConfiguration(
            cpu_cores, memory_gb, tags, properties, description, location, auth_enabled,
            ssl_enabled, enable_app_insights, ssl_cert_pem_file, ssl_key_pem_file, ssl_cname,
            dns_name_label, primary_key, secondary_key, collect_model_data, cmk_vault_base_url,
            cmk_key_name, cmk_key_version, vnet_name, subnet_name)
        config.validate_configuration()
        return config

    def _state_name(self, state: str) -> str:
        return CLOUD_STATES.get(state, state)

    def _waiting_text(self) -> str:
        return ("Tip: you can try get_logs(): https://aka.ms/debugimage#dockerlog or local "
                "deployment: https://aka.ms/debugimage#debug-locally to debug if deployment "
                "takes longer than 10 minutes.\nRunning")

    def _ready_text(self) -> str:
        return "ACI service creation operation finished, operation \"Succeeded\""

    def _failure_text(self, info: "ServiceInfo") -> str:
        error = dict(info.error or {})
        tail = error.pop("logTail", "")
        return ("Service deployment polling reached non-successful terminal state, current "
                f"service state: {self._state_name(info.state)}\n"
                "More information can be found using '.get_logs()'\n"
                f"Error:\n{json.dumps(error, indent=2)}\nLast lines of the log:\n{tail}")

    def run(self, input_data: Any) -> Any:
        """POST ``input_data`` (a JSON string) to the scoring URI (with the primary key when auth
        is enabled); return the decoded JSON answer.

        :raises WebserviceException: a non-200 answer (Azure's "Received bad response from
            service" message with the code, headers and content).
        """
        key = self._keys()[0] if self.auth_enabled else None
        status, headers, body = self._score(input_data, key)
        if status == 401 and self.auth_enabled:     # keys may have been regenerated meanwhile
            self._refresh()
            status, headers, body = self._score(input_data, self._keys()[0])
        if status != 200:
            raise WebserviceException(
                "Received bad response from service. More information can be found by calling "
                "`.get_logs()` on the webservice object.\n"
                f"Response Code: {status}\nHeaders: {headers}\n"
                f"Content: {body!r}", status_code=status)
        return json.loads(body)

    def _keys(self) -> tuple[str, str]:
        return self.workspace._backend.service_get_keys(self.workspace._info, self.name)

    def get_keys(self) -> tuple[str, str]:
        """``(primary_key, secondary_key)``.

        :raises WebserviceException: auth is not enabled for this service."""
        return self._keys()

    def regen_key(self, key: str, set_key: str | None = None) -> None:
        """Regenerate the ``'Primary'`` or ``'Secondary'`` key (or set it to ``set_key``); the
        service refuses the old key at once."""
        if key not in ("Primary", "Secondary"):
            raise WebserviceException("Error, key must be either \"Primary\" or \"Secondary\".")
        self.workspace._backend.service_regen_key(self.workspace._info, self.name, key, set_key)

    def get_token(self) -> Any:
        raise NotImplementedError("ACI webservices do not support Token Authentication.")

    def update(self, image: Any = None, tags: dict[str, str] | None = None,
               properties: dict[str, str] | None = None, description: str | None = None,
               auth_enabled: bool | None = None, ssl_enabled: bool | None = None,
               ssl_cert_pem_file: str | None = None, ssl_key_pem_file: str | None = None,
               ssl_cname: str | None = None, enable_app_insights: bool | None = None,
               models: list[Any] | None = None, inference_config: Any = None,
               **kwargs: Any) -> None:
        """Change tags, properties, description, auth, models or the inference config; the
        service is redeployed (the environment is a cache hit unless it changed)."""
        from simml.core.model import InferenceConfig, _deployed_models
        if image is not None:
            raise WebserviceException("Error, image is not supported: images are an Azure cloud "
                                      "concept; give inference_config instead.")
        if inference_config is not None and not isinstance(inference_config, InferenceConfig):
            raise WebserviceException("Error, inference_config must be an InferenceConfig.")
        for label, mapping in (("tags", tags), ("properties", properties)):
            if mapping is not None and not isinstance(mapping, dict):
                raise WebserviceException(f"Error, {label} must be a dict.")
        current = self._current_deployment()
        if inference_config is not None:
            current = inference_config._deployment(
                name=current.name, compute_type=current.compute_type, models=current.models,
                port=current.port, auth_enabled=current.auth_enabled, config=current.config,
                tags=current.tags, properties=current.properties,
                description=current.description, server=current.server,
                worker_count=current.worker_count)
        changes: dict[str, Any] = {}
        if tags is not None:
            changes["tags"] = {str(k): str(v) for k, v in tags.items()}
        if properties is not None:
            changes["properties"] = dict(current.properties,
                                         **{str(k): str(v) for k, v in properties.items()})
        if description is not None:
            changes["description"] = description
        if auth_enabled is not None:
            changes["auth_enabled"] = bool(auth_enabled)
        if models is not None:
            changes["models"] = _deployed_models(self.workspace, models)
        config = dict(current.config)
        for label, value in (("ssl_enabled", ssl_enabled),
                             ("enable_app_insights", enable_app_insights)):
            if value is not None:
                config[label] = bool(value)
        changes["config"] = config
        self._redeploy(replace(current, **changes))

    @staticmethod
    def list(workspace: "Workspace", **kwargs: Any) -> list[Webservice]:  # type: ignore[override]
        return Webservice.list(workspace, compute_type="ACI", **kwargs)
