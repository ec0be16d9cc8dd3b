"""HyperDrive routes of the emulator: the real client's ``experiment.submit(HyperDriveConfig(...))``
runs as a simml sweep.

The client (``azureml.train.hyperdrive._search.search``) uploads the snapshot, then posts its
``CreateExperimentDto`` as a multipart ``config`` file to ``{hyperdrive}/hyperdrive/v1.0/
{arm scope of the experiment}/runs`` (the scope URL-encoded into one path segment). Here the DTO
becomes simml's own ``HyperDriveConfig`` (sampling, policy, primary metric and goal, budget) over a
``ScriptRunConfig`` translated from the child definition by the execution module
(``execution._translate``: environment, target, arguments), and is submitted through
``HyperDriveConfig._submit_to`` with the parent id this service answers (``platform_config
["ParentRunId"]``). simml's sweep engine (``simml_local.sweep``, in the workspace's runner) then
samples, submits the children ``<parent>_<n>``, applies the policy and ends the parent; the client
polls the parent and lists the children through run history like any run.

The children get the execution module's ``AZUREML_*`` variables and run token through the child
definition, minus ``AZUREML_RUN_ID`` (the runner sets each child's own), so the real SDK's
``Run.get_context()`` in a trial logs to its child run. The token is scoped to the parent and, like
every run token, valid for the workspace.

Run DTOs of a sweep parent are decorated (``run_dto_hooks``) with what the client reads from
Azure's: the ``_aml_system_*`` tags (the settings ``HyperDriveRun`` rehydrates from, and one tag
per child holding its hyperparameters, which ``get_hyperparameters()`` reads) and the parent's log
as ``azureml-logs/hyperdrive.txt`` (the name ``wait_for_completion(show_output=True)`` streams).
Errors answer the HyperDrive service's ``{"code": <status>, "message": ...}`` beside Azure's usual
``error`` object, so the client raises its ``TrainingException`` with the message.
"""

from __future__ import annotations

import json
import math
import re
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any, Callable

from simml.emulator.protocol import ARM_SCOPE, AzureError, bad_request, not_found, released
from simml.emulator.service import Request, Response, _iso

if TYPE_CHECKING:
    from simml.emulator.service import Emulator
    from simml.entities import RunInfo

HYPERDRIVE = "/hyperdrive/v1.0"
PLATFORM = "AML"
SYSTEM_TAG = "_aml_system_"
HYPERDRIVE_LOG = "azureml-logs/hyperdrive.txt"
DRIVER_LOG = "azureml-logs/70_driver_log.txt"
LIMITS = {"max_total_jobs": (1, 1000), "max_concurrent_jobs": (1, 100),
          "max_duration_minutes": (1, 43200)}
"""The ranges of the client's ``CreateExperimentDto`` (the service's own validation)."""
_EXPERIMENT_SCOPE = re.compile(
    r"^/?subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)/experiments/(?P<exp>[^/]+)/?$",
    re.IGNORECASE)


def register(emulator: "Emulator") -> None:
    """Add the HyperDrive routes to ``emulator`` (``Emulator._register`` calls this)."""
    HyperDrive(emulator).register()


