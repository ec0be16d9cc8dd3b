"""Azure ML's ``azureml.core`` names, served by simml (``azureml.core.X`` is ``simml.core.X``).

Attributes load on first use so that ``from simml.core import Workspace`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Workspace": "simml.core.workspace",
    "Experiment": "simml.core.experiment",
    "Run": "simml.core.run",
    "ScriptRun": "simml.core.script_run",
    "Model": "simml.core.model",
    "Datastore": "simml.core.datastore",
    "Environment": "simml.core.environment",
    "ScriptRunConfig": "simml.core.script_run_config",
    "RunConfiguration": "simml.core.runconfig",
    "ComputeTarget": "simml.core.compute",
    "Webservice": "simml.core.webservice",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simml.core' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
