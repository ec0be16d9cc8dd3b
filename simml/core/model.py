"""``Model``: Azure's model registry API (``azureml.core.model.Model``) over the active backend.

The facade validates every argument before anything is written, then talks only to the
workspace's ``Backend`` (``model_register`` / ``model_get`` / ``model_list`` / ``model_update`` /
``model_download`` / ``model_delete``). Versions are assigned by the backend: highest existing
version of the name + 1, atomically across processes.

Differences from azureml-core worth knowing:

* a model that is not found raises ``ModelNotFound``, which is both Azure's
  ``ModelNotFoundException`` and the ``WebserviceException`` Azure's getter raises;
* ``Model.register`` refuses a path outside the current working directory (``UnsafePathException``,
  a ``PermissionError``) and a missing one (``ModelPathDoesNotExist``, a ``FileNotFoundError`` as in
  late azureml-core and a ``WebserviceException`` as in earlier ones);
* datasets, sample datasets and resource configurations are accepted and ignored (logged);
* ``Model.list(latest=True)`` returns, per name, the highest version among the matching versions.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from simml.entities import ModelInfo, ModelQuery, ModelRegistration
from simml.exceptions import (
    ModelNotFoundException,
    ModelPathNotFoundException,
    RunEnvironmentException,
    UnsafePathException,
    UserErrorException,
    WebserviceException,
)

if TYPE_CHECKING:
    from simml.core.run import Run
    from simml.core.workspace import Workspace

logger = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-\._]{0,254}$")
MODELS_DIR_NAME = "azureml-models"


class ModelNotFound(ModelNotFoundException, WebserviceException):
    """A model or model version does not exist (catchable as either of Azure's classes)."""


class ModelPathDoesNotExist(ModelPathNotFoundException, WebserviceException):
    """``Model.register`` was given a path that does not exist (a ``FileNotFoundError``)."""


# --- validation (all of it happens before anything is written) ----------------------------------

def validate_model_name(name: Any) -> str:
    """Azure's ``model_name_validation``: 1-255 letters, digits, ``-``, ``.``, ``_``."""
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise WebserviceException(
            f"Error, provided model name {name!r} is invalid. It must only consist of letters, "
            "numbers, dashes, periods, or underscores, start with a letter or number, and be "
            "between 1 and 255 characters long.")
    return name


def _registration(model_name: Any, tags: Any, properties: Any, description: Any,
                  model_framework: Any, model_framework_version: Any) -> ModelRegistration:
    """Validate what both ways of registering share; the caller adds where the files are."""
    validate_model_name(model_name)
    framework, framework_version = _framework(model_framework, model_framework_version)
    tag_map = _mapping(tags, "Tags")
    property_map = _mapping(properties, "Properties")
    if description is not None and not isinstance(description, str):
        raise WebserviceException("description must be a string.")
    return ModelRegistration(name=model_name, tags=tag_map, properties=property_map,
                             description=description, model_framework=framework,
                             model_framework_version=framework_version)


def _mapping(value: Any, label: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebserviceException(f"{label} must be a dict")
    return {str(k): ("" if v is None else str(v)) for k, v in value.items()}


def _framework(model_framework: Any, model_framework_version: Any) -> tuple[str, str | None]:
    if model_framework is None and model_framework_version is not None:
        raise WebserviceException("Model framework version cannot be provided without a valid "
                                  "framework")
    if model_framework is not None and not isinstance(model_framework, str):
        raise WebserviceException(f"model_framework must be a string, not {model_framework!r}.")
    return (model_framework or Model.Framework.CUSTOM,
            None if model_framework_version is None else str(model_framework_version))


def _version(version: Any) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not (isinstance(version, int)
                                         or (isinstance(version, str) and version.isdigit())):
        raise WebserviceException(f"version should be an int, not {version!r}")
    return int(version)


def _filters(value: Any, label: str) -> tuple[tuple[str, str | None], ...]:
    """Azure's tag/property filters: a list of ``'key'``, ``'key=value'`` or ``['key', 'value']``."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise UserErrorException(f"Expected {label} must be list type. Ex. [\"key\", [\"key2\", "
                                 f"\"key2 value\"]]: provided {type(value)}")
    out: list[tuple[str, str | None]] = []
    for item in value:
        if isinstance(item, str):
            key, sep, val = item.partition("=")
            out.append((key, val if sep else None))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out.append((str(item[0]), None if item[1] is None else str(item[1])))
        elif isinstance(item, (list, tuple)) and len(item) == 1:
            out.append((str(item[0]), None))
        else:
            raise UserErrorException(f"Invalid {label} filter {item!r}: use 'key', 'key=value' "
                                     "or ['key', 'value'].")
    return tuple(out)


def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _resolve_model_path(model_path: Any) -> str:
    """The absolute path of ``model_path`` (joined onto cwd), refused when outside cwd/missing."""
    if not isinstance(model_path, (str, os.PathLike)) or not os.fspath(model_path):
        raise WebserviceException(f"Error, model_path must be a path, not {model_path!r}.")
    cwd = os.getcwd()
    absolute = os.path.abspath(os.path.join(cwd, os.fspath(model_path)))
    if not _inside(os.path.realpath(absolute), os.path.realpath(cwd)):
        raise UnsafePathException(
            f"Unauthorized access: Path outside current working directory: {model_path} "
            f"(resolves to {os.path.realpath(absolute)}; the working directory is {cwd}).")
    if not os.path.exists(absolute):
        raise ModelPathDoesNotExist(f"Path does not exist: {model_path} (looked for "
                                    f"{absolute}).")
    return absolute


def _check_child_paths(model_path: str, child_paths: Any) -> list[str]:
    if child_paths is None:
        return []
    if isinstance(child_paths, (str, os.PathLike)) or not hasattr(child_paths, "__iter__"):
        raise WebserviceException("child_paths must be a list of paths inside model_path.")
    if not os.path.isdir(model_path):
        raise WebserviceException("child_paths can only be given when model_path is a folder.")
    base = os.path.realpath(model_path)
    checked = []
    for child in child_paths:
        full = os.path.abspath(os.path.join(model_path, os.fspath(child)))
        if not _inside(os.path.realpath(full), base) or os.path.realpath(full) == base:
            raise UnsafePathException(f"Error, child path {child!r} is not inside the model "
                                      f"path {model_path}.")
        if not os.path.exists(full):
            raise WebserviceException(f'Error, provided child path "{child}" cannot be found')
        checked.append(full)
    return checked


def _ignored(**values: Any) -> None:
    for name, value in values.items():
        if value:
            logger.warning("simml: %s is accepted for compatibility and not stored.", name)


def _stage_children(model_path: str, children: list[str], into: str) -> str:
    """Build ``into/<basename>/`` holding only the chosen children (hard links where possible)."""
    root = os.path.join(into, os.path.basename(model_path.rstrip(os.sep)))
    os.makedirs(root)

    def place(src: str) -> None:
        dst = os.path.join(root, os.path.relpath(src, model_path))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.exists(dst):
            return
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for child in children:
        if os.path.isdir(child):
            for folder, _, names in os.walk(child):
                for name in names:
                    place(os.path.join(folder, name))
        else:
            place(child)
    return root


def _not_found(exc: ModelNotFoundException) -> ModelNotFound:
    return ModelNotFound(exc.message, inner_exception=exc.inner_exception)


# --- the facade -----------------------------------------------------------------------------------

class Model:
    """A registered model version (Azure's ``Model``; the constructor is a getter)."""

    class Framework:
        CUSTOM = "Custom"
        TENSORFLOW = "TensorFlow"
        SCIKITLEARN = "ScikitLearn"
        ONNX = "Onnx"
        TFKERAS = "TfKeras"
        PYTORCH = "PyTorch"
        MULTI = "Multi"

    def __init__(self, workspace: "Workspace | None", name: str | None = None,
                 id: str | None = None, tags: Any = None, properties: Any = None,
                 version: int | None = None, run_id: str | None = None,
                 model_framework: str | None = None, expand: bool = True, **kwargs: Any) -> None:
        """Get a model: by ``id`` (``'name:3'``), by ``name`` and ``version``, or the latest
        version of ``name`` (optionally the newest one matching ``tags`` / ``properties`` /
        ``run_id`` / ``model_framework``).

        :raises ModelNotFound: no such model (a ``ModelNotFoundException`` and a
            ``WebserviceException``).
        """
        self.workspace = workspace
        self._set(kwargs.pop("_info", None))
        if self._info is not None or workspace is None:
            return
        if not id and not name:
            raise WebserviceException("Error, one of id or name must be provided.")
        if id:
            name, sep, version_text = str(id).rpartition(":")
            if not sep:
                name, version_text = version_text, ""
            if version_text and not version_text.isdigit():
                raise ModelNotFound(f"ModelNotFound: Model with id {id} not found in provided "
                                    "workspace.")
            version = int(version_text) if version_text else None
            tags = properties = run_id = model_framework = None
        number = _version(version)
        backend, ws_info = workspace._backend, workspace._info
        try:
            if number is not None or not (tags or properties or run_id or model_framework):
                info = backend.model_get(ws_info, str(name), number)
            else:
                query = ModelQuery(name=name, tags=_filters(tags, "tags"),
                                   properties=_filters(properties, "properties"),
                                   run_id=run_id)
                found = [i for i in backend.model_list(ws_info, query)
                         if model_framework is None or i.model_framework == model_framework]
                if not found:
                    raise ModelNotFound(
                        f"ModelNotFound: Model with name {name} matching tags={tags}, "
                        f"properties={properties}, run_id={run_id}, "
                        f"model_framework={model_framework} not found in provided workspace.")
                info = found[0]
        except ModelNotFound:
            raise
        except ModelNotFoundException as exc:
            raise _not_found(exc) from None
        self._set(info)

    def _set(self, info: ModelInfo | None) -> None:
        self._info = info
        self._run: Any = None
        self._run_loaded = False
        self.name = info.name if info else None
        self.version = info.version if info else None
        self.id = info.id if info else None
        self.tags = dict(info.tags) if info else None
        self.properties = dict(info.properties) if info else None
        self.description = info.description if info else None
        self.created_time: datetime | None = info.created_time if info else None
        self.created_by = None
        self.model_framework = info.model_framework if info else None
        self.model_framework_version = info.model_framework_version if info else None
        self.run_id = info.run_id if info else None
        self.experiment_name = info.experiment_name if info else None
        self.mime_type = "application/octet-stream" if info else None
        self.unpack = False if info else None
        self.datasets: dict[str, list[Any]] = {}
        self.sample_input_dataset = None
        self.sample_output_dataset = None
        self.resource_configuration = None
        self.parent_id = None
        self.derived_model_ids = None
        self.url = None
        if info is not None and self.workspace is not None:
            asset = uuid.uuid5(uuid.NAMESPACE_URL,
                               f"simml:model:{self.workspace._info.workspace_id}:{info.id}:"
                               f"{info.created_time.timestamp()}")
            self.url = f"aml://asset/{asset.hex}"

    # --- attributes ----------------------------------------------------------------------------
    @property
    def framework(self) -> str | None:
        return self.model_framework

    @property
    def run(self) -> "Run | None":
        """The run that produced the model (None when registered from local files)."""
        if not self._run_loaded:
            self._run_loaded = True
            if self.run_id and self.workspace is not None:
                from simml.core.run import Run
                from simml.exceptions import NotFoundException
                try:
                    self._run = Run._from_id(self.workspace, self.run_id)
                except NotFoundException:
                    self._run = None
        return self._run

    @property
    def files(self) -> list[str]:
        """simml addition: the model's file paths relative to its root."""
        return list(self._info.files) if self._info else []

    def _require(self) -> tuple[Any, Any, str, int]:
        if self._info is None or self.workspace is None:
            raise WebserviceException("This Model object is not bound to a registered model.")
        return self.workspace._backend, self.workspace._info, self._info.name, self._info.version

    def _refresh(self, info: ModelInfo) -> None:
        run, loaded = self._run, self._run_loaded
        self._set(info)
        self._run, self._run_loaded = run, loaded

    # --- registering ---------------------------------------------------------------------------
    @staticmethod
    def register(workspace: "Workspace", model_path: str, model_name: str,
                 tags: dict[str, Any] | None = None, properties: dict[str, Any] | None = None,
                 description: str | None = None, datasets: Any = None,
                 model_framework: str | None = None, model_framework_version: str | None = None,
                 child_paths: list[str] | None = None, sample_input_dataset: Any = None,
                 sample_output_dataset: Any = None, resource_configuration: Any = None
                 ) -> "Model":
        """Register a local file or folder (relative to the working directory) as a new version.

        The registered path's basename is kept: ``model.joblib`` becomes
        ``<version>/model.joblib``; a folder keeps its tree.
        """
        registration = _registration(model_name, tags, properties, description,
                                     model_framework, model_framework_version)
        absolute = _resolve_model_path(model_path)
        children = _check_child_paths(absolute, child_paths)
        _ignored(datasets=datasets, sample_input_dataset=sample_input_dataset,
                 sample_output_dataset=sample_output_dataset,
                 resource_configuration=resource_configuration)
        print(f"Registering model {model_name}", flush=True)
        with tempfile.TemporaryDirectory(prefix="simml-model-") as scratch:
            source = _stage_children(absolute, children, scratch) if children else absolute
            info = workspace._backend.model_register(
                workspace._info, replace(registration, local_path=source))
        return Model(workspace, _info=info)

    # --- listing -------------------------------------------------------------------------------
    @staticmethod
    def list(workspace: "Workspace", name: str | None = None, tags: Any = None,
             properties: Any = None, run_id: str | None = None, latest: bool = False,
             dataset_id: str | None = None, expand: bool = True, page_count: int = 255,
             model_framework: str | None = None) -> list["Model"]:
        """Registered model versions, newest first.

        ``tags`` / ``properties``: a list of ``'key'``, ``'key=value'`` or ``['key', 'value']``.
        ``latest``: only the highest matching version of each name.
        """
        if page_count and (page_count < 20 or page_count > 255):
            raise UserErrorException(f"Expected page_count value is between 20 and 255. "
                                     f"Provided: {page_count}")
        query = ModelQuery(name=name, tags=_filters(tags, "tags"),
                           properties=_filters(properties, "properties"), run_id=run_id,
                           latest=bool(latest))
        if dataset_id is not None:
            return []   # no version of a local model records datasets
        infos = workspace._backend.model_list(workspace._info, query)
        if model_framework is not None:
            infos = [i for i in infos if i.model_framework == model_framework]
        return [Model(workspace, _info=i) for i in infos]

    # --- files ---------------------------------------------------------------------------------
    def download(self, target_dir: str = ".", exist_ok: bool = False,
                 exists_ok: bool | None = None) -> str:
        """Copy the model's files under ``target_dir``; returns the model's path there (Azure's
        ``os.path.commonpath`` of the downloaded files: the file for a one-file model)."""
        if exists_ok is not None:
            logger.warning("exists_ok is deprecated. Please use exist_ok")
            exist_ok = exists_ok
        backend, ws_info, name, version = self._require()
        target = os.fspath(target_dir)
        try:
            root = backend.model_download(ws_info, name, version, target, bool(exist_ok))
        except ModelNotFoundException as exc:
            raise _not_found(exc) from None
        files = self._info.files if self._info else ()
        if not files:
            return root
        return os.path.commonpath([os.path.join(target, *f.split("/")) for f in files])

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None,
                       _workspace: "Workspace | None" = None) -> str:
        """Where a model's files are, searched as Azure does.

        1. ``AZUREML_MODEL_DIR`` (set in a deployment): ``$AZUREML_MODEL_DIR/<name>/<version>/``,
           or the folder itself when it is this model's version folder;
        2. with a workspace (``_workspace``, else the submitted run's) and no version: download the
           latest version into ``./azureml-models/<name>/<version>/`` (reused when present);
        3. the cache ``./azureml-models/<name>/<version or highest cached>/``;
        4. with a workspace and a version: download that version into the cache;
        5. ``./<model_name>``.

        Returns the single file or folder inside the version folder.
        :raises ModelNotFoundException: none of the above has it.
        """
        validate_model_name(model_name)
        number = _version(version)
        found = _from_model_dir(model_name, number)
        if found is not None:
            return found
        workspace = _workspace if _workspace is not None else _context_workspace()
        remote_error: ModelNotFoundException | None = None
        if workspace is not None and number is None:
            try:
                return _download_to_cache(workspace, model_name, None)
            except ModelNotFoundException as exc:
                remote_error = exc
        cached = _from_cache(model_name, number)
        if cached is not None:
            return cached
        if workspace is not None and number is not None:
            try:
                return _download_to_cache(workspace, model_name, number)
            except ModelNotFoundException as exc:
                remote_error = exc
        if os.path.exists(model_name):
            return model_name
        cache = os.path.abspath(_models_dir())
        where = f" or in the workspace ({remote_error.message})" if remote_error else ""
        raise ModelNotFound(
            f"Model {model_name} not found in cache at {cache} or in current working directory "
            f"{os.getcwd()}{where}. For more info, set logging level to DEBUG.")

    # --- deploying -----------------------------------------------------------------------------
    @staticmethod
    def deploy(workspace: "Workspace", name: str, models: list["Model"],
               inference_config: "InferenceConfig | None" = None, deployment_config: Any = None,
               deployment_target: Any = None, overwrite: bool = False,
               show_output: bool = False) -> Any:
        """Deploy ``models`` as the web service ``name`` (Azure's ``Model.deploy``).

        ``deployment_config`` is ``LocalWebservice.deploy_configuration(port=None)`` (a process
        on 127.0.0.1) or ``AciWebservice.deploy_configuration(...)`` (the same, with Azure's cloud
        states and optional key auth; the default when None). Returns the ``LocalWebservice`` /
        ``AciWebservice`` in state ``deploying`` / ``Transitioning``: call
        ``wait_for_deployment()``. The environment is prepared (built once, then cached) before
        this returns; ``show_output`` prints that build.

        :raises WebserviceException: an invalid name or configuration, a port in use, a taken
            name (ACI without ``overwrite``), an environment that cannot be built.
        :raises ModelNotFound: a model that is not registered (a ``ModelNotFoundException``).
        """
        from simml.core.webservice.aci import AciServiceDeploymentConfiguration, AciWebservice
        from simml.core.webservice.local import (
            LocalWebservice,
            LocalWebserviceDeploymentConfiguration,
        )
        from simml.core.webservice.webservice import inference_server, validate_service_name
        _deploy_warning()
        validate_service_name(name)
        if deployment_target is not None:
            raise WebserviceException("Error, deployment_target (an AKS cluster) is not "
                                      "supported by simml: use LocalWebservice or AciWebservice "
                                      "deploy configurations.")
        if inference_config is None:
            raise WebserviceException(
                "Error, inference_config is required: no-code deployment (a model registered "
                "with a framework and no entry script) only exists in the Azure cloud. Give "
                "InferenceConfig(entry_script='score.py', environment=...).")
        if not isinstance(inference_config, InferenceConfig):
            raise WebserviceException("Error, inference_config must be an InferenceConfig, not "
                                      f"{type(inference_config).__name__}.")
        if deployment_config is None:
            deployment_config = AciWebservice.deploy_configuration()
        if isinstance(deployment_config, LocalWebserviceDeploymentConfiguration):
            compute_type, cls, auth = "Local", LocalWebservice, False
        elif isinstance(deployment_config, AciServiceDeploymentConfiguration):
            compute_type, cls, auth = "ACI", AciWebservice, deployment_config.auth_enabled
        else:
            raise WebserviceException(
                "Error, unsupported deployment configuration type "
                f"{type(deployment_config).__name__}: use LocalWebservice.deploy_configuration() "
                "or AciWebservice.deploy_configuration().")
        deployment_config.validate_configuration()
        model_refs = _deployed_models(workspace, models)
        server = inference_server()
        if server == "azmlinfsrv" and inference_config._runs_on_current_interpreter():
            import importlib.util
            if importlib.util.find_spec("azureml_inference_server_http") is None:
                raise WebserviceException(
                    "SIMML_INFERENCE_SERVER=azmlinfsrv needs azureml-inference-server-http in "
                    "the service's environment, and this interpreter does not have it: pip "
                    "install 'simml[inference]', or list azureml-inference-server-http in the "
                    "environment's pip packages.")
        aci = deployment_config if compute_type == "ACI" else None
        config = dict(deployment_config._serialize())
        deployment = inference_config._deployment(
            name=name, compute_type=compute_type, models=model_refs,
            port=getattr(deployment_config, "port", None), auth_enabled=auth, config=config,
            tags=dict(getattr(aci, "tags", None) or {}),
            properties=dict(getattr(aci, "properties", None) or {}),
            description=getattr(aci, "description", None), server=server, worker_count=1,
            overwrite=bool(overwrite), primary_key=getattr(aci, "primary_key", None),
            secondary_key=getattr(aci, "secondary_key", None))
        try:
            info = workspace._backend.service_deploy(
                workspace._info, deployment, print if show_output else _silent)
        except ModelNotFoundException as exc:
            if isinstance(exc, ModelNotFound):
                raise
            raise _not_found(exc) from None
        return cls(workspace, name, _info=info)

    # --- changing ------------------------------------------------------------------------------
    def update(self, tags: dict[str, Any] | None = None, description: str | None = None,
               sample_input_dataset: Any = None, sample_output_dataset: Any = None,
               resource_configuration: Any = None) -> None:
        """Replace the tags (when given and non-empty) and/or the description."""
        backend, ws_info, name, version = self._require()
        new_tags = _mapping(tags, "Tags") if tags else None
        if description is not None and not isinstance(description, str):
            raise WebserviceException("description must be a string.")
        _ignored(sample_input_dataset=sample_input_dataset,
                 sample_output_dataset=sample_output_dataset,
                 resource_configuration=resource_configuration)
        if new_tags is None and not description:
            return
        current = backend.model_get(ws_info, name, version).tags
        info = backend.model_update(
            ws_info, name, version, add_tags=new_tags,
            remove_tags=[k for k in current if new_tags is not None and k not in new_tags],
            description=description or None)
        self._refresh(info)

    def update_tags_properties(self, add_tags: dict[str, Any] | None = None,
                               remove_tags: Any = None,
                               add_properties: dict[str, Any] | None = None) -> None:
        """Add and remove tags and add properties (properties are add-only) in one change."""
        backend, ws_info, name, version = self._require()
        tags = _mapping(add_tags, "Tags") if add_tags is not None else None
        props = _mapping(add_properties, "Properties") if add_properties is not None else None
        removing = None
        if remove_tags is not None:
            removing = [remove_tags] if isinstance(remove_tags, str) else [
                str(k) for k in remove_tags]
        current = dict(self.tags or {})
        for key, value in (tags or {}).items():
            if key in current:
                print(f"Replacing tag {key} -> {current[key]} with {key} -> {value}")
            current[key] = value
        for key in removing or []:
            if key in current:
                del current[key]
            else:
                print(f"Tag with key {key} not found.")
        if tags is None and removing is None and props is None:
            return
        try:
            info = backend.model_update(ws_info, name, version, add_tags=tags,
                                        remove_tags=removing, add_properties=props)
        except ModelNotFoundException as exc:
            raise _not_found(exc) from None
        self._refresh(info)

    def add_tags(self, tags: dict[str, Any]) -> None:
        self.update_tags_properties(add_tags=tags)
        print("Model tag add operation complete.")

    def remove_tags(self, tags: Any) -> None:
        self.update_tags_properties(remove_tags=tags)
        print("Model tag remove operation complete.")

    def add_properties(self, properties: dict[str, Any]) -> None:
        self.update_tags_properties(add_properties=properties)
        print("Model properties add operation complete.")

    def delete(self) -> None:
        """Delete this version (its row and its files)."""
        backend, ws_info, name, version = self._require()
        try:
            backend.model_delete(ws_info, name, version)
        except ModelNotFoundException as exc:
            raise _not_found(exc) from None

    # --- (de)serialising -----------------------------------------------------------------------
    def serialize(self) -> dict[str, Any]:
        return {
            "createdTime": self.created_time.isoformat() if self.created_time else None,
            "createdBy": self.created_by,
            "description": self.description,
            "id": self.id,
            "mimeType": self.mime_type,
            "name": self.name,
            "framework": self.model_framework,
            "frameworkVersion": self.model_framework_version,
            "tags": self.tags,
            "properties": self.properties,
            "unpack": self.unpack,
            "url": self.url,
            "version": self.version,
            "experimentName": self.experiment_name,
            "runId": self.run_id,
            "runDetails": str(self.run) if self.run_id else "None",
            "datasets": [],
            "resourceConfiguration": None,
            "sampleInputDatasetId": None,
            "sampleOutputDatasetId": None,
        }

    @staticmethod
    def deserialize(workspace: "Workspace", model_payload: dict[str, Any]) -> "Model":
        info = ModelInfo(
            name=model_payload["name"], version=int(model_payload["version"]),
            created_time=datetime.fromisoformat(model_payload["createdTime"]),
            tags=dict(model_payload.get("tags") or {}),
            properties=dict(model_payload.get("properties") or {}),
            description=model_payload.get("description"),
            model_framework=model_payload.get("framework"),
            model_framework_version=model_payload.get("frameworkVersion"),
            run_id=model_payload.get("runId"), experiment_name=model_payload.get("experimentName"))
        return Model(workspace, _info=info)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(workspace={self.workspace!r}, name={self.name}, "
                f"id={self.id}, version={self.version}, tags={self.tags}, "
                f"properties={self.properties})")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Model) and self.id is not None and self.id == other.id
                and self.workspace == other.workspace)

    def __hash__(self) -> int:
        return hash((self.id, self.workspace))