class HyperDrive:
    """The HyperDrive service of one emulator (no state of its own: sweeps live in simml)."""

    def __init__(self, emulator: "Emulator") -> None:
        from simml.emulator.execution import Execution
        self.emulator = emulator
        self.workspace = emulator.workspace
        self.execution = Execution(emulator)  # its job variables and snapshot lookup, no routes

    def register(self) -> None:
        add = self.emulator.router.add
        # The client URL-encodes the experiment's ARM scope into one segment ({scope}); the
        # plain form is served too.
        for scope in ("/{scope}", ARM_SCOPE + "/experiments/{exp}"):
            base = HYPERDRIVE + scope
            add("POST", base + "/runs", self._service(self.create))
            add("POST", base + "/hdruns/{run}", self._service(self.create_with_id))
            add("POST", base + "/runs/{run}", self._service(self.create_under_parent))
            add("POST", base + "/runs/{run}/cancel", self._service(self.cancel))
        self.emulator.run_dto_hooks.append(self.decorate)

    # --- routes ----------------------------------------------------------------------------------
    def create(self, req: Request) -> Response:
        """``RestClient.create_experiment``: a new sweep, its parent id chosen here."""
        return self._create(req, None)

    def create_with_id(self, req: Request) -> Response:
        """``create_experiment_with_custom_run_id`` (``HyperDriveConfig(custom_run_id=...)``)."""
        return self._create(req, req.params["run"])

    def create_under_parent(self, req: Request) -> None:
        raise bad_request("A HyperDrive run under a parent run (a pipeline step) is not "
                          "supported by the emulator: submit the HyperDriveConfig to an "
                          "experiment.", inner="NotSupported")

    def cancel(self, req: Request) -> dict[str, Any]:
        """``HyperDriveRun.cancel()``: simml's sweep cancel (every active trial is canceled,
        nothing more is sampled, the parent ends Canceled)."""
        from simml.entities import HYPERDRIVE_RUN_TYPE
        from simml.train.hyperdrive.run import HyperDriveRun
        experiment = self._experiment_name(req)
        run_id = req.params["run"]
        info = self.emulator._run_info(run_id)
        if info.run_type != HYPERDRIVE_RUN_TYPE or info.experiment_name != experiment:
            raise not_found(f"HyperDrive run {run_id} was not found in experiment "
                            f"{experiment}.", inner="RunNotFound")
        if info.status in ("Completed", "Failed", "Canceled"):
            raise AzureError(409, "UserError", f"HyperDrive run {run_id} is already "
                             f"{info.status}; only an active run can be canceled.",
                             inner="RunTerminal")
        HyperDriveRun._from_id(self.workspace, run_id).cancel()
        return {"code": 200, "result": f"Cancellation requested for {run_id}."}

    # --- submission ------------------------------------------------------------------------------
    def _create(self, req: Request, run_id: str | None) -> Response:
        from simml.core.experiment import Experiment, validate_experiment_name
        from simml.core.script_run_config import DEFAULT_MAX_RUN_DURATION_SECONDS
        from simml.emulator.execution import _translate
        from simml.exceptions import (
            ComputeTargetException,
            RunConfigurationException,
            SnapshotException,
        )
        from simml.ids import IdFactory
        experiment_name = self._experiment_name(req)
        validate_experiment_name(experiment_name)
        dto = _dto(req)
        settings = sweep_settings(dto, experiment_name)  # refused before anything is written
        configuration, snapshot_id = settings.pop("configuration"), settings.pop("snapshot_id")
        _translate(self.workspace, configuration, {})
        if run_id is None:
            run_id = f"HD_{IdFactory.from_environment().uuid4()}"
        else:
            from simml.core.submission import _check_new_run_id
            _check_new_run_id(self.workspace._history(), run_id)
        # The snapshot's files are copied twice (materialised, then into simml's snapshot):
        # other requests run meanwhile, as in execution.py. The store refuses a taken run id.
        with released(self.emulator._lock):
            source = self.execution._source(snapshot_id)
            script = str(configuration.get("script"))
            parts = script.replace("\\", "/").split("/")
            if script.startswith("/") or ".." in parts or not (source / script).is_file():
                raise bad_request(f"The script {script!r} is not in snapshot {snapshot_id}.",
                                  inner="ScriptNotFound")
            experiment = Experiment(self.workspace, experiment_name)
            child_seconds = configuration.get("maxRunDurationSeconds")
            seconds = (child_seconds if isinstance(child_seconds, int) and child_seconds > 0
                       else DEFAULT_MAX_RUN_DURATION_SECONDS)
            seconds += int(math.ceil(settings["max_duration_minutes"] * 60))
            variables = self.execution.job_variables(experiment, run_id, req.base_url, seconds)
            variables.pop("AZUREML_RUN_ID")  # each child's own, set by the runner
            child = _translate(self.workspace, configuration, variables, source=source)
            config = build_config(settings, child)
            try:
                run = config._submit_to(experiment, run_id=run_id, submitted_by="simml emulator",
                                        properties={"ContentSnapshotId": snapshot_id,
                                                    "platform": PLATFORM})
            except ComputeTargetException as exc:
                raise AzureError(404, "UserError", str(exc), inner="ComputeNotFound") from exc
            except (RunConfigurationException, SnapshotException) as exc:
                raise bad_request(str(exc)) from exc
        return Response(201, {"code": 201, "result": self._experiment_dto(
            req, dto, run.id, experiment_name)})

    def _experiment_dto(self, req: Request, dto: dict[str, Any], run_id: str,
                        experiment_name: str) -> dict[str, Any]:
        """The client's ``ExperimentDto``: it reads ``platform_config["ParentRunId"]``."""
        now = _iso(self.workspace.clock.now())
        platform_config = {k: v for k, v in (dto.get("platform_config") or {}).items()
                           if k != "Definition"}
        platform_config.update({"ParentRunId": run_id, "ServiceAddress": req.base_url})
        return {
            "all_jobs_generated": False, "cancellation_requested": False,
            "created": now, "modified": now, "created_by_user_id": 0,
            "description": dto.get("description"), "experiment_id": run_id,
            "experiment_uri": None, "generator_config": dto.get("generator_config"),
            "max_concurrent_jobs": dto.get("max_concurrent_jobs"),
            "max_duration_minutes": dto.get("max_duration_minutes"),
            "max_total_jobs": dto.get("max_total_jobs"), "name": experiment_name,
            "platform": PLATFORM, "platform_config": platform_config,
            "policy_config": dto.get("policy_config"),
            "primary_metric_config": dto.get("primary_metric_config"),
            "status": "Running", "study_id": None, "study_uri": None,
            "hyperdrive_run_id": run_id,
        }

    def _experiment_name(self, req: Request) -> str:
        """The experiment of the request's ARM scope, which must be this workspace's."""
        if "exp" in req.params:
            return req.params["exp"]  # the plain form: the server checked the workspace
        found = _EXPERIMENT_SCOPE.match(req.params["scope"])
        if found is None:
            raise bad_request(f"Invalid HyperDrive scope {req.params['scope']!r}: expected "
                              "subscriptions/{sub}/resourceGroups/{rg}/providers/"
                              "Microsoft.MachineLearningServices/workspaces/{ws}/experiments/"
                              "{experiment}.", inner="InvalidScope")
        self.emulator.check_scope(found.groupdict())
        return found.group("exp")

    # --- run DTOs of a sweep parent -------------------------------------------------------------
    def decorate(self, info: "RunInfo", dto: dict[str, Any]) -> None:
        """Azure's ``_aml_system_*`` tags (settings and each child's hyperparameters) and the
        sweep's log under the name the client streams."""
        from simml.entities import HYPERDRIVE_RUN_TYPE, RunQuery
        if info.run_type != HYPERDRIVE_RUN_TYPE:
            return
        logs = dto.get("logFiles")
        if isinstance(logs, dict) and DRIVER_LOG in logs:
            logs.setdefault(HYPERDRIVE_LOG, logs[DRIVER_LOG])
        sweep = (info.definition or {}).get("hyperdrive")
        tags = dto.setdefault("tags", {})
        if not isinstance(sweep, dict) or SYSTEM_TAG + "generator_config" in tags:
            return  # not a sweep's definition, or decorated already (run details: 2nd call)
        system = system_tags(info, sweep)
        children = self.workspace._history().query_runs(
            RunQuery(parent_id=info.id, include_children=True))
        for child in children:
            parameters = child.properties.get("hyperparameters")
            if parameters is not None:
                system[child.id] = parameters
        for key, value in system.items():
            tags.setdefault(SYSTEM_TAG + key, value)

    # --- errors ----------------------------------------------------------------------------------
    def _service(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """The HyperDrive service's error shape (``ErrorResponse``: an int ``code`` and a
        ``message``) beside Azure's ``error`` object."""
        def wrapped(req: Request) -> Any:
            try:
                return handler(req)
            except AzureError as exc:
                return _error_response(exc)
            except Exception as exc:  # noqa: BLE001 - simml's typed errors, mapped as call() does
                mapped = _map_exception(exc)
                if mapped is None:
                    raise
                return _error_response(mapped)
        wrapped.__name__ = getattr(handler, "__name__", "hyperdrive")
        return wrapped


# --- the DTO -------------------------------------------------------------------------------------

def _dto(req: Request) -> dict[str, Any]:
    """The ``CreateExperimentDto``: the multipart ``config`` file the client posts (a JSON body is
    accepted too)."""
    ctype = (req.headers.get("Content-Type") or "").lower()
    raw: bytes | None = req.body
    if ctype.startswith("multipart/form-data"):
        raw = _multipart_part(req, "config")
        if raw is None:
            raise bad_request("The request needs a multipart part named 'config' (the "
                              "CreateExperimentDto).")
    try:
        dto = json.loads(raw or b"")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"The HyperDrive configuration is not valid JSON: {exc}.",
                          inner="InvalidJson") from exc
    if not isinstance(dto, dict):
        raise bad_request("The HyperDrive configuration must be a JSON object.",
                          inner="InvalidJson")
    return dto


