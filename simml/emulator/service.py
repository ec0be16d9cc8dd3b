"""The emulator's routes: a thin adapter from Azure ML v1 REST onto simml's API.

Every route goes through simml's objects (``Workspace``, ``Experiment``, ``Run``,
``ComputeTarget``) or the backend facade (``Workspace._backend``), never through the store's
files, so a run created by the real client shows in ``simml run list`` and the reverse. Response
bodies use the field names of the client's DTOs (``azureml._restclient.models``); only what the
client reads is filled in.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs

from simml.emulator.protocol import ARM_SCOPE, AzureError, Router, bad_request, not_found
from simml.exceptions import (
    AzureMLException,
    ComputeTargetException,
    InvalidTransition,
    InvalidValueException,
    NotFoundException,
    UserErrorException,
)

if TYPE_CHECKING:
    from simml.core.workspace import Workspace
    from simml.entities import RunInfo

COMPUTE_API = "2020-02-02"
EVENT_PREFIX = "Microsoft.MachineLearning.Run."


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    base_url: str = ""

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(f"The request body is not valid JSON: {exc}.",
                              inner="InvalidJson") from exc

    def json_object(self) -> dict[str, Any]:
        doc = self.json()
        if not isinstance(doc, dict):
            raise bad_request("The request body must be a JSON object.", inner="InvalidJson")
        return doc

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON; bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _iso(datetime.now(timezone.utc)) or ""


class Emulator:
    """The routes of one served workspace (``simml serve --workspace``)."""

    def __init__(self, workspace: "Workspace") -> None:
        self.workspace = workspace
        self.router = Router()
        self._lock = threading.RLock()  # one writer at a time through simml's objects
        self._pending_errors: dict[str, dict[str, Any]] = {}
        self.key = ""  # the signing key, set by the server (signed URLs, run tokens)
        # called with (request, body) before a run PATCH is applied (execution.py: localrun)
        self.run_patch_hooks: list[Callable[[Request, dict[str, Any]], None]] = []
        # called with (run info, DTO) on every run DTO, and again on run details once their
        # logFiles are in (hyperdrive.py: a sweep parent's tags and log name); idempotent
        self.run_dto_hooks: list[Callable[["RunInfo", dict[str, Any]], None]] = []
        self._register()

    # --- routing table ---------------------------------------------------------------------------
    def _register(self) -> None:
        ws = ARM_SCOPE
        add = self.router.add
        add("GET", ws, self.arm_workspace)
        add("GET", "/discovery", self.discovery, public=True)
        # compute (ARM: PUT/DELETE on the ARM path, GET on the regional /rp path)
        for prefix in ("", "/rp/workspaces"):
            add("GET", prefix + ws + "/computes/{name}", self.compute_get)
            add("GET", prefix + ws + "/computes", self.compute_list)
            add("PUT", prefix + ws + "/computes/{name}", self.compute_put)
            add("DELETE", prefix + ws + "/computes/{name}", self.compute_delete)
        add("GET", "/operations/{operation}", self.operation)
        # run history
        history = "/history/v1.0" + ws
        add("GET", history + "/experiments/{exp}", self.experiment_get)
        add("POST", history + "/experiments/{exp}", self.experiment_create)
        add("GET", history + "/experimentids/{expid}", self.experiment_get_by_id)
        for runs in (history + "/experiments/{exp}/runs/{run}",
                     history + "/experimentids/{expid}/runs/{run}"):
            add("GET", runs, self.run_get)
            add("PATCH", runs, self.run_patch)
            add("GET", runs + "/details", self.run_details)
            add("POST", runs + "/events", self.run_event)
            add("GET", runs + "/children", self.run_children)
            add("GET", runs + "/metricsingest/wait", self.metrics_wait)
        add("GET", history + "/runs/{run}", self.run_get)
        # metrics v2
        metric = "/metric/v2.0" + ws + "/runs/{run}"
        add("POST", metric + "/batch", self.metrics_batch)
        add("POST", metric + "/list", self.metrics_list)
        add("POST", metric + "/full", self.metrics_full)
        __import__("simml.emulator.models", fromlist=["register"]).register(self)  # MMS
        __import__("simml.emulator.artifacts", fromlist=["register"]).register(self)  # files
        __import__("simml.emulator.execution", fromlist=["register"]).register(self)  # jobs
        __import__("simml.emulator.blobs", fromlist=["register"]).register(self)  # datastores
        __import__("simml.emulator.ambient", fromlist=["register"]).register(self)  # MSI, ARM
        __import__("simml.emulator.hyperdrive", fromlist=["register"]).register(self)  # sweeps
        __import__("simml.emulator.history", fromlist=["register"]).register(self)  # queries
        __import__("simml.emulator.compute", fromlist=["register"]).register(self)  # update, nodes
        __import__("simml.emulator.environments", fromlist=["register"]).register(self)  # envs

    def check_scope(self, params: dict[str, str]) -> None:
        info = self.workspace._info
        if "ws" not in params:
            return
        if (params["sub"].lower(), params["rg"].lower(), params["ws"].lower()) != (
                info.subscription_id.lower(), info.resource_group.lower(), info.name.lower()):
            raise AzureError(404, "ResourceNotFound",
                             f"Workspace {params['sub']}/{params['rg']}/{params['ws']} is not "
                             f"served here (this emulator serves {info.subscription_id}/"
                             f"{info.resource_group}/{info.name}).", inner="WorkspaceNotFound")

    def call(self, handler: Callable[[Request], Any], request: Request) -> Response:
        """Run a handler, mapping simml's typed errors onto Azure's error payloads."""
        try:
            with self._lock:
                result = handler(request)
        except AzureError:
            raise
        except (NotFoundException, LookupError) as exc:
            raise not_found(str(exc)) from exc
        except ComputeTargetException as exc:
            raise AzureError(400, "UserError", str(exc), inner="BadArgument") from exc
        except InvalidTransition as exc:
            raise AzureError(409, "UserError", str(exc), inner="InvalidStatusTransition") from exc
        except (InvalidValueException, UserErrorException, ValueError) as exc:
            raise bad_request(str(exc)) from exc
        except AzureMLException as exc:
            raise AzureError(500, "SystemError", str(exc), inner="ServiceError") from exc
        return result if isinstance(result, Response) else Response(200, result)

    # --- ARM and discovery -----------------------------------------------------------------------
    def arm_workspace(self, req: Request) -> dict[str, Any]:
        info = self.workspace._info
        scope = ARM_SCOPE.format(sub=info.subscription_id, rg=info.resource_group, ws=info.name)
        storage = (f"/subscriptions/{info.subscription_id}/resourceGroups/{info.resource_group}"
                   "/providers/Microsoft.Storage/storageAccounts/simmlstorage")
        return {
            "id": scope, "name": info.name, "type": "Microsoft.MachineLearningServices/workspaces",
            "location": info.location, "tags": {}, "sku": {"name": "Basic", "tier": "Basic"},
            "identity": {"type": "SystemAssigned",
                         "principalId": "00000000-0000-0000-0000-000000000001",
                         "tenantId": "00000000-0000-0000-0000-000000000000"},
            "properties": {
                "workspaceId": info.workspace_id, "friendlyName": info.name,
                "description": "simml emulator workspace",
                "creationTime": _iso(info.created_time), "provisioningState": "Succeeded",
                "storageAccount": storage, "keyVault": scope + "/keyvault",
                "applicationInsights": scope + "/appinsights", "containerRegistry": None,
                "discoveryUrl": req.base_url + "/discovery", "hbiWorkspace": False,
                "v1LegacyMode": True,
            },
        }

    def discovery(self, req: Request) -> dict[str, Any]:
        base = req.base_url
        return {key: base for key in ("api", "catalog", "experimentation", "history",
                                      "hyperdrive", "labeling", "modelmanagement", "pipelines",
                                      "gallery", "instance")} | {"studio": base + "/studio"}

    # --- experiments -----------------------------------------------------------------------------
    def _experiment_dto(self, info: Any) -> dict[str, Any]:
        return {"experimentId": info.id, "name": info.name, "description": None,
                "createdUtc": _iso(info.created_time), "archivedTime": _iso(info.archived_time),
                "tags": dict(info.tags)}

    def experiment_get(self, req: Request) -> dict[str, Any]:
        store = self.workspace._history()
        try:
            info = store.get_experiment(req.params["exp"])
        except NotFoundException as exc:
            raise not_found(f"Experiment {req.params['exp']} not found.",
                            inner="ExperimentNotFound") from exc
        return self._experiment_dto(info)

    def experiment_create(self, req: Request) -> dict[str, Any]:
        from simml.core.experiment import Experiment
        experiment = Experiment(self.workspace, req.params["exp"])
        return self._experiment_dto(experiment._info)

    def _experiment_by_id(self, experiment_id: str) -> Any:
        for info in self.workspace._history().list_experiments(include_archived=True):
            if info.id == experiment_id:
                return info
        raise not_found(f"Experiment id {experiment_id} not found.", inner="ExperimentNotFound")

    def experiment_get_by_id(self, req: Request) -> dict[str, Any]:
        return self._experiment_dto(self._experiment_by_id(req.params["expid"]))

    def _experiment_name(self, req: Request) -> str:
        if "exp" in req.params:
            return req.params["exp"]
        return self._experiment_by_id(req.params["expid"]).name

    # --- runs ------------------------------------------------------------------------------------
    def _run_info(self, run_id: str) -> "RunInfo":
        try:
            return self.workspace._history().get_run(run_id)
        except NotFoundException as exc:
            raise not_found(f"Run {run_id} was not found.", inner="RunNotFound") from exc

    def _run(self, run_id: str) -> Any:
        from simml.core.run import Run
        self._run_info(run_id)
        return Run._from_id(self.workspace, run_id)

    def run_dto(self, info: "RunInfo") -> dict[str, Any]:
        root = info.id
        if info.parent_id:
            root = info.properties.get("azureml.rootRunId") or info.parent_id
        dto: dict[str, Any] = {
            "runId": info.id, "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, info.id)),
            "parentRunId": info.parent_id, "rootRunId": root,
            "experimentId": info.experiment_id, "runNumber": info.number,
            "status": info.status, "createdUtc": _iso(info.created_time),
            "startTimeUtc": _iso(info.start_time), "endTimeUtc": _iso(info.end_time),
            "name": info.display_name, "displayName": info.display_name,
            "dataContainerId": f"dcid.{info.id}", "hidden": False,
            "runType": info.run_type, "target": info.target, "tags": dict(info.tags),
            "properties": dict(info.properties),
            "runDefinition": public_definition(info.definition),
            "createdBy": {"userName": info.submitted_by or "simml", "userObjectId":
                          "00000000-0000-0000-0000-000000000001"},
            "userId": "00000000-0000-0000-0000-000000000001",
        }
        if info.error is not None:
            dto["error"] = info.error if "error" in info.error else {"error": info.error}
        for hook in self.run_dto_hooks:
            hook(info, dto)
        return dto

    def run_get(self, req: Request) -> dict[str, Any]:
        return self.run_dto(self._run_info(req.params["run"]))

    def run_patch(self, req: Request) -> dict[str, Any]:
        """Create the run when it is new (``start_logging``, ``child_run``, submit), else update
        its tags, properties and display name."""
        from simml.core.experiment import Experiment
        from simml.entities import RunCreate
        body = req.json_object()
        run_id = req.params["run"]
        if body.get("runId") not in (None, run_id):
            raise bad_request(f"runId {body.get('runId')!r} does not match the path ({run_id}).")
        for hook in self.run_patch_hooks:
            hook(req, body)
        store = self.workspace._history()
        try:
            info = store.get_run(run_id)
        except NotFoundException:
            experiment = Experiment(self.workspace, self._experiment_name(req))
            run_type = (body.get("runType") or (body.get("runTypeV2") or {}).get("orchestrator")
                        or "azureml.scriptrun")
            if run_type == "External":
                run_type = "azureml.scriptrun"
            info = store.create_run(RunCreate(
                run_id=run_id, experiment_name=experiment.name, run_type=run_type,
                status="NotStarted", parent_id=body.get("parentRunId"),
                display_name=body.get("displayName") or body.get("name"),
                target=body.get("target") or "local",
                created_time=self.workspace.clock.now(),
                tags=_strings(body.get("tags")), properties=_strings(body.get("properties")),
                submitted_by="simml emulator"))
            return self.run_dto(info)
        if body.get("tags"):
            store.set_tags(run_id, _strings(body["tags"]))
        if body.get("properties"):
            store.add_properties(run_id, _strings(body["properties"]))
        if body.get("displayName") or body.get("name"):
            store.update_run(run_id, display_name=body.get("displayName") or body.get("name"))
        return self.run_dto(store.get_run(run_id))

    def run_details(self, req: Request) -> dict[str, Any]:
        info = self._run_info(req.params["run"])
        details = self.run_dto(info)
        details.update({"inputDatasets": [], "outputDatasets": [],
                        "logFiles": self.artifact_routes.log_files(req, info),
                        "services": {}, "warnings": []})
        for hook in self.run_dto_hooks:
            hook(info, details)
        return details

    def run_event(self, req: Request) -> dict[str, Any]:
        """Status events (``Microsoft.MachineLearning.Run.Start`` ...) through simml's state
        machine; ``Run.Error`` keeps the error for the ``Run.Failed`` that follows."""
        from simml.runstate import CancelRequested, Canceled, Completed, Failed, Started
        body = req.json_object()
        name = str(body.get("name") or "")
        if not name.startswith(EVENT_PREFIX):
            raise bad_request(f"Unknown run event {name!r}.", inner="UnknownEvent")
        kind = name[len(EVENT_PREFIX):]
        run_id = req.params["run"]
        run = self._run(run_id)
        data = body.get("data") or {}
        if kind == "Error":
            response = data.get("ErrorResponse") or {}
            self._pending_errors[run_id] = response.get("error") or response or {
                "code": "UserError", "message": "error"}
        elif kind == "Start":
            run._apply(Started())
        elif kind == "Completed":
            run._apply(Completed())
        elif kind == "Failed":
            error = self._pending_errors.pop(run_id, None) or {"code": "UserError",
                                                               "message": "The run failed."}
            run._apply(Failed(error), error={"error": error})
        elif kind in ("CancelRequested", "Canceled"):
            # CancelRequested then Canceled (the plug-in, an SDK job) or Canceled alone (the
            # SDK's Run.cancel()): a request already recorded is not applied again
            info = self._run_info(run_id)
            if info.definition is not None:
                if info.status != "CancelRequested":
                    run.cancel()  # a submitted run: simml's runner stops it, records Canceled
            else:
                if info.status != "CancelRequested":
                    run._apply(CancelRequested())
                if kind == "Canceled":
                    run._apply(Canceled())
        else:
            raise bad_request(f"Unknown run event {name!r}.", inner="UnknownEvent")
        return self.run_dto(self._run_info(run_id))

    def run_children(self, req: Request) -> dict[str, Any]:
        from simml.entities import RunQuery
        parent = self._run_info(req.params["run"])
        children = self.workspace._history().query_runs(
            RunQuery(parent_id=parent.id, include_children=True))
        return {"value": [self.run_dto(c) for c in reversed(children)],
                "continuationToken": None, "nextLink": None}

    def metrics_wait(self, req: Request) -> Response:
        self._run_info(req.params["run"])
        return Response(200, {})

    # --- metrics v2 ------------------------------------------------------------------------------
    def metrics_batch(self, req: Request) -> dict[str, Any]:
        """A batch of metrics v2 through simml's ``Run`` (one flush at the end). Each metric is
        checked before anything is logged, and a batch simml refuses part-way is dropped whole:
        nothing of a refused batch is written."""
        import atexit
        body = req.json_object()
        values = body.get("values")
        if not isinstance(values, list):
            raise bad_request("A metrics batch needs a 'values' list.")
        run = self._run(req.params["run"])
        batch = []
        for metric in values:
            if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
                raise bad_request("Each metric needs a name.")
            name = metric["name"]
            ux = ((metric.get("properties") or {}).get("uxMetricType") or "azureml.v1.scalar")
            if ux not in _LOGGED_UX:
                raise bad_request(f"Metric {name!r}: type {ux!r} is not supported by the "
                                  "emulator.", inner="NotSupported")
            points = metric.get("value") or ()
            if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
                raise bad_request(f"Metric {name!r}: 'value' must be a list of points.")
            for point in points:
                data = point.get("data") or {}
                if not isinstance(data, dict):
                    raise bad_request(f"Metric {name!r}: a point's 'data' must be an object.")
                if ux in _IMAGE_UX:
                    data = {name: self._image_location(run.id, name, ux, data.get(name))}
                batch.append((name, ux, data, point.get("step")))
        try:
            for name, ux, data, step in batch:
                if ux == "azureml.v1.table":
                    run.log_row(name, **data)
                elif ux == "azureml.v1.list":
                    run.log_list(name, [data.get(name)])
                elif ux == "azureml.v1.scalar":
                    run.log(name, data.get(name), step=step if isinstance(step, int) else None)
                else:  # an image: the client uploaded the file first (log_image)
                    run._pin(name, "image", None)
                    run._append(name, "image", data[name], None)
            run.flush()
        except BaseException:
            run._buffer.clear()  # never flushed later (the exit hook below) either
            raise
        finally:
            atexit.unregister(run.flush)  # the Run registered it; it is done with
        return {"errors": []}

    def _image_location(self, run_id: str, name: str, ux: str, location: Any) -> str:
        """The ``aml://artifactId/ExperimentRun/dcid.<run>/<path>`` of an image metric: the
        client's ``log_image`` uploads the PNG as a run file, then logs this reference, which must
        name a file of this run (``azureml.v1.image``, the old form, may give the path alone)."""
        from simml._paths import safe_relpath
        from simml.exceptions import UnsafePathException
        prefix = "aml://artifactId/"
        container = f"ExperimentRun/dcid.{run_id}/"
        if not isinstance(location, str) or not location.startswith(prefix):
            raise bad_request(f"Image metric {name!r}: the value must be an {prefix}... "
                              f"reference to a file of run {run_id}, not {location!r}.")
        path = location[len(prefix):]
        if path.startswith(container):
            path = path[len(container):]
        elif ux == _IMAGE_UX[0] or path.startswith("ExperimentRun/"):
            raise bad_request(f"Image metric {name!r}: {location!r} is not a file of run "
                              f"{run_id} (expected {prefix}{container}<path>).")
        try:
            path = safe_relpath(path)
        except UnsafePathException as exc:
            raise bad_request(f"Image metric {name!r}: {exc}", inner="UnsafePath") from exc
        if path not in self.workspace._history().list_files(run_id):
            raise bad_request(f"Image metric {name!r}: run {run_id} has no file {path!r} (upload "
                              "the image first, as log_image does).", inner="ArtifactNotFound")
        return prefix + container + path

    def _series(self, run_id: str, name: str | None) -> dict[str, tuple[str, list[Any]]]:
        from simml.core import _metrics
        grouped: dict[str, tuple[str, list[Any]]] = {}
        for series in self.workspace._history().get_metrics(run_id, name):
            kind, values = _metrics.decode_series(series)
            grouped.setdefault(series.name, (kind, []))[1].extend(values)
        return grouped

    def metrics_list(self, req: Request) -> dict[str, Any]:
        run_id = self._run_info(req.params["run"]).id
        return {"value": [{"metricKey": {"namespace": None, "name": name},
                           "columns": {}, "properties": {"uxMetricType": _UX.get(kind)}}
                          for name, (kind, _values) in self._series(run_id, None).items()],
                "continuationToken": None, "nextLink": None}

    def metrics_full(self, req: Request) -> dict[str, Any]:
        run_id = self._run_info(req.params["run"]).id
        name = req.json_object().get("metricName")
        if not isinstance(name, str):
            raise bad_request("metricName is required.")
        found = self._series(run_id, name).get(name)
        if found is None:
            raise not_found(f"Metric {name} of run {run_id} was not found.",
                            inner="MetricNotFound")
        kind, values = found
        points, columns = [], {}
        for value in values:
            data = value if kind in ("row", "table") else {name: value}
            for column, cell in data.items():
                columns.setdefault(column, "Artifact" if kind == "image" else _column_type(cell))
            points.append({"metricId": uuid.uuid4().hex, "createdUtc": _now(), "step": None,
                           "data": data})
        return {"name": name, "columns": columns, "value": points,
                "properties": {"uxMetricType": _UX.get(kind, "azureml.v1.scalar")},
                "dataContainerId": f"dcid.{run_id}", "continuationToken": None}

    # --- compute ---------------------------------------------------------------------------------
    def _compute_dto(self, req: Request, name: str) -> dict[str, Any]:
        from simml.core.compute.amlcompute import AmlComputeStatus
        backend, info_ws = self.workspace._backend, self.workspace._info
        info = backend.compute_get(info_ws, name)
        status = AmlComputeStatus._from(info, backend.compute_status(info_ws, name)).serialize()
        scope = ARM_SCOPE.format(sub=info_ws.subscription_id, rg=info_ws.resource_group,
                                 ws=info_ws.name)
        scale = status.get("scaleSettings") or {}
        return {
            "id": f"{scope}/computes/{name}", "name": name, "location": info_ws.location,
            "type": "Microsoft.MachineLearningServices/workspaces/computes",
            "tags": dict(info.properties.get("tags") or {}),
            "identity": {"type": "None", "userAssignedIdentities": None},
            "properties": {
                "description": info.properties.get("description"), "resourceId": None,
                "computeType": info.compute_type or "AmlCompute", "computeLocation":
                info_ws.location, "provisioningState": status.get("provisioningState"),
                "provisioningErrors": None, "isAttachedCompute": False,
                "createdOn": status.get("creationTime"), "modifiedOn": status.get("modifiedTime"),
                "properties": {
                    "vmSize": info.vm_size, "vmPriority": info.vm_priority,
                    "scaleSettings": {
                        "minNodeCount": scale.get("minNodeCount", info.min_nodes),
                        "maxNodeCount": scale.get("maxNodeCount", info.max_nodes),
                        "nodeIdleTimeBeforeScaleDown":
                            f"PT{int(info.idle_seconds_before_scaledown)}S"},
                    "currentNodeCount": status.get("currentNodeCount"),
                    "targetNodeCount": status.get("targetNodeCount"),
                    "nodeStateCounts": status.get("nodeStateCounts"),
                    "allocationState": status.get("allocationState"),
                    "allocationStateTransitionTime": status.get("allocationStateTransitionTime"),
                    "errors": status.get("errors"),
                    "remoteLoginPortPublicAccess": "NotSpecified",
                    "subnet": None, "userAccountCredentials": {},
                },
            },
        }

    def compute_get(self, req: Request) -> dict[str, Any]:
        name = req.params["name"]
        try:
            return self._compute_dto(req, name)
        except (NotFoundException, ComputeTargetException, LookupError) as exc:
            raise AzureError(404, "ResourceNotFound",
                             f"ComputeTargetNotFound: Compute Target with name {name} not found "
                             "in provided workspace", inner="ComputeNotFound") from exc

    def compute_list(self, req: Request) -> dict[str, Any]:
        names = [c.name for c in self.workspace._backend.compute_list(self.workspace._info)]
        return {"value": [self._compute_dto(req, n) for n in names]}

    def compute_put(self, req: Request) -> Response:
        from simml.core.compute import AmlCompute, ComputeTarget
        body = req.json_object()
        name = req.params["name"]
        props = body.get("properties") or {}
        if props.get("computeType") != "AmlCompute":
            raise bad_request(f"computeType {props.get('computeType')!r} is not supported by the "
                              "emulator (only AmlCompute).", inner="NotSupported")
        inner = props.get("properties") or {}
        scale = inner.get("scaleSettings") or {}
        tags, description = body.get("tags"), props.get("description")
        if tags is not None and (not isinstance(tags, dict) or not all(
                isinstance(v, str) for v in tags.values())):
            raise bad_request("A compute's tags must map names to strings.")
        if description is not None and not isinstance(description, str):
            raise bad_request("A compute's description must be a string.")
        config = AmlCompute.provisioning_configuration(
            tags=tags or None, description=description,
            vm_size=inner.get("vmSize") or "", vm_priority=(inner.get("vmPriority") or
                                                             "dedicated").lower(),
            min_nodes=int(scale.get("minNodeCount") or 0),
            max_nodes=scale.get("maxNodeCount"),
            idle_seconds_before_scaledown=_duration_seconds(
                scale.get("nodeIdleTimeBeforeScaleDown"), 1800))
        ComputeTarget.create(self.workspace, name, config)
        operation = f"{req.base_url}/operations/compute-{name}?api-version={COMPUTE_API}"
        return Response(201, self._compute_dto(req, name),
                        {"Azure-AsyncOperation": operation})

    def compute_delete(self, req: Request) -> Response:
        name = req.params["name"]
        self.compute_get(req)
        self.workspace._backend.compute_delete(self.workspace._info, name)
        operation = f"{req.base_url}/operations/compute-{name}-delete?api-version={COMPUTE_API}"
        return Response(202, None, {"Azure-AsyncOperation": operation})

    def operation(self, req: Request) -> dict[str, Any]:
        op = req.params["operation"]
        if not op.startswith("compute-"):
            raise not_found(f"Operation {op} not found.", inner="OperationNotFound")
        return {"status": "Succeeded", "name": op}


_UX = {"scalar": "azureml.v1.scalar", "list": "azureml.v1.list", "row": "azureml.v1.table",
       "table": "azureml.v1.table", "image": "azureml.v2.image"}
_IMAGE_UX = ("azureml.v2.image", "azureml.v1.image")
"""``log_image`` sends ``azureml.v2.image`` (a full artifact reference); older clients sent
``azureml.v1.image`` (a path). Images are read back as ``azureml.v2.image``."""
_LOGGED_UX = ("azureml.v1.scalar", "azureml.v1.list", "azureml.v1.table", *_IMAGE_UX)


def public_definition(definition: Any) -> Any:
    """A run definition as run DTOs show it: without the run token the emulator put in the job's
    environment variables (a credential; ``execution.py``), also in a sweep's child definition."""
    if not isinstance(definition, dict):
        return definition
    if isinstance(definition.get("child"), dict):  # a HyperDrive parent (hyperdrive.py)
        definition = {**definition, "child": public_definition(definition["child"])}
    variables = definition.get("environmentVariables")
    if not isinstance(variables, dict) or not any(k in variables for k in RUN_TOKEN_VARIABLES):
        return definition
    return {**definition, "environmentVariables": {
        k: v for k, v in variables.items() if k not in RUN_TOKEN_VARIABLES}}


RUN_TOKEN_VARIABLES = ("AZUREML_RUN_TOKEN", "AZUREML_RUN_TOKEN_EXPIRY")


def _column_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    return "string"


def _strings(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _duration_seconds(text: Any, default: int) -> int:
    import re
    if not isinstance(text, str):
        return default
    found = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", text)
    if not found:
        raise bad_request(f"Invalid duration {text!r} (expected ISO 8601, e.g. PT1800S).")
    h, m, s = (int(g or 0) for g in found.groups())
    return h * 3600 + m * 60 + s


def parse_query(raw: str) -> dict[str, list[str]]:
    return parse_qs(raw, keep_blank_values=True)
