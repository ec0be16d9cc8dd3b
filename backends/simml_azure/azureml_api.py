"""Every call the Azure backend makes into the Azure ML SDK v1 (``azureml-core``), in one module.

Azure ML SDK v1 reached end of support on 2026-06-30. Keeping every azureml import and call here
(and nowhere else in ``simml_azure``) means a plug-in for SDK v2 (``azure-ai-ml``) replaces this
module and keeps the rest: ``plugin.py`` (the hooks) and ``store.py`` (the run-history store)
only call ``AzureMLWorkspace``'s methods, which take and return simml's entities.

Nothing here is imported at module import time: each function imports what it uses, so
importing ``simml_azure`` (or ``simml``) never imports azureml. The SDK's classes are used through
their public API where it exists and through its REST clients (``azureml._restclient``) where the
public API adds side effects simml must not have (``Run.complete`` uploading ``./outputs`` itself,
``Run.fail`` guessing an error code) or hides what simml needs (a metric's logged type).

Azure's errors become simml's typed errors with Azure's message kept (``translate``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterator

from simml.exceptions import (
    AuthenticationException,
    AzureMLException,
    ComputeTargetException,
    ConfigurationException,
    ModelNotFoundException,
    ModelPathNotFoundException,
    NotFoundException,
    UserErrorException,
    WebserviceException,
    WorkspaceException,
)

if TYPE_CHECKING:
    from simml.entities import (
        ComputeInfo,
        ComputeNode,
        ComputeStatus,
        DatastoreFile,
        DatastoreInfo,
        EnvironmentInfo,
        ExperimentInfo,
        MetricSeries,
        ModelInfo,
        RunCreate,
        RunInfo,
        WorkspaceInfo,
        WorkspaceRef,
    )

SDK_DISTRIBUTIONS = ("azureml-core", "azureml-train-core")
"""What the ``azure`` extra installs."""
DEFAULT_SECRET_ENV = "AZURE_CLIENT_SECRET"
UX_KIND = {"azureml.v1.scalar": "scalar", "azureml.v1.list": "list", "azureml.v1.table": "row",
           "azureml.v1.image": "image", "azureml.v2.image": "image"}
"""A metric's logged type as Azure records it, in simml's store kinds. ``log_row`` and
``log_table`` are both ``azureml.v1.table`` on Azure: read back as rows (one row folds to scalars,
as Azure's ``get_metrics`` does). ``log_image`` sends ``azureml.v2.image`` (older SDKs
``azureml.v1.image``): its value is the image's run-file reference."""


def missing_sdk() -> str | None:
    """The first distribution of the ``azure`` extra that is not installed, else None (read from
    the installed metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, distribution
    for name in SDK_DISTRIBUTIONS:
        try:
            distribution(name)
        except PackageNotFoundError:
            return name
    return None


# --- errors ------------------------------------------------------------------------------------

def _status_of(exc: BaseException) -> int | None:
    """The HTTP status of a failed Azure call, wherever the SDK put it."""
    for holder in (exc, getattr(exc, "response", None), getattr(exc, "inner_exception", None),
                   getattr(getattr(exc, "inner_exception", None), "response", None)):
        status = getattr(holder, "status_code", None)
        if isinstance(status, int):
            return status
    found = re.search(r'"status_code":\s*(\d{3})', str(exc))
    if found:
        return int(found.group(1))
    found = re.search(r"Code: (\d{3})", str(exc))
    return int(found.group(1)) if found else None


def _message_of(exc: BaseException) -> str:
    """Azure's own message: the service's ``error.message`` when the SDK's text carries the
    response (headers and body), else the SDK's text."""
    message = getattr(exc, "message", None) or str(exc)
    if not isinstance(message, str):
        message = str(message)
    text = message.split("\n\tHeaders:")[0].strip()
    raw = "Headers:" in text or text.lstrip().startswith(("{", "ProjectSystemException",
                                                          "WorkspaceException"))
    found = re.search(r'"message":\s*"((?:[^"\\]|\\.)*)"', text)
    if raw and found:
        value = found.group(1)
        for _ in range(2):  # a body inside a bytes literal is escaped twice
            try:
                value = json.loads(f'"{value}"')
            except json.JSONDecodeError:
                value = value.replace("\\'", "'")
        return " ".join(value.replace("\\n", " ").replace("\\t", " ").split())
    return text


HYPERDRIVE_CONFIG_ERRORS = ("HyperDriveConfigException", "HyperDriveScenarioNotSupportedException",
                            "HyperDriveNotImplementedException")
"""The SDK's refusals of a sweep configuration, raised before anything is sent: simml's
``HyperDriveConfigException`` (a ``UserErrorException``)."""


class Translator:
    """Maps the SDK's exceptions onto simml's typed errors, keeping Azure's message and the SDK's
    exception as ``inner_exception``. ``auth_hint`` says what to do about a refused credential."""

    def __init__(self, auth_hint: str = "") -> None:
        self.auth_hint = auth_hint

    @contextlib.contextmanager
    def __call__(self, action: str) -> Iterator[None]:
        try:
            yield
        except AzureMLException:
            raise  # already simml's
        except Exception as exc:  # noqa: BLE001 - every SDK failure is translated below
            raise self.translate(exc, action) from exc

    def translate(self, exc: BaseException, action: str) -> AzureMLException:
        name = type(exc).__name__
        status = _status_of(exc)
        message = f"{action}: {_message_of(exc)}"
        text = str(exc)
        if status in (401, 403) or name in ("AuthenticationException", "AuthenticationError") \
                or "AuthenticationFailed" in text or "InvalidAuthenticationToken" in text:
            hint = f" {self.auth_hint}" if self.auth_hint else ""
            return AuthenticationException(
                f"Azure refused the credentials ({action}): {_message_of(exc)}{hint}", exc)
        if name == "ComputeTargetException":
            return ComputeTargetException(message, exc)
        if name in HYPERDRIVE_CONFIG_ERRORS and status is None:
            from simml.train.hyperdrive.exceptions import HyperDriveConfigException
            return HyperDriveConfigException(message, exc)
        if name == "ModelNotFoundException":
            return ModelNotFoundException(message, exc)
        if name == "ModelPathNotFoundException":
            return ModelPathNotFoundException(message, exc)
        if name == "WebserviceException":
            if "ModelNotFound" in text:
                return ModelNotFoundException(message, exc)
            return WebserviceException(message, exc)
        if status == 404:
            return NotFoundException(message, exc)
        if name in ("UserErrorException", "ProjectSystemException", "WorkspaceException"):
            if status is None and re.search(r"\bnot (been )?found\b", text, re.I):
                # the SDK re-raised a 404 as a user error, keeping only the service's words
                return NotFoundException(message, exc)
            if status is None and name != "UserErrorException":
                return WorkspaceException(message, exc)
            return UserErrorException(message, exc)
        if status is not None and 400 <= status < 500:
            return UserErrorException(message, exc)
        return AzureMLException(message, exc)


# --- authentication ----------------------------------------------------------------------------

AUTH_TYPES = ("simml_emulator", "service_principal", "interactive", "cli", "msi")