def _multipart_part(req: Request, name: str) -> bytes | None:
    ctype = req.headers.get("Content-Type") or ""
    if "boundary=" not in ctype:
        raise bad_request("The multipart/form-data body has no boundary.")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + req.body)
    if not message.is_multipart():
        raise bad_request("The multipart body could not be read.")
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == name:
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else None
    return None


def sweep_settings(dto: dict[str, Any], experiment_name: str) -> dict[str, Any]:
    """The sweep a ``CreateExperimentDto`` asks for, checked as the service does (ranges, required
    fields, what the emulator cannot run) and through simml's own sampling and policy classes.
    Pure: raises ``AzureError`` / ``HyperDriveConfigException``, writes nothing."""
    from simml.train.hyperdrive.policy import from_json as policy_from_json
    from simml.train.hyperdrive.sampling import from_json as sampling_from_json
    for key in ("generator_config", "policy_config", "primary_metric_config", "platform_config",
                "max_total_jobs"):
        if dto.get(key) is None:
            raise bad_request(f"{key} is required.")
    name = dto.get("name")
    if name is not None and name != experiment_name:
        raise bad_request(f"name {name!r} must be the experiment of the URL "
                          f"({experiment_name}).")
    platform = dto.get("platform") or PLATFORM
    if platform != PLATFORM:
        raise bad_request(f"platform {platform!r} is not supported by the emulator (only "
                          f"{PLATFORM}: sweeping a pipeline is not).", inner="NotSupported")
    for key in ("resume_from", "resume_child_runs"):
        if dto.get(key):
            raise bad_request(f"{key} (warm start) is not supported by the emulator.",
                              inner="NotSupported")
    numbers: dict[str, Any] = {}
    for key, (low, high) in LIMITS.items():
        value = dto.get(key)
        if value is None and key != "max_total_jobs":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not low <= value <= high or (key != "max_duration_minutes" and
                                             not float(value).is_integer()):
            raise bad_request(f"{key} must be a number from {low} to {high}, not {value!r}.")
        numbers[key] = value
    generator = dto["generator_config"]
    policy = dto["policy_config"]
    metric = dto["primary_metric_config"]
    if not isinstance(generator, dict) or not isinstance(generator.get("parameter_space"), dict):
        raise bad_request("generator_config needs a name and a parameter_space object.")
    if not isinstance(policy, dict) or not isinstance(policy.get("name"), str):
        raise bad_request("policy_config needs a name.")
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or \
            not metric["name"] or str(metric.get("goal", "")).lower() not in ("maximize",
                                                                               "minimize"):
        raise bad_request("primary_metric_config needs a name and a goal (maximize or "
                          "minimize).")
    platform_config = dto["platform_config"]
    definition = platform_config.get("Definition") if isinstance(platform_config, dict) else None
    if not isinstance(definition, dict) or not isinstance(definition.get("Overrides"), dict):
        raise bad_request("platform_config.Definition.Overrides (the child run's configuration) "
                          "is required.")
    snapshot_id = definition.get("SnapshotId")
    if not isinstance(snapshot_id, str) or not snapshot_id:
        raise bad_request("platform_config.Definition names no snapshot (SnapshotId): the "
                          "emulator runs trials from the snapshot the client uploaded.",
                          inner="SnapshotNotFound")
    if definition.get("ParentRunId"):
        raise bad_request("A child definition with a ParentRunId is not supported.",
                          inner="NotSupported")
    from simml.train.hyperdrive.exceptions import HyperDriveConfigException
    try:
        sampling = sampling_from_json(_generator(generator))
    except HyperDriveConfigException as exc:
        raise bad_request(f"Invalid generator_config: {exc}", inner="InvalidParameterSpace"
                          ) from exc
    try:
        early_termination = policy_from_json(policy)
    except (HyperDriveConfigException, KeyError, TypeError) as exc:
        raise bad_request(f"Invalid policy_config: {exc}", inner="InvalidPolicy") from exc
    return {
        "sampling": sampling, "policy": early_termination,
        "primary_metric_name": metric["name"], "primary_metric_goal": metric["goal"].upper(),
        "max_total_runs": int(numbers["max_total_jobs"]),
        "max_concurrent_runs": int(numbers["max_concurrent_jobs"])
        if "max_concurrent_jobs" in numbers else None,
        "max_duration_minutes": numbers.get("max_duration_minutes", 10080),
        "configuration": definition["Overrides"], "snapshot_id": snapshot_id,
    }