# --- Run.register_model ---------------------------------------------------------------------------

def register_model_from_run(run: "Run", model_name: str, model_path: str | None = None,
                            tags: dict[str, Any] | None = None,
                            properties: dict[str, Any] | None = None,
                            model_framework: str | None = None,
                            model_framework_version: str | None = None,
                            description: str | None = None, datasets: Any = None,
                            sample_input_dataset: Any = None, sample_output_dataset: Any = None,
                            resource_configuration: Any = None, **kwargs: Any) -> Model:
    """``run.register_model``: register a file, or a folder prefix, among the run's uploaded
    files (``model_path`` defaults to the model name).

    :raises ModelPathNotFoundException: the path is not among the run's files (the message lists
        them: files in ``./outputs`` are only uploaded when the run completes).
    """
    registration = _registration(model_name, tags, properties, description, model_framework,
                                 model_framework_version)
    path = model_name if model_path is None else os.fspath(model_path)
    _ignored(datasets=datasets, sample_input_dataset=sample_input_dataset,
             sample_output_dataset=sample_output_dataset,
             resource_configuration=resource_configuration)
    workspace = run.experiment.workspace
    info = workspace._backend.model_register(workspace._info, replace(
        registration, run_id=run.id, run_path=path, experiment_name=run.experiment.name))
    return Model(workspace, _info=info)