def auth_hint(auth: dict[str, Any] | None) -> str:
    """What to do when Azure refuses the credentials config.json's ``auth`` selects."""
    kind = (auth or {}).get("type", "interactive")
    if kind == "simml_emulator":
        key_env = (auth or {}).get("key_env") or "SIMML_EMULATOR_KEY"
        return (f"Set {key_env} to the key `simml serve` printed for this emulator (a restarted "
                "emulator without SIMML_EMULATOR_KEY in its environment makes a new key).")
    if kind == "service_principal":
        secret_env = (auth or {}).get("secret_env") or DEFAULT_SECRET_ENV
        return (f"Check config.json's auth tenant_id and client_id, that {secret_env} holds a "
                "current secret of that service principal (`az ad sp credential reset`), and "
                "that it has a role on the workspace.")
    if kind == "cli":
        return "Run `az login` (and `az account set --subscription ...`)."
    if kind == "msi":
        return "This machine's managed identity needs a role on the workspace."
    return ("Sign in again: `az login`, or delete ~/.azureml/auth to be asked interactively; for "
            "unattended runs use a service principal (docs/azure.md).")


def build_auth(auth: dict[str, Any] | None, subscription_id: str) -> Any:
    """The SDK's authentication object for config.json's ``auth`` key (secrets come from the
    environment only, never from the file).

    * ``{"type": "simml_emulator", "endpoint": ..., "key_env": ...}``: ``simml serve``;
    * ``{"type": "service_principal", "tenant_id": ..., "client_id": ..., "secret_env": ...}``;
    * ``{"type": "interactive", "tenant_id": ...}`` (also the default), ``{"type": "cli"}``,
      ``{"type": "msi"}``.
    """
    auth = dict(auth or {"type": "interactive"})
    kind = auth.get("type", "interactive")
    if kind not in AUTH_TYPES:
        raise ConfigurationException(
            f"config.json's auth type {kind!r} is not one the azure backend knows "
            f"({', '.join(AUTH_TYPES)}).")
    if kind == "simml_emulator":
        from simml.emulator.client_auth import SimmlEmulatorAuthentication
        from simml.emulator.protocol import KEY_ENV
        endpoint = auth.get("endpoint")
        key_env = auth.get("key_env") or KEY_ENV
        if not isinstance(endpoint, str) or not endpoint:
            raise ConfigurationException("config.json's auth of type 'simml_emulator' needs the "
                                         "emulator's 'endpoint' (`simml serve --write-config`).")
        key = os.environ.get(key_env)
        if not key:
            raise AuthenticationException(
                f"The simml emulator's key is not set: export {key_env}=<the key `simml serve` "
                "printed>.")
        return SimmlEmulatorAuthentication(endpoint=endpoint, key=key,
                                           subscription_id=subscription_id)
    if kind == "service_principal":
        from azureml.core.authentication import ServicePrincipalAuthentication
        missing = [k for k in ("tenant_id", "client_id") if not auth.get(k)]
        if missing:
            raise ConfigurationException(
                f"config.json's service_principal auth needs {' and '.join(missing)}.")
        secret_env = auth.get("secret_env") or DEFAULT_SECRET_ENV
        secret = os.environ.get(secret_env)
        if not secret:
            raise AuthenticationException(
                f"The service principal's secret is not set: export {secret_env} (config.json "
                "names the variable in auth.secret_env; the secret itself never goes in the "
                "file).")
        return ServicePrincipalAuthentication(tenant_id=auth["tenant_id"],
                                              service_principal_id=auth["client_id"],
                                              service_principal_password=secret)
    if kind == "cli":
        from azureml.core.authentication import AzureCliAuthentication
        return AzureCliAuthentication()
    if kind == "msi":
        from azureml.core.authentication import MsiAuthentication
        return MsiAuthentication()
    from azureml.core.authentication import InteractiveLoginAuthentication
    return InteractiveLoginAuthentication(tenant_id=auth.get("tenant_id"))


# --- conversions ---------------------------------------------------------------------------------

def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value).replace("Z", "+00:00")
    # Azure sends up to 7 fractional digits; Python takes 6
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _strings(value: Any) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in (value or {}).items()}


def _dto_get(dto: Any, name: str) -> Any:
    if isinstance(dto, dict):
        return dto.get(name)
    return getattr(dto, name, None)


def _error_of(dto: Any) -> dict[str, Any] | None:
    """A run's error as simml keeps it: ``{"error": {"code": ..., "message": ...}}``."""
    error = _dto_get(dto, "error")
    if error is None:
        return None
    root = _dto_get(error, "error") or error
    out = {key: _dto_get(root, key) for key in ("code", "message")}
    if not any(out.values()):
        return None
    return {"error": {k: v for k, v in out.items() if v is not None}}


# --- HyperDrive: simml's sweep definition and Azure's -------------------------------------------

HYPERDRIVE_RUN_TYPE = "hyperdrive"
SYSTEM_TAG = "_aml_system_"
"""Azure keeps a sweep's settings, and each child's hyperparameters, in its parent's tags with
this prefix (older sweeps: without it)."""
SIMML_ONLY_SAMPLING_PROPERTIES = ("batchSize",)
"""simml's Bayesian batches: Azure's Bayesian service has no such setting."""


def _option(key: str) -> str:
    """A parameter's command-line option, as both simml and Azure pass it."""
    return key if key.startswith("-") else f"--{key}"


def without_options(arguments: list[Any], space: dict[str, Any]) -> list[Any]:
    """``arguments`` without the options the sweep samples (and the value after each): Azure
    appends a trial's sampled ``--option value`` to a ``ScriptRunConfig``'s arguments, so the
    sampled value wins as it does in simml (which replaces it in place)."""
    swept = {_option(key) for key in space}
    out: list[Any] = []
    skip = False
    for position, value in enumerate(arguments):
        if skip:
            skip = False
            continue
        if isinstance(value, str) and value in swept and position + 1 < len(arguments):
            skip = True
            continue
        out.append(value)
    return out


def sdk_sampling(generator: dict[str, Any]) -> Any:
    """The SDK's sampling for simml's generator (``to_json()``: Azure's serialised form), its
    expressions rebuilt with the SDK's own functions so the SDK validates them."""
    from azureml.train.hyperdrive import (
        BayesianParameterSampling,
        GridParameterSampling,
        RandomParameterSampling,
    )
    from azureml.train.hyperdrive import parameter_expressions as expressions
    space = {}
    for key, (name, args) in (generator.get("parameter_space") or {}).items():
        function = getattr(expressions, name, None)
        if function is None:
            raise UserErrorException(f"Parameter {key!r}: Azure has no expression {name!r}.")
        space[key] = function(*args[0]) if name == "choice" else function(*args)
    properties = {k: v for k, v in (generator.get("properties") or {}).items()
                  if k not in SIMML_ONLY_SAMPLING_PROPERTIES} or None
    name = generator.get("name")
    if name == "RANDOM":
        return RandomParameterSampling(space, properties=properties)
    if name == "GRID":
        return GridParameterSampling(space)
    if name == "BayesianOptimization":
        return BayesianParameterSampling(space, properties=properties)
    raise UserErrorException(f"Sampling {name!r} has no Azure HyperDrive counterpart.")


def sdk_policy(policy: dict[str, Any] | None) -> Any:
    """The SDK's early-termination policy for simml's ``policy.to_json()``."""
    from azureml.train.hyperdrive import (
        BanditPolicy,
        MedianStoppingPolicy,
        NoTerminationPolicy,
        TruncationSelectionPolicy,
    )
    name = (policy or {}).get("name") or "Default"
    props = dict((policy or {}).get("properties") or {})
    interval = int(props.get("evaluation_interval", 1))
    delay = int(props.get("delay_evaluation", 0))
    if name == "Default":
        return NoTerminationPolicy()
    if name == "Bandit":
        return BanditPolicy(evaluation_interval=interval, slack_factor=props.get("slack_factor"),
                            slack_amount=props.get("slack_amount"), delay_evaluation=delay)
    if name == "MedianStopping":
        return MedianStoppingPolicy(evaluation_interval=interval, delay_evaluation=delay)
    if name == "TruncationSelection":
        return TruncationSelectionPolicy(int(props["truncation_percentage"]),
                                         evaluation_interval=interval, delay_evaluation=delay)
    raise UserErrorException(f"Early termination policy {name!r} has no Azure counterpart.")


