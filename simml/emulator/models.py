"""Model management of the emulator (Azure's "MMS"): ``/modelmanagement/v1.0/{WS}/assets`` and
``/models``, mapped onto simml's model registry (``simml.core.model`` and the backend's
``simml_model_*`` hooks), so a model the real client registers is simml's (``simml model list``)
and a model simml's API registers is listed, read and downloaded by the real client.

How the client's calls map:

* ``run.register_model(name, 'outputs/model.joblib')`` posts an asset whose artifact prefix is
  ``ExperimentRun/dcid.<run>/outputs/model.joblib``, then a model pointing at ``aml://asset/<id>``:
  the registration goes through simml's ``Run.register_model`` (the path must be among the run's
  files; the version is simml's: highest + 1, in one transaction).
* ``Model.register(ws, model_path, name)`` uploads the files as artifacts (origin ``LocalUpload``,
  served by ``emulator.artifacts``), then posts the asset and the model: the uploaded files are
  linked into a private folder and registered from there through the backend's
  ``model_register`` (validated first by simml's own rules).
* A registered model's ``url`` is the asset id simml's ``Model.url`` computes (same value through
  both APIs). That asset's artifact prefix is ``SimmlModel/<asset id>/<file or folder>``, an origin
  this module serves to ``emulator.artifacts``: the files are the model's own (downloaded through
  ``model_download`` into a cache keyed by the immutable asset id), so ``model.download`` and
  ``Model.get_model_path`` work for models registered by either API.

Assets posted by the client are kept in memory (the last 1,000): a model's registration reads
its asset once, and the registered model answers with its own derived asset from then on. Errors use MMS's body (flat ``code`` /
``statusCode`` / ``message``), which the client's ``ModelErrorResponse`` reads: a 404 becomes the
client's ``WebserviceException("ModelNotFound: ...")``, anything else its "bad response"
``WebserviceException`` carrying the status and message.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import posixpath
import shutil
import tempfile
import uuid
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from simml.emulator.protocol import ARM_SCOPE, AzureError, not_found, released
from simml.exceptions import (
    AzureMLException,
    ModelNotFoundException,
    ModelPathNotFoundException,
    NotFoundException,
    UnsafePathException,
    UserErrorException,
    WebserviceException,
)

if TYPE_CHECKING:
    from simml.entities import ModelInfo
    from simml.emulator.service import Emulator, Request

MMS = "/modelmanagement/v1.0" + ARM_SCOPE
MODEL_ORIGIN = "SimmlModel"
"""The artifact origin under which registered models' own files are served."""
RUN_ORIGIN = "ExperimentRun"
MAX_PENDING_ASSETS = 1000
ORDERS = {"createdatdesc": True, "updatedatdesc": True, "createdatasc": False,
          "updatedatasc": False}  # simml keeps no modification time: "updated" is "created"
_ASSET_PREFIX = "aml://asset/"


class ModelManagementError(AzureError):
    """An error in MMS's body shape; Azure's nested ``error`` is kept alongside for other
    readers."""

    def payload(self, correlation: str | None = None) -> dict[str, Any]:
        body = super().payload(correlation)
        body.update({"code": self.inner or self.code, "statusCode": self.status,
                     "message": self.message,
                     "details": [{"code": self.inner or self.code, "message": self.message}]})
        return body


def _error(status: int, message: str, inner: str) -> ModelManagementError:
    return ModelManagementError(status, "UserError" if status < 500 else "SystemError", message,
                                inner=inner)


