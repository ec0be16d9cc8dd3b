"""simml: the Azure ML SDK v1 workflow for scikit-learn, local-first, offline and deterministic.

Port code by changing the import prefix: ``azureml.core.Workspace`` is ``simml.core.Workspace``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("simml")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'simml' has no attribute {name!r}")