def _system_tag(tags: dict[str, str], name: str) -> str | None:
    return tags.get(SYSTEM_TAG + name, tags.get(name))


def sweep_definition(tags: dict[str, str], target: str) -> dict[str, Any] | None:
    """simml's sweep definition (``{"hyperdrive": {...}}``, what ``HyperDriveRun`` reads) from the
    settings Azure keeps in a sweep parent's tags; None when they are not there (yet)."""
    try:
        generator = json.loads(_system_tag(tags, "generator_config") or "null")
        metric = json.loads(_system_tag(tags, "primary_metric_config") or "null")
        policy = json.loads(_system_tag(tags, "policy_config") or "null")
        total = _system_tag(tags, "max_total_jobs")
        concurrent = _system_tag(tags, "max_concurrent_jobs")
        minutes = _system_tag(tags, "max_duration_minutes")
    except json.JSONDecodeError:
        return None
    if not isinstance(generator, dict) or not isinstance(metric, dict) or total is None:
        return None
    return {"hyperdrive": {
        "generator": generator, "policy": policy or {"name": "Default"},
        "primaryMetricName": metric.get("name"),
        "primaryMetricGoal": str(metric.get("goal") or "maximize").lower(),
        "maxTotalRuns": int(total), "maxConcurrentRuns": int(concurrent or total),
        "maxDurationMinutes": float(minutes or 10080)}, "target": target}


# --- the workspace ------------------------------------------------------------------------------

