"""Azure's deprecated estimators: ``Estimator`` and the base the framework estimators share.

An estimator is a ``ScriptRunConfig`` built from keyword arguments: ``script_params`` (a dict)
becomes the flat ``arguments`` list, ``pip_packages`` / ``conda_packages`` an environment, and
``experiment.submit(estimator)`` runs the same submission as a ``ScriptRunConfig`` (validate →
snapshot → create the run → backend submit). Nothing is submitted when a check fails.

The environment (decided here, documented in docs/seed.md):

* ``environment_definition=`` is used as given (no other environment argument may be combined
  with it, as in Azure);
* ``user_managed=True``, or nothing to install (no packages and no dependency files, once the
  framework's own pins are mapped to what the current interpreter has), is a *user-managed
  environment on the current interpreter*: the job runs with ``sys.executable``, nothing is built;
* otherwise the packages become a ``simml.core.environment.Environment`` whose
  ``CondaDependencies.create(pip_packages=..., conda_packages=..., python_version=<this
  interpreter's>)`` the Preparing stage builds into a virtual environment with uv (cached by the
  hash of its spec, so only the first run pays for the build). The framework's pins are mapped to
  the versions installed here, so the venv holds the same scikit-learn / scipy as this interpreter.

``use_docker=True`` is the signature's default, as in Azure. Whether the caller passed it is
recorded (``definition["docker"]["explicit"]``), because the runtime choice ignores the implicit
default: the seed doc never asked for Docker, it only got Azure's default.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from simml.exceptions import TrainingException

if TYPE_CHECKING:
    from simml.core.experiment import Experiment
    from simml.core.run import Run
    from simml.core.script_run_config import ScriptRunConfig

logger = logging.getLogger("simml.train.estimator")

DEFAULT_CPU_IMAGE = "mcr.microsoft.com/azureml/intelmpi2018.3-ubuntu16.04:20200423.v1"
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/intelmpi2018.3-cuda10.0-cudnn7-ubuntu16.04:20200423.v1"
DEFAULT_SHM_SIZE = "2g"

_ENVIRONMENT_ARGUMENTS = ("custom_docker_image", "image_registry_details", "user_managed",
                          "conda_packages", "pip_packages", "conda_dependencies_file_path",
                          "pip_requirements_file_path", "conda_dependencies_file",
                          "pip_requirements_file", "environment_variables", "shm_size")


def records_explicit_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """Remember which keyword arguments the caller actually passed to ``__init__``.

    The outermost ``__init__`` wins (a subclass calling its base passes everything explicitly).
    ``functools.wraps`` keeps Azure's signature visible to ``inspect.signature``.
    """
    @functools.wraps(init)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        if "_explicit_arguments" not in self.__dict__:
            self._explicit_arguments = frozenset(kwargs)
        init(self, *args, **kwargs)
    return wrapper


def script_params_to_arguments(script_params: Any) -> list[Any]:
    """Azure's ``script_params`` dict as the flat ``arguments`` list of a run.

    ``{'--kernel': 'linear', '--penalty': 1.0}`` → ``['--kernel', 'linear', '--penalty', 1.0]``.
    Values may be str, int, float, bool, a data reference (``ds.path('x').as_mount()``) or a
    datastore (its root, mounted); ``None`` or ``''`` leave the key alone (a flag), as Azure drops
    empty items. Anything else is a ``TrainingException`` naming the key.
    """
    from simml.core.datastore import Datastore
    from simml.data.data_reference import DataReference
    if script_params is None:
        return []
    if not isinstance(script_params, dict):
        raise TrainingException(
            f"script_params must be a dict of command-line options to values, not "
            f"{type(script_params).__name__}.")
    arguments: list[Any] = []
    for key, value in script_params.items():
        if not isinstance(key, str) or not key:
            raise TrainingException(
                f"script_params key {key!r} must be a non-empty string such as '--kernel'.")
        arguments.append(key)
        if type(value).__module__ == "numpy" and hasattr(value, "item") and \
                getattr(value, "ndim", 0) == 0:
            value = value.item()
        if value is None or (isinstance(value, str) and value == ""):
            continue
        if isinstance(value, Datastore):
            value = value.as_mount()
        if isinstance(value, float) and not math.isfinite(value):
            raise TrainingException(
                f"script_params[{key!r}] is {value!r}: numbers must be finite.")
        if isinstance(value, (str, bool, int, float, DataReference)):
            arguments.append(value)
            continue
        raise TrainingException(
            f"script_params[{key!r}] is a {type(value).__name__} ({value!r:.80}): values must be "
            "str, int, float, bool or a data reference (datastore.path('x').as_mount()). Pass "
            "several values as one string and split it in the script.")
    return arguments


def _installed_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _requirement_name(requirement: str) -> str:
    """The distribution name of a pip requirement (``joblib>=1.3`` → ``joblib``)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return match.group(1) if match else requirement.strip()