# --- get_model_path helpers -----------------------------------------------------------------------

def _models_dir() -> str:
    return os.path.join(os.environ.get("AML_APP_ROOT", ""), MODELS_DIR_NAME)


def _single_entry(folder: str) -> str | None:
    """The one file or folder inside a version folder (Azure's rule)."""
    if not os.path.isdir(folder):
        return None
    entries = sorted(e for e in os.listdir(folder) if not e.startswith(".simml-tmp-"))
    if not entries:
        return None
    if len(entries) != 1:
        raise WebserviceException(f"Dir {folder} can contain only 1 file or folder. "
                                  f"Found {entries}")
    return os.path.join(folder, entries[0])


def _highest_version(folder: str) -> int | None:
    try:
        versions = [int(e) for e in os.listdir(folder) if e.isdigit()]
    except OSError:
        return None
    return max(versions) if versions else None


def _from_model_dir(model_name: str, version: int | None) -> str | None:
    model_dir = os.environ.get("AZUREML_MODEL_DIR")
    if not model_dir or not os.path.isdir(model_dir):
        return None
    normalized = os.path.normpath(model_dir)
    parent, leaf = os.path.split(normalized)
    if os.path.basename(parent) == model_name and leaf.isdigit() and (
            version is None or int(leaf) == version):
        return _single_entry(normalized)        # one model: the dir is its version folder
    chosen = version if version is not None else _highest_version(
        os.path.join(normalized, model_name))
    if chosen is None:
        return None
    return _single_entry(os.path.join(normalized, model_name, str(chosen)))