def _mms(handler: Callable[["ModelManagement", "Request"], Any]
         ) -> Callable[["ModelManagement", "Request"], Any]:
    """Translate simml's typed errors (and the emulator's generic ones) into MMS's body; make
    sure the ``SimmlModel`` origin is served (``emulator.artifacts`` registers after this
    module, and a download always reads the model's asset here first)."""

    @functools.wraps(handler)
    def wrapped(self: "ModelManagement", req: "Request") -> Any:
        try:
            self._ensure_origin()
            return handler(self, req)
        except ModelManagementError:
            raise
        except AzureError as exc:
            raise ModelManagementError(exc.status, exc.code, exc.message, inner=exc.inner) from exc
        except ModelNotFoundException as exc:
            raise _error(404, exc.message, "ModelNotFound") from exc
        except ModelPathNotFoundException as exc:
            raise _error(400, exc.message, "ModelPathNotFound") from exc
        except UnsafePathException as exc:
            raise _error(400, str(exc.message), "UnsafePath") from exc
        except NotFoundException as exc:
            raise _error(404, exc.message, "NotFound") from exc
        except (WebserviceException, UserErrorException) as exc:
            raise _error(400, exc.message, "BadArgument") from exc
        except AzureMLException as exc:
            raise _error(500, exc.message, "ServiceError") from exc
    return wrapped


def _iso(value: Any) -> str | None:
    from simml.emulator.service import _iso as iso
    return iso(value)


def _split_artifact(value: Any, what: str) -> tuple[str, str, str]:
    """``origin/container/path`` of an asset's artifact, the path checked for traversal."""
    from simml._paths import safe_relpath
    if not isinstance(value, str) or value.count("/") < 1:
        raise _error(400, f"Invalid artifact {what} {value!r}: expected origin/container/path.",
                     "BadArgument")
    origin, container, *rest = value.split("/", 2)
    if not origin or not container or container in (".", ".."):
        raise _error(400, f"Invalid artifact {what} {value!r}: expected origin/container/path.",
                     "BadArgument")
    path = safe_relpath(rest[0] if rest else "", allow_empty=True, what=f"artifact {what}")
    return origin, container, path


