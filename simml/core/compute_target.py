"""Azure's ``azureml.core.compute_target`` import path: ``ComputeTargetException`` (the same class
as ``simml.exceptions.ComputeTargetException``) and ``ComputeTarget``."""

from __future__ import annotations

from simml.core.compute.compute import ComputeTarget
from simml.exceptions import ComputeTargetException

__all__ = ["ComputeTarget", "ComputeTargetException"]