def _from_cache(model_name: str, version: int | None) -> str | None:
    base = os.path.join(_models_dir(), model_name)
    chosen = version if version is not None else _highest_version(base)
    if chosen is None:
        return None
    return _single_entry(os.path.join(base, str(chosen)))


def _download_to_cache(workspace: "Workspace", model_name: str, version: int | None) -> str:
    try:
        model = Model(workspace, name=model_name, version=version)
    except ModelNotFoundException:
        known = sorted(f"{m.name}/{m.version}" for m in Model.list(workspace))
        raise ModelNotFound(f"Model/Version {model_name}/{version} not found in workspace. "
                            f"{known}") from None
    target = os.path.join(_models_dir(), model_name, str(model.version))
    cached = _single_entry(target)
    if cached is not None and _complete(target, model.files):
        return cached
    return model.download(target, exist_ok=True)


def _complete(target: str, files: list[str]) -> bool:
    return all(os.path.isfile(os.path.join(target, *f.split("/"))) for f in files)


def _context_workspace() -> "Workspace | None":
    """The submitted run's workspace, when this process is one (never starts an offline run)."""
    try:
        from simml.core.run import Run
        run = Run.get_context(allow_offline=False)
    except RunEnvironmentException:
        return None
    except Exception:  # a job side that cannot reach its workspace: search locally only
        logger.debug("no context workspace for get_model_path", exc_info=True)
        return None
    experiment = getattr(run, "experiment", None)
    return getattr(experiment, "workspace", None)


