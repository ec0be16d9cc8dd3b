"""Settings: which backend, where local workspaces live, and config.json discovery.

Precedence is environment > config.json > default, for ``SIMML_BACKEND`` (config key ``backend``,
default ``local``) and ``SIMML_HOME`` (config key ``simml_home``, default ``~/.simml``).
config.json is found the way ``azureml.core.Workspace.from_config`` finds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from simml.exceptions import ConfigurationException

DEFAULT_BACKEND = "local"
CONFIG_DIRS = (".azureml", "aml_config", "")
CONFIG_NAMES = ("config.json", "project.json")
REQUIRED_KEYS = ("subscription_id", "resource_group", "workspace_name")


def find_config_file(path: str | os.PathLike[str] | None = None,
                     file_name: str | None = None) -> Path | None:
    """Azure's search: a file path is used as is; otherwise for each folder in
    ``.azureml/``, ``aml_config/``, the directory itself, and each name in ``config.json``,
    ``project.json`` (or ``file_name``), walk up from ``path`` to the root; first hit wins."""
    start = Path(path if path is not None else ".").resolve()
    if start.is_file():
        return start
    names = (file_name,) if file_name else CONFIG_NAMES
    for folder in CONFIG_DIRS:
        for name in names:
            for directory in (start, *start.parents):
                candidate = directory / folder / name if folder else directory / name
                if candidate.is_file():
                    return candidate
    return None


def read_config(config_file: Path) -> dict[str, Any]:
    """Parse and validate a config.json; errors name the file and the key."""
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationException(
            f"{config_file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
            exc) from exc
    except OSError as exc:
        raise ConfigurationException(f"{config_file} could not be read: {exc}.", exc) from exc
    if not isinstance(data, dict):
        raise ConfigurationException(f"{config_file} must hold a JSON object, not "
                                     f"{type(data).__name__}.")
    scope = data.get("Scope")
    if isinstance(scope, str) and not all(k in data for k in REQUIRED_KEYS):
        parts = scope.split("/")
        if len(parts) > 8:
            data.setdefault("subscription_id", parts[2])
            data.setdefault("resource_group", parts[4])
            data.setdefault("workspace_name", parts[8])
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ConfigurationException(
                f"{config_file} does not seem to contain the required parameter {key!r} "
                f"(it needs {', '.join(REQUIRED_KEYS)}).")
        if not isinstance(data[key], str) or not data[key].strip():
            raise ConfigurationException(f"{config_file}: {key!r} must be a non-empty string.")
    for key in ("backend", "simml_home"):
        if key in data and (not isinstance(data[key], str) or not data[key].strip()):
            raise ConfigurationException(f"{config_file}: {key!r} must be a non-empty string.")
    if "auth" in data and not isinstance(data["auth"], dict):
        raise ConfigurationException(f"{config_file}: 'auth' must be a JSON object with a 'type'.")
    return data


def backend_name(config: dict[str, Any] | None = None) -> str:
    return (os.environ.get("SIMML_BACKEND") or (config or {}).get("backend")
            or DEFAULT_BACKEND).strip()


def simml_home(config: dict[str, Any] | None = None) -> Path:
    value = os.environ.get("SIMML_HOME") or (config or {}).get("simml_home")
    return Path(value).expanduser() if value else Path.home() / ".simml"