def _generator(generator: dict[str, Any]) -> dict[str, Any]:
    """The client's generator config in simml's spelling: the sampling name is matched
    case-insensitively, as the client does (``RANDOM``, ``GRID``, ``BayesianOptimization``)."""
    from simml.train.hyperdrive.sampling import SAMPLERS
    name = str(generator.get("name") or "")
    canonical = next((known for known in SAMPLERS if known.lower() == name.lower()), name)
    return {**generator, "name": canonical}


def build_config(settings: dict[str, Any], child: Any) -> Any:
    """simml's ``HyperDriveConfig`` for checked ``settings`` and the child ``ScriptRunConfig``."""
    from simml.train.hyperdrive.runconfig import HyperDriveConfig
    return HyperDriveConfig(
        settings["sampling"], settings["primary_metric_name"], settings["primary_metric_goal"],
        settings["max_total_runs"], max_concurrent_runs=settings["max_concurrent_runs"],
        max_duration_minutes=settings["max_duration_minutes"], policy=settings["policy"],
        run_config=child)


def system_tags(info: "RunInfo", sweep: dict[str, Any]) -> dict[str, str]:
    """The settings Azure keeps in a sweep parent's tags (``HyperDriveConfig.
    _get_runconfig_from_run_dto`` reads them back), from simml's sweep definition."""
    minutes = sweep.get("maxDurationMinutes", 10080)
    return {
        "generator_config": json.dumps(sweep.get("generator") or {}),
        "primary_metric_config": json.dumps({"name": sweep.get("primaryMetricName"),
                                             "goal": sweep.get("primaryMetricGoal", "maximize")}),
        "policy_config": json.dumps(sweep.get("policy") or {"name": "Default"}),
        "max_total_jobs": str(sweep.get("maxTotalRuns")),
        "max_concurrent_jobs": str(sweep.get("maxConcurrentRuns")),
        "max_duration_minutes": str(int(math.ceil(float(minutes)))),
        "platform_config": json.dumps({"ExperimentName": info.experiment_name,
                                       "ParentRunId": info.id}),
    }


# --- errors --------------------------------------------------------------------------------------

def _error_response(exc: AzureError) -> Response:
    return Response(exc.status, {**exc.payload(), "code": exc.status, "message": exc.message})


def _map_exception(exc: Exception) -> AzureError | None:
    """simml's typed errors as ``Emulator.call`` maps them (the handler answers them itself, in
    the HyperDrive shape); None for anything else (a bug: the server's 500)."""
    from simml.exceptions import (
        AzureMLException,
        ComputeTargetException,
        InvalidValueException,
        NotFoundException,
        UserErrorException,
    )
    if isinstance(exc, (NotFoundException, LookupError)):
        return not_found(str(exc))
    if isinstance(exc, ComputeTargetException):
        return AzureError(404, "UserError", str(exc), inner="ComputeNotFound")
    if isinstance(exc, (InvalidValueException, UserErrorException, ValueError)):
        return bad_request(str(exc))
    if isinstance(exc, AzureMLException):
        return AzureError(500, "SystemError", str(exc), inner="ServiceError")
    return None


__all__ = ["HyperDrive", "build_config", "register", "sweep_settings", "system_tags"]