def _read_requirements(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TrainingException(f"Cannot read the pip requirements file {str(path)!r}: {exc}.")
    return [line.split("#", 1)[0].strip() for line in lines
            if line.split("#", 1)[0].strip() and not line.strip().startswith("-")]


class MMLBaseEstimator:
    """What every estimator shares (Azure's ``azureml.train.estimator._mml_base_estimator``)."""

    _logger = logger
    _deprecation = ("'Estimator' is deprecated. Please use 'ScriptRunConfig' from "
                    "'simml.core.script_run_config' with your own defined environment or an "
                    "AzureML curated environment.")
    _explicit_arguments: frozenset[str]

    def _setup(self, source_directory: str | os.PathLike[str], *, compute_target: Any,
               vm_size: Any, vm_priority: Any, entry_script: str | None, script_params: Any,
               node_count: int, process_count_per_node: int, distributed_training: Any,
               use_gpu: bool, use_docker: bool, custom_docker_image: str | None,
               image_registry_details: Any, user_managed: bool, conda_packages: Any,
               pip_packages: Any, conda_dependencies_file_path: Any,
               pip_requirements_file_path: Any, conda_dependencies_file: Any,
               pip_requirements_file: Any, environment_variables: Any,
               environment_definition: Any, inputs: Any, shm_size: Any, resume_from: Any,
               max_run_duration_seconds: Any, framework_pins: dict[str, str] | None = None,
               framework_version: str | None = None) -> None:
        """Validate and keep everything; log Azure's construction warnings. Writes nothing."""
        explicit = getattr(self, "_explicit_arguments", frozenset())
        self._logger.warning(self._deprecation)
        if source_directory is None:
            raise TrainingException("source_directory is required.")
        self._source_directory = os.fspath(source_directory)
        if vm_size is not None and compute_target is None:
            raise TrainingException(
                "vm_size without compute_target asks for a run-based AmlCompute, which simml "
                "does not support: create a cluster (ComputeTarget.create) and pass it as "
                "compute_target.")
        if node_count != 1 or process_count_per_node != 1 or distributed_training is not None:
            raise TrainingException(
                "Distributed training (node_count, process_count_per_node, "
                "distributed_training) is not supported by simml yet: jobs run on one node.")
        self._arguments = script_params_to_arguments(script_params)
        self._script_params = dict(script_params or {})
        self._inputs = tuple(inputs or ())
        from simml.core.datastore import Datastore
        from simml.data.data_reference import DataReference
        for item in self._inputs:
            if not isinstance(item, (DataReference, Datastore)):
                raise TrainingException(
                    f"Type {type(item).__name__} is not supported for inputs: use data "
                    "references (datastore.path('x').as_mount() / .as_download()).")
        if environment_variables is not None and not isinstance(environment_variables, dict):
            raise TrainingException("environment_variables must be a dict of names to values.")
        if environment_definition is not None:
            clashes = sorted(name for name in _ENVIRONMENT_ARGUMENTS
                             if name in explicit and name != "environment_variables")
            if clashes:
                raise TrainingException(
                    "If environment_definition parameter is specified, no other environment-"
                    f"related parameters can be specified; got {', '.join(clashes)}.")
        self._pip_packages = [str(p) for p in (pip_packages or [])]
        self._conda_packages = [str(p) for p in (conda_packages or [])]
        if self._pip_packages or self._conda_packages:
            listed = self._pip_packages + self._conda_packages
            self._logger.warning(
                "You have specified to install packages in your run. Note that you have "
                f"overridden Azure ML's installation of the following packages: {listed}. We "
                "cannot guarantee image build will succeed.")
        self._entry_script = entry_script
        self._compute_target = compute_target
        self._vm_size, self._vm_priority = vm_size, vm_priority
        self._use_gpu = bool(use_gpu)
        self._docker = {
            "enabled": bool(use_docker), "explicit": "use_docker" in explicit,
            "baseImage": custom_docker_image or (DEFAULT_GPU_IMAGE if use_gpu
                                                 else DEFAULT_CPU_IMAGE),
            "customImage": custom_docker_image is not None,
            "baseImageRegistry": _registry(image_registry_details),
            "shmSize": shm_size or DEFAULT_SHM_SIZE,
        }
        self._user_managed = bool(user_managed)
        self._conda_file_path = conda_dependencies_file_path
        self._pip_file_path = pip_requirements_file_path
        self._conda_file = conda_dependencies_file
        self._pip_file = pip_requirements_file
        self._environment_variables = {str(k): str(v) for k, v in
                                       (environment_variables or {}).items()}
        self._environment_definition = environment_definition
        self._resume_from = resume_from
        self._max_run_duration_seconds = max_run_duration_seconds
        self._framework_version = framework_version
        self._legacy_pins = dict(framework_pins or {})
        self._framework_pins = self._map_framework_pins(framework_pins)

    # --- the framework's pins ------------------------------------------------------------------
    def _map_framework_pins(self, pins: dict[str, str] | None) -> dict[str, str]:
        """The framework's pinned packages, mapped to the versions this interpreter has."""
        if not pins or self._user_managed or self._environment_definition is not None:
            return {}
        return {name: _installed_version(name) or version for name, version in pins.items()
                if name != "python"}

    # --- Azure's read-only properties ----------------------------------------------------------
    @property
    def source_directory(self) -> str:
        return self._source_directory

    @property
    def script_params(self) -> dict[str, Any]:
        return dict(self._script_params)

    @property
    def arguments(self) -> list[Any]:
        return list(self._arguments)

    @property
    def run_config(self) -> Any:
        """The generated run configuration (script, arguments, target, environment, ...)."""
        return self._script_run_config().run_config

    @property
    def conda_dependencies(self) -> Any:
        environment = self._environment()
        python = getattr(environment, "python", None)
        return getattr(python, "conda_dependencies", None)

    # --- building the run ----------------------------------------------------------------------
    def _pip_requirements(self) -> list[str]:
        packages = list(self._pip_packages)
        for path in (self._pip_file_path, self._pip_file):
            if path is None:
                continue
            where = Path(path)
            if path is self._pip_file and not where.is_absolute():
                where = Path(self._source_directory) / where  # Azure: relative to the source
            packages += _read_requirements(where)
        named = {_requirement_name(p).lower().replace("_", "-") for p in packages}
        packages += [f"{name}=={version}" for name, version in self._framework_pins.items()
                     if name.lower() not in named]
        return packages

    def _needs_build(self) -> bool:
        """Is there anything the current interpreter does not already give?"""
        return bool(self._pip_packages or self._conda_packages or self._pip_file_path or
                    self._pip_file or self._conda_file_path or self._conda_file)

    def _environment(self) -> Any:
        if self._environment_definition is not None:
            return self._environment_definition
        name = f"{type(self).__name__}-estimator"
        from simml.core.conda_dependencies import CondaDependencies
        from simml.core.environment import Environment
        environment = Environment(name)
        environment.environment_variables = dict(self._environment_variables)
        if self._docker["explicit"]:  # the implicit default stays unset
            environment.docker.enabled = self._docker["enabled"]
        if self._docker["customImage"]:
            environment.docker.base_image = self._docker["baseImage"]
        environment.docker.shm_size = self._docker["shmSize"]
        if self._user_managed or not self._needs_build():
            # Nothing to install beyond what this interpreter has (the framework's pins are
            # mapped to its versions): run on it, build nothing.
            environment.python.user_managed_dependencies = True
            environment.python.conda_dependencies = None
            return environment
        conda_file = self._conda_file_path or (
            str(Path(self._source_directory) / self._conda_file) if self._conda_file else None)
        if conda_file is not None:
            dependencies = CondaDependencies(conda_dependencies_file_path=conda_file)
            for package in self._pip_requirements():
                dependencies.add_pip_package(package)
            for package in self._conda_packages:
                dependencies.add_conda_package(package)
        else:
            dependencies = CondaDependencies.create(
                pip_packages=self._pip_requirements(), conda_packages=self._conda_packages,
                python_version=platform.python_version())
        environment.python.user_managed_dependencies = False
        environment.python.conda_dependencies = dependencies
        return environment

    def _script_run_config(self) -> "ScriptRunConfig":
        from simml.core.script_run_config import (
            DEFAULT_MAX_RUN_DURATION_SECONDS,
            ScriptRunConfig,
        )
        config = ScriptRunConfig(
            self._source_directory, script=self._entry_script, arguments=self._arguments,
            compute_target=self._compute_target, environment=self._environment(),
            resume_from=self._resume_from,
            max_run_duration_seconds=(self._max_run_duration_seconds if
                                      self._max_run_duration_seconds is not None else
                                      DEFAULT_MAX_RUN_DURATION_SECONDS))
        config._inputs = self._inputs
        config.run_config.environment_variables = dict(self._environment_variables)
        return config

    # --- submission ----------------------------------------------------------------------------
    def _submit_to(self, experiment: "Experiment", **kwargs: Any) -> "Run":
        from simml.core.submission import submit_script_run
        return submit_script_run(experiment, self)

    def _validated(self, experiment: "Experiment") -> dict[str, Any]:
        """The run definition of a ``ScriptRunConfig`` plus the estimator's own sections."""
        if not self._entry_script:
            raise TrainingException(
                f"{type(self).__name__} needs entry_script: the script to run, relative to "
                "source_directory.")
        definition = self._script_run_config()._validated(experiment)
        definition["docker"] = dict(self._docker)
        definition["estimator"] = {
            "class": type(self).__name__,
            "frameworkVersion": self._framework_version,
            "pipPackages": list(self._pip_packages),
            "condaPackages": list(self._conda_packages),
            "legacyPins": dict(self._legacy_pins),
            "frameworkPins": ({"python": platform.python_version(), **self._framework_pins}
                              if self._framework_pins else {}),
            "userManaged": self._user_managed,
            "useGpu": self._use_gpu,
            "vmSize": self._vm_size,
            "vmPriority": self._vm_priority,
        }
        return definition


def _registry(details: Any) -> dict[str, Any] | None:
    if details is None:
        return None
    address = getattr(details, "address", None)
    return {"address": address, "username": getattr(details, "username", None)}


class Estimator(MMLBaseEstimator):
    """Azure's generic ``Estimator`` (deprecated in Azure): a script, its parameters, where it
    runs and which packages it needs."""

    @records_explicit_arguments
    def __init__(self, source_directory: str | os.PathLike[str], *, compute_target: Any = None,
                 vm_size: str | None = None, vm_priority: str | None = None,
                 entry_script: str | None = None, script_params: dict[str, Any] | None = None,
                 node_count: int = 1, process_count_per_node: int = 1,
                 distributed_backend: Any = None, distributed_training: Any = None,
                 use_gpu: bool = False, use_docker: bool = True,
                 custom_docker_base_image: str | None = None,
                 custom_docker_image: str | None = None, image_registry_details: Any = None,
                 user_managed: bool = False, conda_packages: list[str] | None = None,
                 pip_packages: list[str] | None = None,
                 conda_dependencies_file_path: str | None = None,
                 pip_requirements_file_path: str | None = None,
                 conda_dependencies_file: str | None = None,
                 pip_requirements_file: str | None = None,
                 environment_variables: dict[str, str] | None = None,
                 environment_definition: Any = None, inputs: list[Any] | None = None,
                 source_directory_data_store: Any = None, shm_size: str | None = None,
                 resume_from: Any = None, max_run_duration_seconds: int | None = None,
                 _disable_validation: bool = True, _show_lint_warnings: bool = False,
                 _show_package_warnings: bool = False) -> None:
        if distributed_backend is not None and distributed_training is None:
            distributed_training = distributed_backend
        self._setup(
            source_directory, compute_target=compute_target, vm_size=vm_size,
            vm_priority=vm_priority, entry_script=entry_script, script_params=script_params,
            node_count=node_count, process_count_per_node=process_count_per_node,
            distributed_training=distributed_training, use_gpu=use_gpu, use_docker=use_docker,
            custom_docker_image=custom_docker_image or custom_docker_base_image,
            image_registry_details=image_registry_details, user_managed=user_managed,
            conda_packages=conda_packages, pip_packages=pip_packages,
            conda_dependencies_file_path=conda_dependencies_file_path,
            pip_requirements_file_path=pip_requirements_file_path,
            conda_dependencies_file=conda_dependencies_file,
            pip_requirements_file=pip_requirements_file,
            environment_variables=environment_variables,
            environment_definition=environment_definition, inputs=inputs, shm_size=shm_size,
            resume_from=resume_from, max_run_duration_seconds=max_run_duration_seconds)