class AzureMLWorkspace:
    """One Azure ML workspace reached through the SDK: every operation the backend needs, taking
    and returning simml's entities. Thread-safe where the SDK is (its clients are)."""

    def __init__(self, workspace: Any, translate: Translator) -> None:
        self.ws = workspace
        self.translate = translate
        self._experiment_names: dict[str, str] = {}  # experiment id -> name
        self._experiments: dict[str, Any] = {}  # name -> azureml Experiment
        self._runs: dict[str, Any] = {}  # run id -> azureml Run (keeps its metric queue)
        self._lock = threading.Lock()

    # --- connecting ------------------------------------------------------------------------------
    @classmethod
    def connect(cls, ref: "WorkspaceRef", config: dict[str, Any]) -> "AzureMLWorkspace":
        """Open the workspace ``ref`` names with the credentials of config.json's ``auth``."""
        auth_config = ref.auth if ref.auth is not None else config.get("auth")
        if auth_config is not None and not isinstance(auth_config, dict):
            raise ConfigurationException("config.json's 'auth' must be an object with a 'type'.")
        translate = Translator(auth_hint(auth_config))
        auth = build_auth(auth_config, ref.subscription_id)
        with translate(f"opening workspace {ref.name!r} (subscription {ref.subscription_id}, "
                       f"resource group {ref.resource_group})"):
            from azureml.core import Workspace
            workspace = Workspace(ref.subscription_id, ref.resource_group, ref.name, auth=auth)
        return cls(workspace, translate)

    def info(self) -> "WorkspaceInfo":
        from simml.entities import WorkspaceInfo
        with self.translate("reading the workspace"):
            details = self.ws.get_details()
        return WorkspaceInfo(
            name=self.ws.name, subscription_id=self.ws.subscription_id,
            resource_group=self.ws.resource_group, location=details.get("location") or "",
            workspace_id=details.get("workspaceid") or "", backend="azure",
            created_time=_time(details.get("creationTime")) or datetime.now(timezone.utc),
            properties={"discovery_url": details.get("discoveryUrl"),
                        "storage_account": details.get("storageAccount"),
                        "arm_id": details.get("id")})

    # --- experiments ---------------------------------------------------------------------------
    def _workspace_client(self) -> Any:
        from azureml._restclient.workspace_client import WorkspaceClient
        return WorkspaceClient(self.ws.service_context)

    def _experiment_info(self, dto: Any) -> "ExperimentInfo":
        from simml.entities import ExperimentInfo
        experiment_id, name = _dto_get(dto, "experiment_id"), _dto_get(dto, "name")
        if experiment_id:
            self._experiment_names[experiment_id] = name
        return ExperimentInfo(id=experiment_id or "", name=name,
                              created_time=_time(_dto_get(dto, "created_utc"))
                              or datetime.now(timezone.utc),
                              archived_time=_time(_dto_get(dto, "archived_time")),
                              tags=_strings(_dto_get(dto, "tags")))

    def get_experiment(self, name: str) -> "ExperimentInfo":
        with self.translate(f"reading experiment {name!r}"):
            return self._experiment_info(self._workspace_client().get_experiment(name))

    def get_or_create_experiment(self, name: str) -> "ExperimentInfo":
        with self.translate(f"creating experiment {name!r}"):
            return self._experiment_info(self._workspace_client().get_or_create_experiment(name))

    def list_experiments(self, include_archived: bool) -> list["ExperimentInfo"]:
        view = "All" if include_archived else "ActiveOnly"
        with self.translate("listing experiments"):
            dtos = list(self._workspace_client().list_experiments(view_type=view))
        return [self._experiment_info(dto) for dto in dtos]

    def set_experiment_archived(self, name: str, archived: bool) -> "ExperimentInfo":
        info = self.get_experiment(name)
        with self.translate(f"{'archiving' if archived else 'reactivating'} experiment {name!r}"):
            client = self._workspace_client()
            if archived:
                client.archive_experiment(info.id)
            else:
                client.reactivate_experiment(info.id)
        return self.get_experiment(name)

    def _experiment(self, name: str) -> Any:
        """The SDK's Experiment object (no request when its id is known)."""
        found = self._experiments.get(name)
        if found is not None:
            return found
        info = self.get_or_create_experiment(name)
        from azureml.core import Experiment
        with self.translate(f"opening experiment {name!r}"):
            experiment = Experiment(self.ws, name, _skip_name_validation=True, _id=info.id,
                                    _create_in_cloud=False)
        self._experiments[name] = experiment
        return experiment

    def experiment_name(self, experiment_id: str) -> str:
        name = self._experiment_names.get(experiment_id)
        if name is None:
            with self.translate(f"reading experiment id {experiment_id}"):
                dto = self._workspace_client().get_experiment_by_id(experiment_id)
            name = self._experiment_info(dto).name
        return name

    # --- runs ----------------------------------------------------------------------------------
    def run_info(self, dto: Any, experiment_name: str | None = None) -> "RunInfo":
        from simml.entities import RunInfo
        experiment_id = _dto_get(dto, "experiment_id") or ""
        if experiment_name is None:
            experiment_name = self.experiment_name(experiment_id) if experiment_id else ""
        created_by = _dto_get(dto, "created_by")
        definition = _dto_get(dto, "run_definition")
        definition = definition if isinstance(definition, dict) and definition else None
        run_type = _dto_get(dto, "run_type") or "azureml.scriptrun"
        if run_type == HYPERDRIVE_RUN_TYPE and "hyperdrive" not in (definition or {}):
            # Azure's sweep parent keeps its settings in tags, not in a run definition
            definition = sweep_definition(_strings(_dto_get(dto, "tags")),
                                          _dto_get(dto, "target") or "")
        return RunInfo(
            id=_dto_get(dto, "run_id"), experiment_id=experiment_id,
            experiment_name=experiment_name, number=int(_dto_get(dto, "run_number") or 0),
            run_type=run_type,
            status=_dto_get(dto, "status") or "NotStarted",
            target=_dto_get(dto, "target") or "local",
            created_time=_time(_dto_get(dto, "created_utc")) or datetime.now(timezone.utc),
            parent_id=_dto_get(dto, "parent_run_id"),
            display_name=_dto_get(dto, "display_name") or None,
            start_time=_time(_dto_get(dto, "start_time_utc")),
            end_time=_time(_dto_get(dto, "end_time_utc")),
            error=_error_of(dto), tags=_strings(_dto_get(dto, "tags")),
            properties=_strings(_dto_get(dto, "properties")),
            definition=definition,
            submitted_by=_dto_get(created_by, "user_name") or "" if created_by else "")

    def _run_client(self, experiment_name: str, run_id: str) -> Any:
        from azureml._restclient.run_client import RunClient
        experiment = self._experiment(experiment_name)
        return RunClient(self.ws.service_context, experiment_name, run_id,
                         experiment_id=experiment.id)

    def get_run_dto(self, run_id: str) -> Any:
        with self.translate(f"reading run {run_id}"):
            return self._workspace_client().get_run(run_id)

    def get_run(self, run_id: str) -> "RunInfo":
        return self.run_info(self.get_run_dto(run_id))

    def create_run(self, request: "RunCreate") -> "RunInfo":
        """One PATCH creating the run NotStarted, with its type, parent, tags and properties."""
        from azureml._restclient.models import CreateRunDto
        experiment = self._experiment(request.experiment_name)
        dto = CreateRunDto(run_id=request.run_id, parent_run_id=request.parent_id,
                           status="NotStarted", run_type=request.run_type,
                           display_name=request.display_name, target=request.target,
                           tags=dict(request.tags) or None,
                           properties=dict(request.properties) or None)
        from azureml._restclient.experiment_client import ExperimentClient
        with self.translate(f"creating run {request.run_id}"):
            client = ExperimentClient(self.ws.service_context, request.experiment_name,
                                      experiment_id=experiment.id)
            created = client.create_run(run_id=request.run_id, create_run_dto=dto)
        return self.run_info(created, request.experiment_name)

    def post_status(self, info: "RunInfo", status: str, error: dict[str, Any] | None) -> None:
        """Record a status the client drives (interactive runs): Azure's run events."""
        client = self._run_client(info.experiment_name, info.id)
        with self.translate(f"setting run {info.id} to {status}"):
            if status == "Running":
                client.post_event_start()
            elif status == "Completed":
                client.post_event_completed()
            elif status == "Failed":
                detail = (error or {}).get("error", error) or {"code": "UserError"}
                client.post_event_error({"code": detail.get("code") or "UserError",
                                         "message": detail.get("message") or ""})
                client.post_event_failed()
            elif status == "CancelRequested":
                client.post_event_cancel_requested()
            elif status == "Canceled":
                client.post_event_canceled()

    def patch_run(self, info: "RunInfo", *, tags: dict[str, str] | None = None,
                  properties: dict[str, str] | None = None,
                  display_name: str | None = None) -> None:
        from azureml._restclient.models import CreateRunDto
        client = self._run_client(info.experiment_name, info.id)
        with self.translate(f"updating run {info.id}"):
            client.patch_run(CreateRunDto(run_id=info.id, tags=tags, properties=properties,
                                          display_name=display_name))

    def remove_tags(self, info: "RunInfo", keys: list[str]) -> None:
        client = self._run_client(info.experiment_name, info.id)
        with self.translate(f"removing tags of run {info.id}"):
            client.delete_run_tags(keys)

    def children(self, info: "RunInfo") -> list["RunInfo"]:
        """Direct children of a run, oldest first."""
        client = self._run_client(info.experiment_name, info.id)
        with self.translate(f"listing the children of run {info.id}"):
            dtos = list(client.get_child_runs(info.id, recursive=False))
        runs = [self.run_info(dto, info.experiment_name) for dto in dtos]
        if info.run_type == HYPERDRIVE_RUN_TYPE:
            # a trial's hyperparameters are in its sweep parent's tags on Azure; simml reads them
            # from the trial's properties (the local backend's and the emulator's trials have it)
            from dataclasses import replace
            runs = [run if "hyperparameters" in run.properties
                    or SYSTEM_TAG + run.id not in info.tags
                    else replace(run, properties={
                        **run.properties, "hyperparameters": info.tags[SYSTEM_TAG + run.id]})
                    for run in runs]
        return sorted(runs, key=lambda r: (r.created_time, r.number))

    def experiment_runs(self, experiment_name: str) -> list["RunInfo"]:
        """Every run of an experiment (children included)."""
        from azureml._restclient.experiment_client import ExperimentClient
        experiment = self._experiment(experiment_name)
        with self.translate(f"listing the runs of experiment {experiment_name!r}"):
            client = ExperimentClient(self.ws.service_context, experiment_name,
                                      experiment_id=experiment.id)
            dtos = list(client.get_runs(_filter_on_server=False))
        return [self.run_info(dto, experiment_name) for dto in dtos]

    # --- metrics -------------------------------------------------------------------------------
    def _sdk_run(self, info: "RunInfo") -> Any:
        """The SDK's Run object of a run, kept so its asynchronous metric queue is the same one
        every flush waits for."""
        with self._lock:
            run = self._runs.get(info.id)
        if run is not None:
            return run
        from azureml.core import Run
        experiment = self._experiment(info.experiment_name)
        dto = self.get_run_dto(info.id)
        with self.translate(f"opening run {info.id}"):
            run = Run._dto_to_run(experiment, dto)
        with self._lock:
            return self._runs.setdefault(info.id, run)

    def log_rows(self, info: "RunInfo", rows: tuple[tuple[Any, ...], ...]) -> None:
        """Log simml's metric rows through the SDK and wait until Azure has them all."""
        run = self._sdk_run(info)
        with self.translate(f"logging metrics of run {info.id}"):
            for name, kind, value, step, _time_ in rows:
                base = kind[:-5] if kind.endswith("+json") else kind
                if kind.endswith("+json"):
                    value = json.loads(value)
                if base == "scalar":
                    run.log(name, value, step=step)
                elif base == "list":
                    run.log_list(name, [value])
                elif base == "row":
                    run.log_row(name, **value)
                elif base == "table":
                    run.log_table(name, value)
                elif base == "image":
                    # simml uploaded the PNG as a run file; the metric names it (aml://...),
                    # as the SDK's log_image sends it (azureml.v2.image)
                    from azureml.core._metrics import ImageMetric
                    run._client.metrics.log_v2(ImageMetric(name, value, value))
                else:
                    raise UserErrorException(f"Metric {name!r}: kind {kind!r} has no Azure form.")
            run.flush()

    def metric_series(self, info: "RunInfo", name: str | None) -> list["MetricSeries"]:
        """A run's metrics with their logged types (metrics v2: list, then each metric in full)."""
        from simml.entities import MetricSeries
        run = self._sdk_run(info)
        metrics = run._client.metrics
        with self.translate(f"reading metrics of run {info.id}"):
            names = [name] if name is not None else metrics.list_metric_names_for_run_id(info.id)
            series = []
            for metric in names:
                dto = metrics.get_metric_dto_for_run_v2(metric, run_id=info.id)
                if dto is None or not dto.value:
                    continue
                ux = getattr(dto.properties, "ux_metric_type", None) or "azureml.v1.scalar"
                kind = UX_KIND.get(ux, "scalar")
                values, steps, times = [], [], []
                for point in dto.value:
                    data = dict(point.data or {})
                    values.append(data if kind == "row" else data.get(metric))
                    steps.append(point.step)
                    created = _time(point.created_utc)
                    times.append(created.timestamp() if created else 0.0)
                series.append(MetricSeries(metric, kind, tuple(values), tuple(steps),
                                           tuple(times)))
        return series

    # --- run files -----------------------------------------------------------------------------
    def upload_file(self, info: "RunInfo", name: str, source: BinaryIO) -> None:
        run = self._sdk_run(info)
        with self.translate(f"uploading {name!r} to run {info.id}"):
            run.upload_file(name, source)

    def file_names(self, info: "RunInfo") -> list[str]:
        run = self._sdk_run(info)
        with self.translate(f"listing the files of run {info.id}"):
            return sorted(run.get_file_names())

    def download_file(self, info: "RunInfo", name: str, target: Path) -> None:
        run = self._sdk_run(info)
        with self.translate(f"downloading {name!r} of run {info.id}"):
            run.download_file(name, str(target))

    # --- compute -------------------------------------------------------------------------------
    def _compute(self, name: str) -> Any:
        from azureml.core.compute import ComputeTarget
        with self.translate(f"reading compute target {name!r}"):
            return ComputeTarget(workspace=self.ws, name=name)

    @staticmethod
    def _compute_info(target: Any) -> "ComputeInfo":
        from simml.entities import ComputeInfo
        scale = getattr(target, "scale_settings", None)
        return ComputeInfo(
            name=target.name, compute_type=getattr(target, "type", None) or "AmlCompute",
            provisioning_state=getattr(target, "provisioning_state", None) or "Unknown",
            vm_size=(getattr(target, "vm_size", None) or "").upper() or None,
            vm_priority=getattr(target, "vm_priority", None),
            min_nodes=int(getattr(scale, "minimum_node_count", 0) or 0),
            max_nodes=int(getattr(scale, "maximum_node_count", 0) or 0),
            idle_seconds_before_scaledown=int(
                getattr(scale, "idle_seconds_before_scaledown", None) or 1800),
            created_time=_time(getattr(target, "created_on", None)),
            properties={"location": getattr(target, "location", None),
                        "tags": getattr(target, "tags", None),
                        "description": getattr(target, "description", None),
                        "provisioning_errors": getattr(target, "provisioning_errors", None),
                        "cluster_resource_id": getattr(target, "cluster_resource_id", None),
                        "modified_time": str(getattr(target, "modified_on", None) or "") or None,
                        "admin_username": getattr(target, "admin_username", None),
                        "vnet_resourcegroup_name": getattr(target, "vnet_resourcegroup_name",
                                                           None),
                        "vnet_name": getattr(target, "vnet_name", None),
                        "subnet_name": getattr(target, "subnet_name", None),
                        "identity_type": getattr(target, "identity_type", None),
                        "remote_login_port_public_access": getattr(
                            target, "remote_login_port_public_access", None)})

    def compute_get(self, name: str) -> "ComputeInfo":
        return self._compute_info(self._compute(name))

    def compute_list(self) -> list["ComputeInfo"]:
        from azureml.core.compute import ComputeTarget
        with self.translate("listing compute targets"):
            targets = ComputeTarget.list(self.ws)
        return [self._compute_info(t) for t in targets]

    def compute_create(self, name: str, config: dict[str, Any]) -> "ComputeInfo":
        """``ComputeTarget.create`` with ``AmlCompute.provisioning_configuration``: returns once
        Azure accepted it (provisioning continues; the caller waits)."""
        from azureml.core.compute import AmlCompute, ComputeTarget
        with self.translate(f"creating compute target {name!r}"):
            provisioning = AmlCompute.provisioning_configuration(
                vm_size=config.get("vm_size") or "",
                vm_priority=config.get("vm_priority") or "dedicated",
                min_nodes=config.get("min_nodes") or 0, max_nodes=config.get("max_nodes"),
                idle_seconds_before_scaledown=config.get("idle_seconds_before_scaledown", 1800),
                admin_username=config.get("admin_username"),
                admin_user_password=config.get("admin_user_password"),
                admin_user_ssh_key=config.get("admin_user_ssh_key"),
                vnet_resourcegroup_name=config.get("vnet_resourcegroup_name"),
                vnet_name=config.get("vnet_name"), subnet_name=config.get("subnet_name"),
                tags=config.get("tags"), description=config.get("description"),
                remote_login_port_public_access=config.get("remote_login_port_public_access")
                or "NotSpecified",
                identity_type=config.get("identity_type"), identity_id=config.get("identity_id"),
                location=config.get("location"),
                enable_node_public_ip=config.get("enable_node_public_ip", True))
            target = ComputeTarget.create(self.ws, name, provisioning)
        return self._compute_info(target)

    def compute_status(self, name: str) -> "ComputeStatus":
        from simml.entities import ComputeStatus
        target = self._compute(name)
        with self.translate(f"reading the status of compute target {name!r}"):
            status = target.get_status()
        if status is None:
            return ComputeStatus(provisioning_state=target.provisioning_state or "Unknown",
                                 allocation_state="Unknown", current_node_count=0,
                                 target_node_count=0)
        counts = getattr(status, "node_state_counts", None)
        errors = getattr(status, "errors", None) or ()

        def count(field: str) -> int:
            return int(getattr(counts, field, 0) or 0) if counts is not None else 0

        return ComputeStatus(
            provisioning_state=getattr(status, "provisioning_state", None)
            or target.provisioning_state or "Unknown",
            allocation_state=getattr(status, "allocation_state", None) or "Unknown",
            current_node_count=int(getattr(status, "current_node_count", 0) or 0),
            target_node_count=int(getattr(status, "target_node_count", 0) or 0),
            idle_node_count=count("idle_node_count"),
            running_node_count=count("running_node_count"),
            preparing_node_count=count("preparing_node_count"),
            leaving_node_count=count("leaving_node_count"),
            unusable_node_count=count("unusable_node_count"),
            preempted_node_count=count("preempted_node_count"),
            errors=tuple(str(e) for e in errors),
            allocation_state_transition_time=_time(
                getattr(status, "allocation_state_transition_time", None)))

    def compute_update(self, name: str, min_nodes: int | None, max_nodes: int | None,
                       idle_seconds_before_scaledown: int | None) -> "ComputeInfo":
        target = self._compute(name)
        with self.translate(f"updating compute target {name!r}"):
            target.update(min_nodes=min_nodes, max_nodes=max_nodes,
                          idle_seconds_before_scaledown=idle_seconds_before_scaledown)
        return self.compute_get(name)

    def compute_nodes(self, name: str) -> list["ComputeNode"]:
        from simml.entities import ComputeNode
        target = self._compute(name)
        with self.translate(f"listing the nodes of compute target {name!r}"):
            nodes = target.list_nodes() or []
        return [ComputeNode(node_id=str(n.get("nodeId")), state=str(n.get("nodeState")),
                            run_id=n.get("runId")) for n in nodes]

    def compute_delete(self, name: str) -> bool:
        target = self._compute(name)
        with self.translate(f"deleting compute target {name!r}"):
            target.delete()
            if getattr(target, "_operation_endpoint", None):
                # simml's delete returns once the name is free again, as the local backend's
                target.wait_for_completion(show_output=False, is_delete_operation=True)
        return True


    # --- datastores ----------------------------------------------------------------------------
    def _datastore(self, name: str | None) -> Any:
        from azureml.core import Datastore
        with self.translate(f"reading datastore {name or '(default)'!r}"):
            if name is None:
                return self.ws.get_default_datastore()
            return Datastore.get(self.ws, name)

    def _default_datastore_name(self) -> str:
        with self.translate("reading the default datastore"):
            return self.ws.get_default_datastore().name

    @staticmethod
    def _datastore_info(store: Any, default: str) -> "DatastoreInfo":
        from simml.entities import DatastoreInfo
        return DatastoreInfo(name=store.name, datastore_type=store.datastore_type,
                             container_name=getattr(store, "container_name", "") or "",
                             account_name=getattr(store, "account_name", "") or "",
                             is_default=store.name == default)

    def datastore_get(self, name: str | None) -> "DatastoreInfo":
        store = self._datastore(name)
        default = store.name if name is None else self._default_datastore_name()
        return self._datastore_info(store, default)

    def datastore_list(self) -> list["DatastoreInfo"]:
        with self.translate("listing datastores"):
            stores = dict(self.ws.datastores)
        default = self._default_datastore_name()
        return [self._datastore_info(stores[n], default) for n in sorted(stores)]

    def datastore_set_default(self, name: str) -> "DatastoreInfo":
        self._datastore(name)  # NotFoundException first
        with self.translate(f"making {name!r} the default datastore"):
            self.ws.set_default_datastore(name)
        return self.datastore_get(name)

    def datastore_register(self, info: "DatastoreInfo", overwrite: bool, storage: Any
                           ) -> "DatastoreInfo":
        """The SDK's ``register_azure_blob_container`` / ``register_azure_file_share`` with the
        caller's credential and options (``StorageRegistration``); a name taken without
        ``overwrite`` is Azure's conflict, saying how to replace it."""
        from azureml.core import Datastore
        common = dict(sas_token=storage.sas_token, account_key=storage.account_key,
                      protocol=storage.protocol, endpoint=storage.endpoint, overwrite=overwrite,
                      create_if_not_exists=storage.create_if_not_exists,
                      skip_validation=storage.skip_validation)
        action = f"registering datastore {info.name!r}"
        try:
            with self.translate(action):
                if info.datastore_type == "AzureBlob":
                    Datastore.register_azure_blob_container(
                        self.ws, info.name, info.container_name, info.account_name, **common,
                        blob_cache_timeout=storage.blob_cache_timeout,
                        grant_workspace_access=storage.grant_workspace_access,
                        subscription_id=storage.subscription_id,
                        resource_group=storage.resource_group)
                else:
                    Datastore.register_azure_file_share(
                        self.ws, info.name, info.container_name, info.account_name, **common)
        except UserErrorException as exc:
            if overwrite or "same name already exists" not in exc.message:
                raise
            raise UserErrorException(f"{exc.message} Pass overwrite=True to replace it.",
                                     exc.inner_exception) from exc
        return self.datastore_get(info.name)

    def _container(self, name: str) -> Any:
        store = self._datastore(name)
        service = getattr(store, "blob_service", None)
        if service is None:
            raise UserErrorException(
                f"Datastore {name!r} is of type {store.datastore_type}: the azure backend "
                "transfers files through blob clients, so of blob datastores (AzureBlob) only. "
                "Register a blob container (Datastore.register_azure_blob_container) for files "
                "simml moves.")
        return service.get_container_client(store.container_name)

    def datastore_stat(self, name: str, prefix: str | None) -> list["DatastoreFile"]:
        from simml.entities import DatastoreFile
        container = self._container(name)
        with self.translate(f"listing datastore {name!r}"):
            blobs = list(container.list_blobs(name_starts_with=prefix or None))
        found = [DatastoreFile(b.name, int(b.size or 0),
                               _time(b.last_modified) or datetime.now(timezone.utc))
                 for b in blobs if not b.name.endswith("/")]
        return sorted(found, key=lambda f: f.path)

    def datastore_read(self, name: str, path: str, offset: int, length: int) -> bytes:
        container = self._container(name)
        if length <= 0:
            return b""
        try:
            with self.translate(f"reading {path!r} of datastore {name!r}"):
                blob = container.get_blob_client(path)
                return blob.download_blob(offset=max(0, offset), length=length).readall()
        except UserErrorException as exc:
            if _status_of(exc.inner_exception or exc) == 416:
                return b""  # from the end of the blob on: nothing, as the local backend reads
            raise

    def datastore_upload(self, name: str, items: tuple[Any, ...], overwrite: bool,
                         progress: Any) -> tuple[list[str], list[str]]:
        """Each item to its target blob; an existing one is skipped unless ``overwrite``."""
        container = self._container(name)
        existing = set()
        if not overwrite:
            existing = {f.path for f in self.datastore_stat(name, None)}
        transferred, skipped = [], []
        if progress is not None:
            progress.start(len(items), sum(os.path.getsize(i.source) for i in items))
        with self.translate(f"uploading to datastore {name!r}"):
            for item in items:
                if item.target in existing:
                    skipped.append(item.target)
                    if progress is not None:  # Azure's words
                        progress.message(f"Target already exists. Skipping upload for "
                                         f"{item.target}")
                    continue
                with open(item.source, "rb") as stream:
                    container.get_blob_client(item.target).upload_blob(
                        stream, blob_type="BlockBlob", overwrite=overwrite)
                transferred.append(item.target)
                if progress is not None:
                    progress.advance(item.target, os.path.getsize(item.source))
        if progress is not None:
            progress.finish()
        return transferred, skipped

    def datastore_download(self, name: str, prefix: str | None, target: Path, overwrite: bool,
                           progress: Any) -> tuple[list[str], list[str]]:
        """Blobs under ``prefix`` into ``target`` keeping their paths; each file written to a
        temporary and renamed, so no partial file shows."""
        from simml._paths import safe_relpath
        files = self.datastore_stat(name, prefix)
        container = self._container(name)
        transferred, skipped = [], []
        if progress is not None:
            progress.start(len(files), sum(f.size for f in files))
        with self.translate(f"downloading from datastore {name!r}"):
            for found in files:
                relpath = safe_relpath(found.path)
                destination = target.joinpath(*relpath.split("/"))
                if destination.exists() and not overwrite:
                    skipped.append(found.path)
                    if progress is not None:  # Azure's words
                        progress.message(f"Path already exists. Skipping download for "
                                         f"{destination}")
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                partial = destination.with_name(f".simml-tmp-{os.getpid()}-{destination.name}")
                try:
                    with open(partial, "wb") as out:
                        container.get_blob_client(found.path).download_blob().readinto(out)
                    os.replace(partial, destination)
                finally:
                    partial.unlink(missing_ok=True)
                transferred.append(found.path)
                if progress is not None:
                    progress.advance(found.path, found.size)
        if progress is not None:
            progress.finish()
        return transferred, skipped

    def sdk_datastore(self, name: str) -> Any:
        return self._datastore(name)

    # --- models --------------------------------------------------------------------------------
    def _model_info(self, model: Any, with_files: bool) -> "ModelInfo":
        from simml.entities import ModelInfo
        files: tuple[str, ...] = ()
        if with_files:
            with self.translate(f"listing the files of model {model.name}:{model.version}"):
                files = tuple(sorted(p.replace(os.sep, "/") for p in model.get_sas_urls()))
        return ModelInfo(
            name=model.name, version=int(model.version),
            created_time=_time(getattr(model, "created_time", None))
            or datetime.now(timezone.utc),
            tags=_strings(model.tags), properties=_strings(model.properties),
            description=model.description or None,
            model_framework=getattr(model, "model_framework", None) or None,
            model_framework_version=getattr(model, "model_framework_version", None) or None,
            run_id=getattr(model, "run_id", None) or None,
            experiment_name=getattr(model, "experiment_name", None) or None, files=files)

    def _model(self, name: str, version: int | None) -> Any:
        from azureml.core.model import Model
        with self.translate(f"reading model {name}:{version or 'latest'}"):
            return Model(self.ws, name=name, version=version)

    def model_register(self, registration: Any) -> "ModelInfo":
        common = dict(tags=dict(registration.tags) or None,
                      properties=dict(registration.properties) or None,
                      description=registration.description,
                      model_framework=registration.model_framework,
                      model_framework_version=registration.model_framework_version)
        if registration.run_id is not None:
            info = self.get_run(registration.run_id)
            run = self._sdk_run(info)
            path = registration.run_path if registration.run_path is not None \
                else registration.name
            with self.translate(f"registering model {registration.name!r} from run "
                                f"{info.id}"):
                model = run.register_model(model_name=registration.name, model_path=path,
                                           **common)
        else:
            from azureml.core.model import Model
            with self.translate(f"registering model {registration.name!r}"):
                model = Model.register(self.ws, model_path=registration.local_path,
                                       model_name=registration.name, **common)
        return self._model_info(model, with_files=True)

    def model_get(self, name: str, version: int | None) -> "ModelInfo":
        return self._model_info(self._model(name, version), with_files=True)

    def model_list(self, query: Any) -> list["ModelInfo"]:
        from azureml.core.model import Model

        def pairs(items: tuple[tuple[str, str | None], ...]) -> list[Any] | None:
            return [k if v is None else [k, v] for k, v in items] or None

        with self.translate("listing models"):
            models = Model.list(self.ws, name=query.name, tags=pairs(query.tags),
                                properties=pairs(query.properties), run_id=query.run_id,
                                latest=query.latest)
        infos = [self._model_info(m, with_files=False) for m in models]
        return sorted(infos, key=lambda i: (i.created_time, i.name, i.version), reverse=True)

    def model_update(self, name: str, version: int, add_tags: dict[str, str] | None,
                     remove_tags: list[str] | None, add_properties: dict[str, str] | None,
                     description: str | None) -> "ModelInfo":
        model = self._model(name, version)
        with self.translate(f"updating model {name}:{version}"):
            if add_tags:
                model.add_tags(dict(add_tags))
            if remove_tags:
                model.remove_tags(list(remove_tags))
            if add_properties:
                model.add_properties(dict(add_properties))
            if description is not None:
                model.update(description=description)
        return self.model_get(name, version)

    def model_download(self, name: str, version: int, target_dir: str, exist_ok: bool) -> str:
        model = self._model(name, version)
        with self.translate(f"downloading model {name}:{version}"):
            return model.download(target_dir=target_dir, exist_ok=exist_ok)

    def model_delete(self, name: str, version: int) -> bool:
        model = self._model(name, version)
        with self.translate(f"deleting model {name}:{version}"):
            model.delete()
        return True

    # --- environments --------------------------------------------------------------------------
    @staticmethod
    def sdk_environment(definition: dict[str, Any] | None, extra_pip: tuple[str, ...] = ()
                        ) -> Any:
        """The SDK's Environment for simml's definition (Azure's layout, simml-only keys
        dropped); None for simml's default environment (Azure's default curated one)."""
        from azureml.core import Environment
        if not definition or (definition.get("name") == "default-environment"
                              and not extra_pip):
            return None
        azure = copy.deepcopy({k: v for k, v in definition.items() if k != "simml"})
        docker = azure.get("docker")
        if isinstance(docker, dict):
            docker.pop("enabledSetExplicitly", None)
        if not azure.get("version"):
            azure.pop("version", None)
        environment = Environment._deserialize_and_add_to_object(azure)
        for package in extra_pip:
            dependencies = environment.python.conda_dependencies
            if dependencies is not None:
                dependencies.add_pip_package(package)
        return environment

    @staticmethod
    def _environment_info(environment: Any) -> "EnvironmentInfo":
        from azureml.core import Environment
        from simml.entities import EnvironmentInfo
        definition = Environment._serialize_to_dict(environment)
        return EnvironmentInfo(name=environment.name, version=environment.version,
                               definition=json.loads(json.dumps(definition, default=str)))

    def environment_register(self, name: str, definition: dict[str, Any]) -> "EnvironmentInfo":
        environment = self.sdk_environment({**definition, "name": name, "version": None})
        if environment is None:
            raise UserErrorException("simml's default environment cannot be registered.")
        with self.translate(f"registering environment {name!r}"):
            return self._environment_info(environment.register(self.ws))

    def environment_get(self, name: str, version: str | None) -> "EnvironmentInfo":
        """One version (the latest when None); an unknown name or version is simml's
        ``EnvironmentNotFoundException``, worded as the local backend words it, Azure's error
        as its inner exception."""
        from azureml.core import Environment
        from simml.core.environment import EnvironmentNotFoundException
        try:
            with self.translate(f"reading environment {name}:{version or 'latest'}"):
                return self._environment_info(Environment.get(self.ws, name, version=version))
        except NotFoundException as exc:
            if version is not None:
                try:
                    self.environment_get(name, None)
                except EnvironmentNotFoundException:
                    pass
                else:
                    raise EnvironmentNotFoundException(
                        f"Environment {name!r} has no version {str(version)!r} ({exc.message})",
                        exc.inner_exception) from exc
            raise EnvironmentNotFoundException(
                f"Environment {name!r} is not registered in workspace {self.ws.name!r} "
                f"({exc.message})", exc.inner_exception) from exc

    def environment_list(self) -> list["EnvironmentInfo"]:
        from azureml.core import Environment
        with self.translate("listing environments"):
            found = Environment.list(self.ws)
        return [self._environment_info(found[n]) for n in sorted(found)]

    # --- execution -----------------------------------------------------------------------------
    def _script_run_config(self, run_id: str, definition: dict[str, Any], source: Path,
                           extra_pip: tuple[str, ...]) -> Any:
        """The SDK's ``ScriptRunConfig`` for simml's run definition (target, environment and its
        variables, arguments, data references, limits), its files from ``source``."""
        from azureml.core import ScriptRunConfig
        from azureml.core.runconfig import RunConfiguration
        run_config = RunConfiguration()
        references: dict[str, Any] = {}
        arguments = [self._argument(a, references) for a in definition.get("arguments") or ()]
        for name, config in (definition.get("dataReferences") or {}).items():
            # an estimator's inputs, or a reference inside a string argument
            # ("--data=$AZUREML_DATAREFERENCE_<name>"): Azure sets the variable for each
            if name not in references and isinstance(config, dict):
                references[name] = self._data_reference({"name": name, **config})
        with self.translate(f"preparing run {run_id}"):
            run_config.target = definition.get("target") or "local"
            run_config.environment_variables = dict(definition.get("environmentVariables") or {})
            if definition.get("nodeCount"):
                run_config.node_count = int(definition["nodeCount"])
            if definition.get("maxRunDurationSeconds"):
                run_config.max_run_duration_seconds = int(definition["maxRunDurationSeconds"])
            environment = self.sdk_environment(definition.get("environment"), extra_pip)
            if environment is not None:
                run_config.environment = environment
            for name, reference in references.items():
                run_config.data_references[name] = reference.to_config()
            return ScriptRunConfig(source_directory=str(source), script=definition["script"],
                                   arguments=arguments, run_config=run_config)

    def _add_properties(self, request: "RunCreate") -> "RunInfo":
        """The submitted run as Azure has it, with simml's properties Azure did not set (a run's
        properties cannot change: those already there are left as they are)."""
        info = self.get_run(request.run_id)
        extra = {k: v for k, v in request.properties.items()
                 if k != "ContentSnapshotId" and k not in info.properties}
        if extra:
            self.patch_run(info, properties=extra)
            info = self.get_run(request.run_id)
        return info

    def submit(self, request: "RunCreate", definition: dict[str, Any], source: Path,
               extra_pip: tuple[str, ...] = ()) -> "RunInfo":
        """Submit a script run with the run id simml chose (Azure's ``snapshotrun?runId=``):
        the snapshot is taken from ``source``, a private copy of the client's files."""
        experiment = self._experiment(request.experiment_name)
        config = self._script_run_config(request.run_id, definition, source, extra_pip)
        with self.translate(f"submitting run {request.run_id}"):
            run = experiment.submit(config, tags=dict(request.tags) or None,
                                    run_id=request.run_id)
        with self._lock:
            self._runs[request.run_id] = run
        return self._add_properties(request)

    def submit_sweep(self, request: "RunCreate", definition: dict[str, Any], source: Path,
                     extra_pip: tuple[str, ...] = ()) -> "RunInfo":
        """Submit simml's sweep to Azure's HyperDrive service as the SDK's ``HyperDriveConfig``
        (sampling, parameter expressions, policy, primary metric and goal, budgets) over the
        child's ``ScriptRunConfig``, with the parent id simml chose (``custom_run_id``). Azure
        samples, runs and stops the trials from here on."""
        from azureml.train.hyperdrive import HyperDriveConfig, PrimaryMetricGoal
        sweep = definition["hyperdrive"]
        generator = sweep["generator"]
        child = dict(definition["child"])
        # simml's sampled value replaces the child's own after the same option; Azure appends
        # it to a ScriptRunConfig's arguments, so the child's own is left out
        child["arguments"] = without_options(child.get("arguments") or [],
                                             generator.get("parameter_space") or {})
        config = self._script_run_config(request.run_id, child, source, extra_pip)
        goal = str(sweep.get("primaryMetricGoal", "maximize")).upper()
        with self.translate(f"preparing sweep {request.run_id}"):
            hyperdrive = HyperDriveConfig(
                run_config=config, hyperparameter_sampling=sdk_sampling(generator),
                policy=sdk_policy(sweep.get("policy")),
                primary_metric_name=sweep["primaryMetricName"],
                primary_metric_goal=PrimaryMetricGoal[goal],
                max_total_runs=int(sweep["maxTotalRuns"]),
                max_concurrent_runs=int(sweep["maxConcurrentRuns"]),
                max_duration_minutes=int(math.ceil(float(sweep["maxDurationMinutes"]))),
                custom_run_id=request.run_id)
        experiment = self._experiment(request.experiment_name)
        with self.translate(f"submitting sweep {request.run_id} to Azure's HyperDrive service"):
            run = experiment.submit(hyperdrive, tags=dict(request.tags) or None)
        with self._lock:
            self._runs[request.run_id] = run
        return self._add_properties(request)

    def _argument(self, value: Any, references: dict[str, Any]) -> Any:
        """A run argument; a data reference becomes ``$AZUREML_DATAREFERENCE_<name>`` with the
        SDK's reference in the run configuration (what Azure mounts or downloads)."""
        if not (isinstance(value, dict) and "dataReference" in value):
            return value
        reference = self._data_reference(value["dataReference"])
        references[reference.data_reference_name] = reference
        return str(reference)

    def _data_reference(self, config: dict[str, Any]) -> Any:
        """The SDK's ``DataReference`` for simml's reference configuration."""
        from azureml.data.data_reference import DataReference
        with self.translate(f"preparing data reference {config.get('name')!r}"):
            return DataReference(datastore=self._datastore(config["dataStoreName"]),
                                 data_reference_name=config.get("name"),
                                 path_on_datastore=config.get("pathOnDataStore"),
                                 mode=str(config.get("mode") or "mount").lower(),
                                 path_on_compute=config.get("pathOnCompute"),
                                 overwrite=bool(config.get("overwrite")))

    def log_text(self, info: "RunInfo") -> tuple[str, str] | None:
        """(name, content) of the run's driver log as Azure shows it now: the job's
        ``user_logs/std_log.txt`` when there is one, else ``azureml-logs/70_driver_log.txt``
        (any ``azureml-logs/70_driver_log*``), else None."""
        run = self._sdk_run(info)
        with self.translate(f"reading the logs of run {info.id}"):
            details = run.get_details()
        logs = details.get("logFiles") or {}
        chosen = None
        candidates = ("user_logs/std_log.txt", "azureml-logs/70_driver_log.txt")
        if info.run_type == HYPERDRIVE_RUN_TYPE:  # the HyperDrive service's log of the sweep
            candidates = ("azureml-logs/hyperdrive.txt", *candidates)
        for candidate in candidates:
            if candidate in logs:
                chosen = candidate
                break
        if chosen is None:
            drivers = sorted(n for n in logs if n.startswith("azureml-logs/70_driver_log"))
            chosen = drivers[0] if drivers else None
        if chosen is None:
            return None
        import requests
        with self.translate(f"reading {chosen} of run {info.id}"):
            response = requests.get(logs[chosen], timeout=60)
            response.raise_for_status()
        return chosen, response.content.decode("utf-8", errors="replace")

    def upload_wheel(self, wheel: Path) -> str:
        """The workspace URL of a private wheel, uploaded once per file name."""
        from azureml.core import Environment
        with self.translate(f"uploading {wheel.name} to the workspace"):
            return Environment.add_private_pip_wheel(self.ws, str(wheel), exist_ok=True)

    def cancel(self, info: "RunInfo") -> bool:
        """The SDK's ``cancel()``; a sweep's goes to the HyperDrive service, which cancels its
        active trials and samples no more."""
        run = self._sdk_run(info)
        if info.run_type == HYPERDRIVE_RUN_TYPE and not hasattr(run, "hyperdrive_config"):
            from azureml.train.hyperdrive import HyperDriveRun
            with self.translate(f"opening sweep {info.id}"):
                run = HyperDriveRun(self._experiment(info.experiment_name), info.id)
            with self._lock:
                self._runs[info.id] = run
        with self.translate(f"canceling run {info.id}"):
            run.cancel()
        return True


def job_context_run() -> Any:
    """``Run.get_context()`` inside a job this backend submitted, on Azure: the SDK's run of the
    job (from Azure's ``AZUREML_*`` variables and run token), so a script written against
    ``simml.core.run`` logs to Azure unchanged."""
    from azureml.core import Run
    return Run.get_context(allow_offline=False)

def temporary_file(prefix: str) -> Path:
    handle, path = tempfile.mkstemp(prefix=prefix)
    os.close(handle)
    return Path(path)
