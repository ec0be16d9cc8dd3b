"""``ScriptRunConfig``: what to run (a script and its arguments), where, and in which environment.

Submitting one validates everything first (source folder, script, arguments, compute target), then
snapshots the source folder, creates the run (NotStarted) and hands it to the backend, which
returns at once; nothing is created when validation fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simml.exceptions import ComputeTargetException, RunConfigurationException

if TYPE_CHECKING:
    from simml.core.experiment import Experiment
    from simml.core.run import Run

LOCAL_TARGET = "local"
DEFAULT_MAX_RUN_DURATION_SECONDS = 2592000


class RunConfiguration:
    """The subset of Azure's ``RunConfiguration`` simml honours."""

    def __init__(self, script: str | None = None, arguments: list[Any] | None = None,
                 framework: str | None = None, communicator: str | None = None,
                 conda_dependencies: Any = None, _history_enabled: Any = None,
                 _path: Any = None, _name: Any = None, command: Any = None) -> None:
        self.script = script
        self.arguments = list(arguments or [])
        self.target = LOCAL_TARGET
        self.environment: Any = None
        self.node_count = 1
        self.max_run_duration_seconds: int | None = None
        self.framework = framework or "Python"
        self.environment_variables: dict[str, str] = {}
        self.docker: Any = None  # a runconfig.DockerConfiguration (Azure's run_config.docker)


class ScriptRunConfig:
    """Azure's ``ScriptRunConfig`` (``compute_target=None`` means ``'local'``)."""

    _inputs: tuple[Any, ...] = ()  # data references given outside the arguments (estimators)

    def __init__(self, source_directory: str | os.PathLike[str], script: str | None = None,
                 arguments: list[Any] | None = None, run_config: RunConfiguration | None = None,
                 _telemetry_values: Any = None, compute_target: Any = None,
                 environment: Any = None, distributed_job_config: Any = None,
                 resume_from: Any = None,
                 max_run_duration_seconds: int = DEFAULT_MAX_RUN_DURATION_SECONDS,
                 command: Any = None, docker_runtime_config: Any = None) -> None:
        if script is not None and command is not None:
            raise RunConfigurationException("Use either script or command, not both.")
        if command is not None:
            raise RunConfigurationException(
                "ScriptRunConfig(command=...) is not supported by simml yet; use script= and "
                "arguments=.")
        self.source_directory = os.fspath(source_directory)
        self.run_config = run_config or RunConfiguration()
        self.script = script if script is not None else self.run_config.script
        self.arguments = list(arguments) if arguments is not None else self.run_config.arguments
        if compute_target is not None:
            self.run_config.target = compute_target
        if environment is not None:
            self.run_config.environment = environment
        if docker_runtime_config is not None:
            from simml.core.runconfig import DockerConfiguration
            if not isinstance(docker_runtime_config, DockerConfiguration):
                raise RunConfigurationException(
                    "docker_runtime_config must be a DockerConfiguration (simml.core.runconfig), "
                    f"not {type(docker_runtime_config).__name__}.")
            self.run_config.docker = docker_runtime_config
        self.run_config.max_run_duration_seconds = max_run_duration_seconds

    @property
    def compute_target(self) -> Any:
        return self.run_config.target

    @property
    def environment(self) -> Any:
        return self.run_config.environment

    # --- submission ----------------------------------------------------------------------------
    def _submit_to(self, experiment: "Experiment", **kwargs: Any) -> "Run":
        from simml.core.submission import submit_script_run
        return submit_script_run(experiment, self)

    def _validated(self, experiment: "Experiment") -> dict[str, Any]:
        """Check everything a submission needs; return the run definition. Writes nothing."""
        source = Path(self.source_directory)
        if not source.is_dir():
            raise RunConfigurationException(
                f"The source directory {self.source_directory!r} does not exist or is not a folder.")
        if not self.script:
            raise RunConfigurationException("ScriptRunConfig needs a script to run.")
        script = Path(self.script)
        if script.is_absolute() or ".." in script.parts:
            raise RunConfigurationException(
                f"The script {self.script!r} must be a path inside the source directory.")
        if not (source / script).is_file():
            raise RunConfigurationException(
                f"The script {self.script!r} was not found in the source directory "
                f"{self.source_directory!r}.")
        target = _target_name(self.run_config.target)
        arguments = [_serialise_argument(a) for a in self.arguments]
        references = _data_references(arguments, getattr(self, "_inputs", ()))
        _check_data_references(experiment, references)
        if target != LOCAL_TARGET:
            workspace = experiment.workspace
            workspace._backend.compute_get(workspace._info, target)  # ComputeTargetException
        definition = {
            "script": script.as_posix(),
            "arguments": arguments,
            "target": target,
            "environment": _environment_definition(self.run_config.environment),
            "maxRunDurationSeconds": self.run_config.max_run_duration_seconds,
            "nodeCount": self.run_config.node_count,
            "environmentVariables": dict(self.run_config.environment_variables),
        }
        if references:
            definition["dataReferences"] = references
        docker = getattr(self.run_config, "docker", None)
        if docker is not None:
            definition["docker"] = docker._definition()
        from simml.core.runconfig import docker_run_options
        environment_docker = definition["environment"].get("docker") or {}
        docker_run_options(environment_docker.get("arguments"))  # refused now, not in Preparing
        return definition