def _under(path: str, prefix: str) -> bool:
    """Path semantics: ``outputs`` covers ``outputs/a`` but not ``outputs.txt``."""
    return not prefix or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _str_map(value: Any, label: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _error(400, f"{label} must be a JSON object.", "BadArgument")
    return value


class ModelManagement:
    """The MMS routes of one served workspace, and the ``SimmlModel`` artifact origin."""

    def __init__(self, emulator: "Emulator") -> None:
        from simml.emulator.artifacts import emulator_folder
        self.emulator = emulator
        self.workspace = emulator.workspace
        self._pending: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._assets: dict[str, tuple[str, int]] = {}   # derived asset id -> (name, version)
        self._origin_registered = False
        self._cache = emulator_folder(self.workspace) / "model-cache"

    # --- wiring ----------------------------------------------------------------------------------
    def register_routes(self) -> None:
        add = self.emulator.router.add
        add("POST", MMS + "/assets", self.asset_create)
        add("GET", MMS + "/assets", self.asset_list)
        add("GET", MMS + "/assets/{id}", self.asset_get)
        add("POST", MMS + "/models", self.model_register)
        add("GET", MMS + "/models", self.model_list)
        add("GET", MMS + "/models/{id}", self.model_get)
        add("PATCH", MMS + "/models/{id}", self.model_patch)
        add("DELETE", MMS + "/models/{id}", self.model_delete)
        self._ensure_origin()

    def _ensure_origin(self) -> None:
        """Serve ``SimmlModel`` through the artifacts module (it may register after this one)."""
        if self._origin_registered:
            return
        artifacts = getattr(self.emulator, "artifacts", None)
        if artifacts is not None and hasattr(artifacts, "register_origin"):
            artifacts.register_origin(MODEL_ORIGIN, _ModelFiles(self))
            self._origin_registered = True
            self._sweep_cache()

    # --- simml side ------------------------------------------------------------------------------
    def _simml_model(self, info: "ModelInfo") -> Any:
        from simml.core.model import Model
        return Model(self.workspace, _info=info)

    def asset_id(self, info: "ModelInfo") -> str:
        """The asset id of a registered model: the one simml's ``Model.url`` names."""
        url = self._simml_model(info).url
        asset = url[len(_ASSET_PREFIX):]
        self._assets[asset] = (info.name, info.version)
        return asset

    def _all_models(self) -> list["ModelInfo"]:
        from simml.entities import ModelQuery
        return self.workspace._backend.model_list(self.workspace._info, ModelQuery())

    def _model_for_asset(self, asset: str) -> "ModelInfo | None":
        """The model whose derived asset is ``asset`` (re-indexed on a miss: simml's API may have
        registered it since)."""
        known = self._assets.get(asset)
        if known is not None:
            try:
                info = self._get(*known)
            except ModelNotFoundException:
                info = None
            if info is not None and self.asset_id(info) == asset:
                return info
            self._assets.pop(asset, None)
        for info in self._all_models():
            if self.asset_id(info) == asset:
                return info
        return None

    def _get(self, name: str, version: int | None) -> "ModelInfo":
        return self.workspace._backend.model_get(self.workspace._info, name, version)

    def _get_by_id(self, model_id: str) -> "ModelInfo":
        """``name:version`` (``name`` alone: the latest version), else a 404."""
        name, sep, version = model_id.rpartition(":")
        if not sep:
            name, version = version, ""
        if not name or (version and not version.isdigit()):
            raise _error(404, f"ModelNotFound: Model with id {model_id} not found in provided "
                         "workspace.", "ModelNotFound")
        return self._get(name, int(version) if version else None)

    # --- DTOs ------------------------------------------------------------------------------------
    def model_dto(self, info: "ModelInfo") -> dict[str, Any]:
        return {
            "id": info.id, "name": info.name, "version": info.version,
            "framework": info.model_framework, "frameworkVersion": info.model_framework_version,
            "datasets": [], "url": _ASSET_PREFIX + self.asset_id(info),
            "mimeType": "application/json", "description": info.description,
            "createdTime": _iso(info.created_time), "modifiedTime": _iso(info.created_time),
            "unpack": False, "parentModelId": None, "runId": info.run_id,
            "experimentName": info.experiment_name, "kvTags": dict(info.tags),
            "properties": dict(info.properties), "derivedModelIds": [],
            "sampleInputData": None, "sampleOutputData": None, "resourceRequirements": None,
            "createdBy": {"userObjectId": "00000000-0000-0000-0000-000000000001",
                          "userTenantId": "00000000-0000-0000-0000-000000000000",
                          "userName": "simml"},
        }

    def _derived_asset(self, info: "ModelInfo") -> dict[str, Any]:
        asset = self.asset_id(info)
        top = info.files[0].split("/", 1)[0] if info.files else ""
        return {"id": asset, "name": info.name, "type": "MLModel", "description": None,
                "artifacts": [{"id": None, "prefix": f"{MODEL_ORIGIN}/{asset}/{top}"}],
                "kvTags": {}, "properties": {}, "runid": info.run_id, "meta": {},
                "createdTime": _iso(info.created_time)}

    # --- assets ----------------------------------------------------------------------------------
    @_mms
    def asset_create(self, req: "Request") -> dict[str, Any]:
        """Keep the client's asset (its artifacts name the files) until a model uses it."""
        from datetime import datetime, timezone
        body = req.json_object()
        artifacts = body.get("artifacts")
        if not isinstance(artifacts, list) or not artifacts:
            raise _error(400, "An asset needs a non-empty 'artifacts' list.", "BadArgument")
        clean = []
        for item in artifacts:
            if not isinstance(item, dict) or not (item.get("prefix") or item.get("id")):
                raise _error(400, f"Each artifact needs a 'prefix' or an 'id', not {item!r}.",
                             "BadArgument")
            kind = "prefix" if item.get("prefix") else "id"
            origin, container, path = _split_artifact(item[kind], kind)
            if kind == "id" and not path:
                raise _error(400, f"Artifact id {item[kind]!r} names no file.", "BadArgument")
            clean.append({"id": None, "prefix": None,
                          kind: f"{origin}/{container}/{path}" if path else
                          f"{origin}/{container}"})
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise _error(400, "The asset's name must be a string.", "BadArgument")
        asset = {"id": uuid.uuid4().hex, "name": name, "type": body.get("type") or "MLModel",
                 "description": body.get("description"), "artifacts": clean,
                 "kvTags": _str_map(body.get("kvTags"), "kvTags") or {},
                 "properties": _str_map(body.get("properties"), "properties") or {},
                 "runid": body.get("runid"), "meta": _str_map(body.get("meta"), "meta") or {},
                 "createdTime": _iso(datetime.now(timezone.utc))}
        self._pending[asset["id"]] = asset
        while len(self._pending) > MAX_PENDING_ASSETS:
            self._pending.popitem(last=False)
        return asset

    def _asset(self, asset: str) -> tuple[dict[str, Any], "ModelInfo | None"]:
        if asset in self._pending:
            return self._pending[asset], None
        info = self._model_for_asset(asset)
        if info is None:
            raise _error(404, f"Asset {asset} was not found.", "AssetNotFound")
        return self._derived_asset(info), info

    @_mms
    def asset_get(self, req: "Request") -> dict[str, Any]:
        """A pending asset, or a registered model's (whose files are then cached for the
        downloads that follow, outside the emulator's lock)."""
        asset, info = self._asset(req.params["id"])
        if info is not None and self._origin_registered:
            asset_id = asset["id"]
            with released(self.emulator._lock):
                self.cached_model(asset_id, info)
        return asset

    @_mms
    def asset_list(self, req: "Request") -> dict[str, Any]:
        name, run_id = req.arg("name"), req.arg("runId")
        found = list(self._pending.values()) + [self._derived_asset(i)
                                                for i in self._all_models()]
        found = [a for a in found if (name is None or a["name"] == name)
                 and (run_id is None or a["runid"] == run_id)]
        return {"value": found, "continuationToken": None, "nextLink": None}

    # --- registering -----------------------------------------------------------------------------
    @_mms
    def model_register(self, req: "Request") -> dict[str, Any]:
        """Register a version from the asset the body's ``url`` names. Everything is validated
        before anything is written; the registry's own transaction makes it all-or-nothing."""
        from simml.core.model import _registration
        body = req.json_object()
        name = body.get("name")
        if not isinstance(name, str):
            raise _error(400, "A model needs a 'name' (a string).", "BadArgument")
        for key in ("description", "framework", "frameworkVersion", "url"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise _error(400, f"'{key}' must be a string.", "BadArgument")
        if body.get("unpack"):
            raise _error(400, "unpack=true (a packed tar model) is not supported by the "
                         "emulator.", "NotSupported")
        registration = _registration(
            name, _str_map(body.get("kvTags"), "kvTags"),
            _str_map(body.get("properties"), "properties"), body.get("description"),
            body.get("framework"), body.get("frameworkVersion"))
        url = body.get("url") or ""
        if not url.startswith(_ASSET_PREFIX):
            raise _error(400, f"The model's url must be aml://asset/<id>, not {url!r}.",
                         "BadArgument")
        asset_id = url[len(_ASSET_PREFIX):]
        try:
            asset, source = self._asset(asset_id)
        except ModelManagementError:
            raise _error(400, f"Asset {asset_id} (the model's url) was not found: create it "
                         "with POST .../assets first.", "AssetNotFound") from None
        artifacts = [(a.get("prefix") or a.get("id")) for a in asset["artifacts"]]
        parsed = [_split_artifact(a, "prefix") for a in artifacts]
        if source is not None:
            info = self._register_copy(registration, source)
        elif any(origin == RUN_ORIGIN for origin, _, _ in parsed):
            info = self._register_from_run(registration, parsed, body)
        else:
            info = self._register_uploaded(registration, parsed)
        return self.model_dto(info)

    def _register_from_run(self, registration: Any, parsed: list[tuple[str, str, str]],
                           body: dict[str, Any]) -> "ModelInfo":
        """``run.register_model``: simml's ``Run.register_model`` on the run's own files."""
        from simml.core.run import Run
        if len(parsed) != 1:
            raise _error(400, "A model registered from a run takes exactly one artifact prefix "
                         "(the emulator registers one file or folder of the run).",
                         "NotSupported")
        _, container, path = parsed[0]
        if not container.startswith("dcid.") or not path:
            raise _error(400, f"Artifact {RUN_ORIGIN}/{container}/{path} does not name a file "
                         "of a run (expected ExperimentRun/dcid.<run id>/<path>).",
                         "BadArgument")
        run_id = container[len("dcid."):]
        if body.get("runId") not in (None, run_id):
            raise _error(400, f"runId {body.get('runId')!r} is not the run whose files the "
                         f"asset names ({run_id}).", "BadArgument")
        try:
            run = Run._from_id(self.workspace, run_id)
        except NotFoundException as exc:
            raise _error(400, f"Run {run_id} (named by the asset) was not found.",
                         "RunNotFound") from exc
        with released(self.emulator._lock):
            model = run.register_model(
                registration.name, model_path=path, tags=registration.tags,
                properties=registration.properties,
                model_framework=registration.model_framework,
                model_framework_version=registration.model_framework_version,
                description=registration.description)
        return model._info

    def _register_uploaded(self, registration: Any, parsed: list[tuple[str, str, str]]
                           ) -> "ModelInfo":
        """``Model.register``: the uploaded artifacts (``emulator.artifacts``) linked into a
        private folder, registered from there; their paths relative to the prefix's folder are
        the model's, as the client lays them out when downloading. (A ``runId`` in the body is
        not recorded here: simml ties a model to a run only when made from the run's files.)"""
        artifacts = getattr(self.emulator, "artifacts", None)
        if artifacts is None:
            raise _error(400, "Artifacts are not served by this emulator, so a model cannot be "
                         "registered from uploaded files.", "NotSupported")
        files: list[tuple[Path, str]] = []
        for origin, container, path in parsed:
            try:
                names = [p for p in artifacts.list(origin, container, prefix=path)
                         if _under(p, path)]
            except AzureError as exc:
                if exc.status != 404:
                    raise
                names = []   # an unknown container: the asset names nothing
            if not names:
                raise _error(400, f"No artifact under {origin}/{container}/{path}: upload the "
                             "model's files first.", "ArtifactNotFound")
            strip = posixpath.dirname(path)
            for name in names:
                rel = posixpath.relpath(name, strip) if strip else name
                files.append((Path(artifacts.resolve(origin, container, name)), rel))
        tops = {rel.split("/", 1)[0] for _, rel in files}
        if len(tops) != 1:
            raise _error(400, "The asset's artifacts must make one file or folder (found "
                         f"{sorted(tops)}).", "NotSupported")
        with released(self.emulator._lock), tempfile.TemporaryDirectory(
                prefix="simml-emulator-model-") as scratch:
            for source, rel in files:
                target = os.path.join(scratch, *rel.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copyfile(source, target)
            local = os.path.join(scratch, tops.pop())
            return self.workspace._backend.model_register(
                self.workspace._info, replace(registration, local_path=local))

    def _register_copy(self, registration: Any, source: "ModelInfo") -> "ModelInfo":
        """A model registered from another model's asset: a new version with its files."""
        with released(self.emulator._lock), tempfile.TemporaryDirectory(
                prefix="simml-emulator-model-") as scratch:
            self.workspace._backend.model_download(self.workspace._info, source.name,
                                                   source.version, scratch, True)
            tops = sorted({f.split("/", 1)[0] for f in source.files})
            if len(tops) != 1:
                raise _error(400, f"Model {source.id} has no single file or folder to copy.",
                             "NotSupported")
            return self.workspace._backend.model_register(
                self.workspace._info,
                replace(registration, local_path=os.path.join(scratch, tops[0])))

    # --- reading ---------------------------------------------------------------------------------
    @_mms
    def model_get(self, req: "Request") -> dict[str, Any]:
        return self.model_dto(self._get_by_id(req.params["id"]))

    @_mms
    def model_list(self, req: "Request") -> dict[str, Any]:
        """Azure's query: ``name``, ``tag``/``tags``/``properties`` (``k`` or ``k=v``, comma
        separated, all must match), ``runId``, ``framework``, ``description``, ``datasetId``,
        ``latestVersionOnly``, ``orderBy``; pages of ``count`` with a ``$skipToken`` (the last
        item's sort key, so registrations between pages shift nothing)."""
        from simml.core.model import Model
        tags = [t for raw in (req.arg("tag"), req.arg("tags")) if raw
                for t in raw.split(",") if t]
        props = [p for p in (req.arg("properties") or "").split(",") if p]
        latest = _bool(req.arg("latestVersionOnly"), "latestVersionOnly")
        order = (req.arg("orderBy") or "CreatedAtDesc").lower()
        if order not in ORDERS:
            raise _error(400, f"Invalid orderBy {req.arg('orderBy')!r}: use CreatedAtDesc, "
                         "CreatedAtAsc, UpdatedAtDesc or UpdatedAtAsc.", "BadArgument")
        count = _int(req.arg("count"), "count", 1)
        offset = _int(req.arg("offset"), "offset", 0) or 0
        if req.arg("datasetId"):
            infos: list[ModelInfo] = []    # simml records no dataset of a model
        else:
            infos = [m._info for m in Model.list(
                self.workspace, name=req.arg("name"), tags=tags or None,
                properties=props or None, run_id=req.arg("runId"), latest=latest,
                page_count=None, model_framework=req.arg("framework"))]   # type: ignore[arg-type]
        description = req.arg("description")
        if description is not None:
            infos = [i for i in infos if i.description == description]
        descending = ORDERS[order]
        infos.sort(key=_sort_key, reverse=descending)
        token = req.arg("$skipToken")
        if token:
            after = _decode_token(token)
            infos = [i for i in infos
                     if (_sort_key(i) < after if descending else _sort_key(i) > after)]
        infos = infos[offset:]
        page, rest = (infos, []) if count is None else (infos[:count], infos[count:])
        next_link = None
        if rest and page:
            query = [(k, v) for k, values in req.query.items() if k not in ("$skipToken",
                                                                              "offset")
                     for v in values]
            query.append(("$skipToken", _encode_token(_sort_key(page[-1]))))
            from urllib.parse import urlencode
            next_link = f"{req.base_url}{req.path}?{urlencode(query)}"
        return {"value": [self.model_dto(i) for i in page], "continuationToken": None,
                "nextLink": next_link}

    # --- changing --------------------------------------------------------------------------------
    @_mms
    def model_patch(self, req: "Request") -> dict[str, Any]:
        """JSON patch: replace ``/kvTags`` (the whole map), add ``/properties`` (add-only),
        replace ``/description``; datasets, sample data and resource requirements are accepted
        and not stored (as by simml's ``Model``). Applied in one backend call, or not at all."""
        info = self._get_by_id(req.params["id"])
        ops = req.json()
        if not isinstance(ops, list):
            raise _error(400, "A model patch is a JSON list of operations.", "BadArgument")
        tags: dict[str, str] | None = None
        props: dict[str, str] = {}
        description: str | None = None
        for op in ops:
            if not isinstance(op, dict):
                raise _error(400, f"Invalid patch operation {op!r}.", "BadArgument")
            kind, path, value = op.get("op"), op.get("path"), op.get("value")
            if path == "/kvTags" and kind in ("replace", "add"):
                if value is not None and not isinstance(value, dict):
                    raise _error(400, "/kvTags takes a JSON object.", "BadArgument")
                tags = {str(k): "" if v is None else str(v) for k, v in (value or {}).items()}
            elif path == "/properties" and kind in ("add", "replace"):
                if not isinstance(value, dict):
                    raise _error(400, "/properties takes a JSON object.", "BadArgument")
                for key, val in value.items():
                    text = "" if val is None else str(val)
                    if key in info.properties and info.properties[key] != text:
                        raise _error(400, f"Property {key!r} of model {info.id} is already "
                                     f"{info.properties[key]!r}: model properties are add-only.",
                                     "BadArgument")
                    if key not in info.properties:
                        props[str(key)] = text
            elif path == "/description" and kind in ("replace", "add"):
                if value is not None and not isinstance(value, str):
                    raise _error(400, "/description takes a string.", "BadArgument")
                description = value or ""
            elif path in ("/datasets", "/sampleInputData", "/sampleOutputData",
                          "/resourceRequirements") and kind in ("add", "replace"):
                continue
            else:
                raise _error(400, f"Unsupported patch operation {kind!r} on {path!r}.",
                             "BadArgument")
        if tags is None and not props and description is None:
            return self.model_dto(info)
        info = self.workspace._backend.model_update(
            self.workspace._info, info.name, info.version,
            add_tags=tags or None,
            remove_tags=[k for k in info.tags if k not in tags] if tags is not None else None,
            add_properties=props or None, description=description)
        return self.model_dto(info)

    @_mms
    def model_delete(self, req: "Request") -> Any:
        from simml.emulator.service import Response
        info = self._get_by_id(req.params["id"])
        asset = self.asset_id(info)
        self.workspace._backend.model_delete(self.workspace._info, info.name, info.version)
        self._assets.pop(asset, None)
        shutil.rmtree(self._cache / asset, ignore_errors=True)
        return Response(200, None)

    # --- the SimmlModel origin's files -----------------------------------------------------------
    def cached_model(self, asset: str, info: "ModelInfo") -> Path:
        """The model's files, downloaded once through ``model_download`` into the emulator's
        folder, ``model-cache/<asset id>/`` (an asset id names one immutable version: it changes
        when a deleted version number is registered again)."""
        final = self._cache / asset
        if final.is_dir():
            return final
        self._cache.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".simml-tmp-", dir=self._cache))
        try:
            self.workspace._backend.model_download(self.workspace._info, info.name,
                                                   info.version, str(scratch), True)
            try:
                os.rename(scratch, final)
            except OSError:
                if not final.is_dir():   # else another request filled it first
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return final

    def _sweep_cache(self) -> None:
        """Drop cached files of versions deleted since (and scratch folders of dead writers)."""
        try:
            entries = list(os.scandir(self._cache))
        except OSError:
            return
        if not entries:
            return
        live = {self.asset_id(i) for i in self._all_models()}
        for entry in entries:
            if entry.name not in live and not entry.name.startswith(".simml-tmp-"):
                shutil.rmtree(entry.path, ignore_errors=True)


class _ModelFiles:
    """The ``SimmlModel`` origin for ``emulator.artifacts``: container = a model's asset id."""

    def __init__(self, models: ModelManagement) -> None:
        self.models = models

    def _info(self, container: str) -> "ModelInfo":
        info = self.models._model_for_asset(container)
        if info is None:
            raise not_found(f"No registered model has the asset {container}.",
                            inner="ArtifactNotFound")
        return info

    def list(self, container: str, prefix: str = "") -> list[str]:
        return [f for f in self._info(container).files if _under(f, prefix)]

    def resolve(self, container: str, path: str) -> Path:
        info = self._info(container)
        if path not in info.files:   # also refuses anything a traversal could make of it
            raise not_found(f"Model {info.id} has no file {path!r}.", inner="ArtifactNotFound")
        return self.models.cached_model(container, info) / path


# --- query helpers -------------------------------------------------------------------------------

def _sort_key(info: "ModelInfo") -> tuple[float, str, int]:
    return (info.created_time.timestamp(), info.name, info.version)


def _encode_token(key: tuple[float, str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[float, str, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        when, name, version = raw
        if not (isinstance(when, (int, float)) and isinstance(name, str)
                and isinstance(version, int)):
            raise ValueError(raw)
    except (ValueError, TypeError) as exc:
        raise _error(400, f"Invalid $skipToken {token!r}.", "BadArgument") from exc
    return float(when), name, version


def _bool(value: str | None, label: str) -> bool:
    if value is None or value.lower() == "false":
        return False
    if value.lower() == "true":
        return True
    raise _error(400, f"{label} must be true or false, not {value!r}.", "BadArgument")


def _int(value: str | None, label: str, minimum: int) -> int | None:
    if value is None:
        return None
    if not value.lstrip("-").isdigit() or int(value) < minimum:
        raise _error(400, f"{label} must be an integer >= {minimum}, not {value!r}.",
                     "BadArgument")
    return int(value)


def register(emulator: "Emulator") -> None:
    """Add the model-management routes (and the ``SimmlModel`` origin) to ``emulator``."""
    models = ModelManagement(emulator)
    emulator.model_management = models  # type: ignore[attr-defined]
    models.register_routes()