# --- deployment helpers ---------------------------------------------------------------------------

def _silent(line: str) -> None:
    pass


def _deploy_warning() -> None:
    if os.environ.get("AZUREML_LOG_DEPRECATION_WARNING_ENABLED", "").lower() == "false":
        return
    import warnings
    warnings.warn("simml mirrors Azure ML SDK v1 deployment (Model.deploy); Azure recommends SDK "
                  "or CLI v2 managed online endpoints for new work. Set "
                  "AZUREML_LOG_DEPRECATION_WARNING_ENABLED=False to hide this warning.",
                  FutureWarning, stacklevel=3)


def _deployed_models(workspace: "Workspace", models: Any) -> tuple[tuple[str, int], ...]:
    """``(name, version)`` of each registered model to deploy (checked to exist)."""
    if models is None:
        return ()
    if isinstance(models, (str, Model)) or not isinstance(models, (list, tuple)):
        raise WebserviceException("Error, models must be a list of Model objects.")
    refs: list[tuple[str, int]] = []
    for model in models:
        if not isinstance(model, Model) or model._info is None:
            raise WebserviceException(f"Error, models must be registered Model objects, not "
                                      f"{model!r}.")
        ref = (model._info.name, model._info.version)
        try:
            workspace._backend.model_get(workspace._info, *ref)
        except ModelNotFoundException as exc:
            raise ModelNotFound(f"ModelNotFound: Model {ref[0]}:{ref[1]} cannot be deployed: it "
                                f"is not registered in workspace {workspace.name} "
                                f"({exc.message})") from None
        if ref not in refs:
            refs.append(ref)
    return tuple(refs)