def _target_name(target: Any) -> str:
    if target is None:
        return LOCAL_TARGET
    if isinstance(target, str):
        if not target:
            raise ComputeTargetException("compute_target must not be an empty string.")
        return target
    name = getattr(target, "name", None)
    if isinstance(name, str):
        return name
    raise ComputeTargetException(
        f"compute_target must be a compute target or its name, not {type(target).__name__}.")


def _serialise_argument(value: Any) -> Any:
    """Arguments become command-line strings in the job; data references resolve at run time."""
    from simml.core.datastore import Datastore
    from simml.data.data_reference import DataReference
    if isinstance(value, Datastore):  # Azure: a datastore stands for its default reference
        value = value.as_mount()
    if isinstance(value, DataReference):
        return {"dataReference": value.to_config()}
    if isinstance(value, bool) or isinstance(value, (str, int, float)):
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise RunConfigurationException(f"Argument {value!r} is not a finite number.")
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _serialise_argument(value.item())
    raise RunConfigurationException(
        f"Unsupported argument {value!r} of type {type(value).__name__}: arguments must be str, "
        "int, float, bool or a data reference (datastore.path(...).as_mount()).")


def _environment_definition(environment: Any) -> dict[str, Any]:
    if environment is None:
        return {"name": "default-environment", "python": {"userManagedDependencies": True}}
    serialise = getattr(environment, "_definition", None)
    if callable(serialise):
        return serialise()
    raise RunConfigurationException(
        f"environment must be a simml.core.Environment, not {type(environment).__name__}.")


def _data_references(arguments: list[Any], inputs: Any) -> dict[str, Any]:
    """Every data reference of a run by name: those in the arguments, then ``inputs``."""
    from simml.core.datastore import Datastore
    from simml.data.data_reference import DataReference
    found: dict[str, Any] = {}
    configs = [a["dataReference"] for a in arguments
               if isinstance(a, dict) and "dataReference" in a]
    for item in inputs or ():
        if isinstance(item, Datastore):
            item = item.as_mount()
        if not isinstance(item, DataReference):
            raise RunConfigurationException(
                f"Type {type(item).__name__} is not supported for inputs: use data references "
                "(datastore.path(...).as_mount() / .as_download()).")
        configs.append(item.to_config())
    for config in configs:
        known = found.get(config["name"])
        if known is not None and known != config:
            raise RunConfigurationException(
                f"Two different data references are named {config['name']!r}.")
        found[config["name"]] = config
    return found


def _check_data_references(experiment: "Experiment", references: dict[str, Any]) -> None:
    """Refuse, before anything is written, a reference the job could not be given.

    ``as_upload()`` is not supported yet; a mounted or downloaded path must hold at least one
    file in the datastore (blob semantics: a "folder" exists when a file is under it). The check
    uses the backend's datastore listing; a backend without one leaves it to the job's start.
    """
    from simml._paths import safe_relpath
    from simml.exceptions import BackendCapabilityException, NotFoundException
    workspace = experiment.workspace
    for config in references.values():
        store = config["dataStoreName"]
        path = safe_relpath(config.get("pathOnDataStore") or "", allow_empty=True,
                            what="path_on_datastore")
        if config.get("mode") == "upload":
            raise RunConfigurationException(
                f"Data reference {store}/{path} uses as_upload(), which simml does not support "
                "yet: write to ./outputs (collected into the run) or upload from the script.")
        workspace._backend.datastore_get(workspace._info, store)  # an unknown datastore raises
        if not path:
            continue  # the datastore itself always exists
        try:
            names = workspace._backend.datastore_list_files(workspace._info, store, path)
        except BackendCapabilityException:
            continue
        if not any(n == path or n.startswith(path + "/") for n in names):
            raise NotFoundException(
                f"Data reference {store}/{path} ({config.get('mode', 'mount')}): the path does "
                f"not exist in datastore {store!r}, so there is nothing to give the job. Upload "
                f"it first (datastore.upload(src_dir, target_path={path!r})) or fix the path.")
