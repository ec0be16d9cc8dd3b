"""``Environment``: the Python environment a run executes in (Azure's ``azureml.core.Environment``).

An environment is a definition: a name, Python packages (``python.conda_dependencies``, a
``CondaDependencies``), environment variables and a Docker section. ``register(workspace)`` stores
it as a new version (``"1"``, ``"2"``, ...) when the definition changed since the latest version,
and returns that latest version otherwise; ``Environment.get(workspace, name, version=None)`` reads
one back. A ``ScriptRunConfig(environment=env)`` carries ``env._definition()`` (a JSON-able dict in
Azure's layout) in the run definition.

On the local backend a run's Preparing stage materialises the definition as a virtual environment
built with uv and cached by a hash of the resolved specification; with
``python.user_managed_dependencies = True`` the run uses the current interpreter instead.
``docs/environments.md`` describes the build, the cache and the conda -> PyPI name map.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simml.core.conda_dependencies import CondaDependencies
from simml.exceptions import (
    NotFoundException,
    RunConfigurationException,
    UserErrorException,
)

if TYPE_CHECKING:
    from simml.core.workspace import Workspace

DEFAULT_CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20251130.v1"
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:20251130.v1"
DEFINITION_FILE = "azureml_environment.json"
CONDA_FILE = "conda_dependencies.yml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,254}$")
SIMML_SECTION = "simml"
INSTALL_AZUREML = "installAzureml"
"""A definition's ``simml`` section may set ``installAzureml: true``: its ``azureml-*`` pip packages
are then installed, not dropped (``simml serve`` sets it for jobs that use the real SDK)."""


class EnvironmentNotFoundException(NotFoundException):
    """``Environment.get`` named an environment or version the workspace does not have."""


class EnvironmentBuildException(RunConfigurationException):
    """Preparing could not build a run's environment; the message holds the build log's tail."""


class ContainerRegistry:
    """Where a Docker base image comes from (Azure's ``ContainerRegistry``)."""

    def __init__(self) -> None:
        self.address: str | None = None
        self.username: str | None = None
        self.password: str | None = None

    def _definition(self) -> dict[str, Any]:
        return {"address": self.address, "username": self.username, "password": self.password}


class DockerSection:
    """Docker settings of an environment. ``enabled`` remembers whether it was set explicitly
    (``enabled_set_explicitly``): a target may choose Docker by default only when the user did not
    say."""

    def __init__(self) -> None:
        self._enabled = False
        self._enabled_set = False
        self.base_image: str | None = DEFAULT_CPU_IMAGE
        self.base_dockerfile: str | None = None
        self.base_image_registry = ContainerRegistry()
        self.shm_size: str | None = None
        self.arguments: list[str] = []

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        self._enabled_set = True

    @property
    def enabled_set_explicitly(self) -> bool:
        return self._enabled_set

    def _definition(self) -> dict[str, Any]:
        return {"enabled": self._enabled, "enabledSetExplicitly": self._enabled_set,
                "baseImage": self.base_image, "baseDockerfile": self.base_dockerfile,
                "baseImageRegistry": self.base_image_registry._definition(),
                "shmSize": self.shm_size, "arguments": list(self.arguments)}


class PythonSection:
    """Python settings of an environment."""

    def __init__(self) -> None:
        self.user_managed_dependencies = False
        self.interpreter_path = "python"
        self.conda_dependencies_file: str | None = None
        self.base_conda_environment: str | None = None
        self._conda_dependencies: CondaDependencies | None = CondaDependencies()

    @property
    def conda_dependencies(self) -> CondaDependencies | None:
        return self._conda_dependencies

    @conda_dependencies.setter
    def conda_dependencies(self, value: CondaDependencies | None) -> None:
        if value is not None and not isinstance(value, CondaDependencies):
            raise UserErrorException(
                "python.conda_dependencies must be a CondaDependencies "
                f"(CondaDependencies.create(...)), not {type(value).__name__}.")
        self._conda_dependencies = value

    def _definition(self) -> dict[str, Any]:
        cd = self._conda_dependencies
        return {"userManagedDependencies": bool(self.user_managed_dependencies),
                "interpreterPath": self.interpreter_path,
                "condaDependenciesFile": self.conda_dependencies_file,
                "baseCondaEnvironment": self.base_conda_environment,
                "condaDependencies": cd._as_dict() if cd is not None else None}


class Environment:
    """A named, versioned Python environment definition."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        if not isinstance(name, str) or not name.strip():
            raise UserErrorException(f"An environment needs a name, not {name!r}.")
        self.name = name
        self.version: str | None = kwargs.pop("_version", None)
        self.python = PythonSection()
        self.docker = DockerSection()
        self.environment_variables: dict[str, str] = {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
        self.inferencing_stack_version: str | None = None
        self.spark: Any = None
        self.r: Any = None
        self._workspace: Workspace | None = None
        if kwargs:
            raise UserErrorException(f"Unknown Environment arguments: {sorted(kwargs)}.")

    # --- constructors ----------------------------------------------------------------------------
    @staticmethod
    def from_pip_requirements(name: str, file_path: str | os.PathLike[str],
                              pip_version: str | None = None) -> "Environment":
        """An environment with the packages of a pip requirements file."""
        path = Path(file_path)
        if not path.is_file():
            raise UserErrorException(f"The pip requirements file {os.fspath(file_path)!r} "
                                     "was not found.")
        env = Environment(name)
        cd = CondaDependencies()
        if pip_version:
            cd.add_conda_package(f"pip={pip_version}")
        for entry in CondaDependencies._from_pip_requirements(path):
            if entry.startswith("-"):
                if entry.split()[0] in ("-r", "--requirement", "-c", "--constraint", "-e",
                                        "--editable"):
                    raise UserErrorException(
                        f"{path}: {entry.split()[0]} lines are not supported; list the "
                        "requirements in this file.")
                cd.set_pip_option(entry)
            else:
                cd.add_pip_package(entry)
        env.python.conda_dependencies = cd
        return env

    @staticmethod
    def from_conda_specification(name: str, file_path: str | os.PathLike[str]) -> "Environment":
        """An environment with the packages of a conda environment file (``environment.yml``)."""
        if not Path(file_path).is_file():
            raise UserErrorException(f"The conda specification {os.fspath(file_path)!r} "
                                     "was not found.")
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(conda_dependencies_file_path=file_path)
        return env

    @staticmethod
    def from_existing_conda_environment(name: str, conda_environment_name: str) -> "Environment":
        raise RunConfigurationException(
            "Environment.from_existing_conda_environment is not supported by simml: conda is not "
            "used. Export the environment (conda env export --from-history > env.yml) and use "
            "Environment.from_conda_specification, or set python.user_managed_dependencies=True.")

    # --- registry --------------------------------------------------------------------------------
    def register(self, workspace: "Workspace") -> "Environment":
        """Store this definition as a new version of ``self.name`` when it differs from the latest
        version; return the registered (or unchanged latest) environment."""
        _check_name(self.name)
        if self.name.lower().startswith("azureml"):
            raise UserErrorException(
                f"Environment names starting with 'AzureML' are reserved for curated "
                f"environments: {self.name!r}.")
        info = workspace._backend.environment_register(workspace._info, self.name,
                                                       self._definition())
        env = Environment._from_definition(info.definition, name=info.name, version=info.version)
        env._workspace = workspace
        return env

    @staticmethod
    def get(workspace: "Workspace", name: str, version: str | int | None = None,
            label: str | None = None) -> "Environment":
        """A registered environment: ``version`` (``"1"``, ``"2"``, ...) or the latest.

        :raises EnvironmentNotFoundException: no such name or version.
        """
        if label is not None:
            raise UserErrorException("Environment labels are not supported by simml; use "
                                     "version=.")
        info = workspace._backend.environment_get(
            workspace._info, name, None if version is None else str(version))
        env = Environment._from_definition(info.definition, name=info.name, version=info.version)
        env._workspace = workspace
        return env

    @staticmethod
    def list(workspace: "Workspace") -> dict[str, "Environment"]:
        """The latest version of every registered environment, by name."""
        infos = workspace._backend.environment_list(workspace._info)
        out: dict[str, Environment] = {}
        for info in infos:
            env = Environment._from_definition(info.definition, name=info.name,
                                               version=info.version)
            env._workspace = workspace
            out[info.name] = env
        return out

    # --- copies and files ------------------------------------------------------------------------
    def clone(self, new_name: str) -> "Environment":
        """A copy under another name, not registered (no version)."""
        env = Environment._from_definition(self._definition(), name=new_name, version=None)
        return env

    def save_to_directory(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        """Write ``azureml_environment.json`` (and ``conda_dependencies.yml``) into ``path``."""
        folder = Path(path)
        targets = [folder / DEFINITION_FILE, folder / CONDA_FILE]
        if not overwrite and any(t.exists() for t in targets):
            raise UserErrorException(
                f"{folder} already holds an environment definition; pass overwrite=True.")
        folder.mkdir(parents=True, exist_ok=True)
        definition = self._definition()
        cd = self.python.conda_dependencies
        if cd is not None and not self.python.user_managed_dependencies:
            (folder / CONDA_FILE).write_text(cd.serialize_to_string(), encoding="utf-8")
            definition["python"]["condaDependencies"] = None
        elif (folder / CONDA_FILE).exists():
            (folder / CONDA_FILE).unlink()
        (folder / DEFINITION_FILE).write_text(json.dumps(definition, indent=4) + "\n",
                                              encoding="utf-8")

    @staticmethod
    def load_from_directory(path: str | os.PathLike[str]) -> "Environment":
        """Read an environment written by ``save_to_directory``."""
        folder = Path(path)
        try:
            definition = json.loads((folder / DEFINITION_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UserErrorException(f"{folder} holds no {DEFINITION_FILE}.") from exc
        except ValueError as exc:
            raise UserErrorException(f"{folder / DEFINITION_FILE} is not valid JSON: {exc}") \
                from exc
        env = Environment._from_definition(definition)
        if (folder / CONDA_FILE).is_file():
            env.python.conda_dependencies = CondaDependencies(folder / CONDA_FILE)
        return env

    # --- definition ------------------------------------------------------------------------------
    def _definition(self) -> dict[str, Any]:
        """The JSON-able definition a run carries (Azure's environment layout)."""
        if not isinstance(self.environment_variables, dict):
            raise RunConfigurationException("environment_variables must be a dict.")
        return {
            "name": self.name,
            "version": self.version,
            "python": self.python._definition(),
            "environmentVariables": {str(k): str(v) for k, v in
                                     self.environment_variables.items()},
            "docker": self.docker._definition(),
            "spark": copy.deepcopy(self.spark) if isinstance(self.spark, (dict, list)) else None,
            "r": copy.deepcopy(self.r) if isinstance(self.r, (dict, list)) else None,
            "inferencingStackVersion": self.inferencing_stack_version,
        }

    @staticmethod
    def _from_definition(definition: dict[str, Any], name: str | None = None,
                         version: str | None = ...) -> "Environment":  # type: ignore[assignment]
        env = Environment(name or definition.get("name") or "unnamed")
        env.version = definition.get("version") if version is ... else version
        python = definition.get("python") or {}
        env.python.user_managed_dependencies = bool(python.get("userManagedDependencies", False))
        env.python.interpreter_path = python.get("interpreterPath") or "python"
        env.python.conda_dependencies_file = python.get("condaDependenciesFile")
        env.python.base_conda_environment = python.get("baseCondaEnvironment")
        structure = python.get("condaDependencies")
        env.python.conda_dependencies = (CondaDependencies(_underlying_structure=structure)
                                         if structure is not None else None)
        env.environment_variables = dict(definition.get("environmentVariables") or {})
        docker = definition.get("docker") or {}
        env.docker._enabled = bool(docker.get("enabled", False))
        env.docker._enabled_set = bool(docker.get("enabledSetExplicitly", False))
        env.docker.base_image = docker.get("baseImage", DEFAULT_CPU_IMAGE)
        env.docker.base_dockerfile = docker.get("baseDockerfile")
        registry = docker.get("baseImageRegistry") or {}
        env.docker.base_image_registry.address = registry.get("address")
        env.docker.base_image_registry.username = registry.get("username")
        env.docker.base_image_registry.password = registry.get("password")
        env.docker.shm_size = docker.get("shmSize")
        env.docker.arguments = list(docker.get("arguments") or [])
        env.spark = definition.get("spark")
        env.r = definition.get("r")
        env.inferencing_stack_version = definition.get("inferencingStackVersion")
        return env

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Environment) and self.name == other.name and
                self._definition() == other._definition())

    def __repr__(self) -> str:
        return json.dumps(self._definition(), indent=4)


def _check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise UserErrorException(
            f"Invalid environment name {name!r}: use letters, digits, '.', '_' and '-' "
            "(up to 255 characters), starting with a letter or digit.")