class InferenceConfig:
    """How to serve models (``azureml.core.model.InferenceConfig``): the entry script, its source
    folder and the environment it runs in.

    ``environment`` (an ``Environment``) is built like a run's (a cached uv virtual environment;
    user-managed ones and ``None`` run on the interpreter simml runs on). The legacy ``runtime`` +
    ``conda_file`` form becomes ``Environment.from_conda_specification``. GPU and base-image
    arguments are validated and recorded; they have no effect locally.
    """

    def __init__(self, entry_script: str, runtime: str | None = None,
                 conda_file: str | None = None, extra_docker_file_steps: str | None = None,
                 source_directory: str | None = None, enable_gpu: bool | None = None,
                 description: str | None = None, base_image: str | None = None,
                 base_image_registry: Any = None, cuda_version: str | None = None,
                 environment: Any = None) -> None:
        self.entry_script = entry_script
        self.runtime = runtime
        self.conda_file = conda_file
        self.extra_docker_file_steps = extra_docker_file_steps
        self.source_directory = (os.path.realpath(os.fspath(source_directory))
                                 if source_directory else None)
        self.enable_gpu = enable_gpu
        self.description = description
        self.base_image = base_image
        self.base_image_registry = base_image_registry
        self.cuda_version = cuda_version
        self.environment = environment
        self.validate_configuration()

    def validate_configuration(self) -> None:
        """Azure's checks (``WebserviceException``)."""
        from simml.core.environment import Environment
        if not self.entry_script:
            raise WebserviceException("Error, need to specify entry_script.")
        if not isinstance(self.entry_script, (str, os.PathLike)):
            raise WebserviceException("Error, entry_script must be a path.")
        if self.environment is not None:
            legacy = {"runtime": self.runtime, "conda_file": self.conda_file,
                      "extra_docker_file_steps": self.extra_docker_file_steps,
                      "enable_gpu": self.enable_gpu, "base_image": self.base_image,
                      "cuda_version": self.cuda_version}
            given = [k for k, v in legacy.items() if v]
            if given:
                raise WebserviceException(
                    f"Error, both environment and {', '.join(given)} are set: with an "
                    "environment only entry_script, source_directory and description may be "
                    "given.")
            if not isinstance(self.environment, Environment):
                raise WebserviceException("Error, environment must be an Environment.")
        else:
            if self.runtime is not None and str(self.runtime).lower() not in ("python",
                                                                                "spark-py"):
                raise WebserviceException("Provided runtime not supported. Possible values are "
                                          "\"spark-py\" or \"python\".")
            if self.conda_file is not None and not os.path.isfile(self.conda_file):
                raise WebserviceException(f"Error, provided conda file {self.conda_file} could "
                                          "not be found.")
        if self.source_directory is not None and not os.path.isdir(self.source_directory):
            raise WebserviceException(f"Error, specified source_directory "
                                      f"{self.source_directory} does not exist.")
        script = os.fspath(self.entry_script)
        if not script.endswith(".py"):
            raise WebserviceException("Invalid driver type. Currently only Python drivers are "
                                      "supported.")
        full = os.path.join(self.source_directory or os.getcwd(), script)
        if not os.path.isfile(full):
            where = (f"the source directory {self.source_directory}" if self.source_directory
                     else f"the current working directory {os.getcwd()}")
            raise WebserviceException(
                f"Error, provided entry_script {script} does not exist in {where}: "
                "entry_script should be path relative to current working directory (or to "
                "source_directory when one is given).")
        if self.source_directory is not None and not _inside(
                os.path.realpath(full), self.source_directory):
            raise UnsafePathException(f"Error, entry_script {script} is outside the source "
                                      f"directory {self.source_directory}.")

    def _environment(self) -> Any:
        if self.environment is not None:
            return self.environment
        if self.conda_file:
            from simml.core.environment import Environment
            return Environment.from_conda_specification("inference-environment",
                                                        self.conda_file)
        return None

    def _runs_on_current_interpreter(self) -> bool:
        env = self._environment()
        return env is None or (bool(env.python.user_managed_dependencies) and not os.path.isabs(
            str(env.python.interpreter_path or "")))

    def _deployment(self, *, name: str, compute_type: str, models: tuple[tuple[str, int], ...],
                    port: int | None, auth_enabled: bool, config: dict[str, Any],
                    tags: dict[str, str], properties: dict[str, str], description: str | None,
                    server: str, worker_count: int, overwrite: bool = False,
                    primary_key: str | None = None, secondary_key: str | None = None) -> Any:
        """The backend request, with the app's files collected from disk now."""
        from simml.entities import ServiceDeployment, UploadItem
        script = os.fspath(self.entry_script)
        if self.source_directory is not None:
            from simml.core.submission import snapshot_items
            items = tuple(snapshot_items(self.source_directory))
            entry = os.path.relpath(os.path.realpath(os.path.join(self.source_directory, script)),
                                    self.source_directory).replace(os.sep, "/")
            if entry not in {i.target for i in items}:
                raise WebserviceException(f"Error, entry_script {script} is excluded from the "
                                          "source directory by .amlignore/.gitignore.")
            entry_path = None
        else:
            entry_path = os.path.realpath(script)
            entry = os.path.basename(entry_path)
            items = (UploadItem(entry_path, entry),) + (
                (UploadItem(entry_path, "main.py"),) if entry != "main.py" else ())
        environment = self._environment()
        return ServiceDeployment(
            name=name, compute_type=compute_type, entry_script=entry, source_items=items,
            models=models, environment=environment._definition() if environment else None,
            port=port, auth_enabled=auth_enabled, primary_key=primary_key,
            secondary_key=secondary_key, server=server, worker_count=worker_count,
            config=dict(config, port=port, worker_count=worker_count),
            inference_config={"entry_script": entry_path or script,
                              "source_directory": self.source_directory,
                              "description": self.description},
            tags=tags, properties=properties, description=description, overwrite=overwrite)

    @staticmethod
    def _from_serialized(data: dict[str, Any], environment: dict[str, Any] | None
                         ) -> "InferenceConfig":
        env = None
        if environment is not None:
            from simml.core.environment import Environment
            env = Environment._from_definition(environment)
        return InferenceConfig(entry_script=data["entry_script"],
                               source_directory=data.get("source_directory"),
                               description=data.get("description"), environment=env)

    def serialize(self) -> dict[str, Any]:
        env = self._environment()
        return {"entryScript": os.fspath(self.entry_script),
                "sourceDirectory": self.source_directory, "description": self.description,
                "environment": env._definition() if env is not None else None}

    def __repr__(self) -> str:
        return (f"InferenceConfig(entry_script={self.entry_script}, "
                f"source_directory={self.source_directory}, environment="
                f"{getattr(self.environment, 'name', None)})")

