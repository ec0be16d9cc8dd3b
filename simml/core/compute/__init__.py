"""Simulated compute targets (Azure's ``azureml.core.compute``): ``ComputeTarget``, ``AmlCompute``.

``AmlCompute`` clusters are simulated: provisioning, node start, idle scale-down and queueing
follow the workspace clock (``ws.set_clock('manual')`` / ``'scaled:N'``), and a node's work runs on
this machine with at most the cores and memory the host has (``vm_sizes.effective_resources``).
``ScriptRunConfig(compute_target='local')`` (or no target) is not a compute target object: it
runs on this machine directly, and ``ComputeTarget.list`` never includes it.

Also here: the VM-size catalogue (``vm_sizes``) and the pure cluster model (``cluster``). Names
load on first use so that ``from simml.core.compute import AmlCompute`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ComputeTarget": "simml.core.compute.compute",
    "AmlCompute": "simml.core.compute.amlcompute",
    "AmlComputeProvisioningConfiguration": "simml.core.compute.amlcompute",
    "AmlComputeStatus": "simml.core.compute.amlcompute",
    "ComputeTargetException": "simml.exceptions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simml.core.compute' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(__all__) | {"cluster", "vm_sizes", "compute", "amlcompute"})
