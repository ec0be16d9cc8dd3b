"""The Azure VM sizes an AmlCompute cluster may be provisioned with.

A simulated node still runs on this machine, so the catalogue serves three purposes: rejecting the
same unknown ``vm_size`` Azure would reject (with a "did you mean" hint, because typos are the usual
cause), answering ``AmlCompute.supported_vmsizes`` in Azure's shape, and telling the runner how many
cores and how much memory a node may use, clamped to what the host really has.

Pure: no I/O, no clock, stdlib only.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any

from simml.exceptions import ComputeTargetException

__all__ = [
    "VmSize",
    "VM_SIZES",
    "TEST_FAMILY",
    "find_vm_size",
    "supported_vmsizes",
    "effective_resources",
]

TEST_FAMILY = "simml-test"
"""Family of sizes that exist only in simml (left out of ``supported_vmsizes`` by default)."""


@dataclass(frozen=True)
class VmSize:
    """One VM size: the figures Azure publishes for it.

    ``name`` uses Azure's catalogue spelling (``Standard_D2_v2``); lookups ignore case, and
    AmlCompute status reports it upper-cased (``STANDARD_D2_V2``) like Azure does.
    ``max_resource_volume_mb`` is the temporary (resource) disk, as in ``supported_vmsizes``.
    """

    name: str
    v_cpus: int
    memory_gb: float
    gpus: int = 0
    family: str = ""
    max_resource_volume_mb: int = 0

    def to_azure_dict(self) -> dict[str, Any]:
        """The entry ``AmlCompute.supported_vmsizes`` returns for this size."""
        return {"name": self.name, "vCPUs": self.v_cpus, "gpus": self.gpus,
                "memoryGB": self.memory_gb, "maxResourceVolumeMB": self.max_resource_volume_mb}


def _s(name: str, cpus: int, mem: float, disk_gb: int, family: str, gpus: int = 0) -> VmSize:
    return VmSize(name, cpus, mem, gpus, family, disk_gb * 1024)


VM_SIZES: tuple[VmSize, ...] = (
    # Dv2: general purpose (the SDK samples' default STANDARD_D2_V2).
    _s("Standard_D1_v2", 1, 3.5, 50, "standardDv2Family"),
    _s("Standard_D2_v2", 2, 7.0, 100, "standardDv2Family"),
    _s("Standard_D3_v2", 4, 14.0, 200, "standardDv2Family"),
    _s("Standard_D4_v2", 8, 28.0, 400, "standardDv2Family"),
    _s("Standard_D5_v2", 16, 56.0, 800, "standardDv2Family"),
    # Dv2 memory optimised.
    _s("Standard_D11_v2", 2, 14.0, 100, "standardDv2Family"),
    _s("Standard_D12_v2", 4, 28.0, 200, "standardDv2Family"),
    _s("Standard_D13_v2", 8, 56.0, 400, "standardDv2Family"),
    _s("Standard_D14_v2", 16, 112.0, 800, "standardDv2Family"),
    # DSv2: premium storage.
    _s("Standard_DS1_v2", 1, 3.5, 7, "standardDSv2Family"),
    _s("Standard_DS2_v2", 2, 7.0, 14, "standardDSv2Family"),
    _s("Standard_DS3_v2", 4, 14.0, 28, "standardDSv2Family"),
    _s("Standard_DS4_v2", 8, 28.0, 56, "standardDSv2Family"),
    _s("Standard_DS11_v2", 2, 14.0, 28, "standardDSv2Family"),
    _s("Standard_DS12_v2", 4, 28.0, 56, "standardDSv2Family"),
    _s("Standard_DS13_v2", 8, 56.0, 112, "standardDSv2Family"),
    _s("Standard_DS14_v2", 16, 112.0, 224, "standardDSv2Family"),
    # Dv3 / DSv3.
    _s("Standard_D2_v3", 2, 8.0, 50, "standardDv3Family"),
    _s("Standard_D4_v3", 4, 16.0, 100, "standardDv3Family"),
    _s("Standard_D8_v3", 8, 32.0, 200, "standardDv3Family"),
    _s("Standard_D16_v3", 16, 64.0, 400, "standardDv3Family"),
    _s("Standard_D2s_v3", 2, 8.0, 16, "standardDSv3Family"),
    _s("Standard_D4s_v3", 4, 16.0, 32, "standardDSv3Family"),
    _s("Standard_D8s_v3", 8, 32.0, 64, "standardDSv3Family"),
    _s("Standard_D16s_v3", 16, 64.0, 128, "standardDSv3Family"),
    _s("Standard_D32s_v3", 32, 128.0, 256, "standardDSv3Family"),
    # Esv3: memory optimised.
    _s("Standard_E2s_v3", 2, 16.0, 32, "standardESv3Family"),
    _s("Standard_E4s_v3", 4, 32.0, 64, "standardESv3Family"),
    _s("Standard_E8s_v3", 8, 64.0, 128, "standardESv3Family"),
    _s("Standard_E16s_v3", 16, 128.0, 256, "standardESv3Family"),
    # Fsv2: compute optimised.
    _s("Standard_F2s_v2", 2, 4.0, 16, "standardFSv2Family"),
    _s("Standard_F4s_v2", 4, 8.0, 32, "standardFSv2Family"),
    _s("Standard_F8s_v2", 8, 16.0, 64, "standardFSv2Family"),
    _s("Standard_F16s_v2", 16, 32.0, 128, "standardFSv2Family"),
    # GPU: NC (K80), NCv3 (V100), NCasT4_v3 (T4).
    _s("Standard_NC6", 6, 56.0, 340, "standardNCFamily", gpus=1),
    _s("Standard_NC12", 12, 112.0, 680, "standardNCFamily", gpus=2),
    _s("Standard_NC24", 24, 224.0, 1440, "standardNCFamily", gpus=4),
    _s("Standard_NC6s_v3", 6, 112.0, 736, "standardNCSv3Family", gpus=1),
    _s("Standard_NC12s_v3", 12, 224.0, 1474, "standardNCSv3Family", gpus=2),
    _s("Standard_NC24s_v3", 24, 448.0, 2948, "standardNCSv3Family", gpus=4),
    _s("Standard_NC4as_T4_v3", 4, 28.0, 180, "standardNCASv3_T4Family", gpus=1),
    # simml only: small enough that a test can provoke an out-of-memory failure.
    VmSize("SIMML_TINY", 1, 0.25, 0, TEST_FAMILY, 1024),
)
"""Every size simml knows, in catalogue order."""

_BY_KEY: dict[str, VmSize] = {size.name.lower(): size for size in VM_SIZES}


def find_vm_size(name: str) -> VmSize:
    """The size called ``name`` (any case), or ``ComputeTargetException`` with close matches."""
    if not isinstance(name, str) or not name.strip():
        raise ComputeTargetException(f"A vm_size is required (got {name!r}).", vm_size=name)
    key = name.strip().lower()
    size = _BY_KEY.get(key)
    if size is not None:
        return size
    close = difflib.get_close_matches(key, list(_BY_KEY), n=3, cutoff=0.6)
    if close:
        hint = "Did you mean " + " or ".join(repr(_BY_KEY[k].name) for k in close) + "?"
    else:
        hint = "Common sizes: 'Standard_D2_v2', 'Standard_DS3_v2', 'Standard_D4s_v3'."
    raise ComputeTargetException(
        f"Unknown vm_size {name!r}: it is not a supported AmlCompute VM size. {hint} "
        "AmlCompute.supported_vmsizes(workspace) lists them all.",
        vm_size=name, suggestions=[_BY_KEY[k].name for k in close])


def supported_vmsizes(include_test_sizes: bool = False) -> list[dict[str, Any]]:
    """The catalogue in ``AmlCompute.supported_vmsizes`` shape; simml-only sizes on request."""
    return [size.to_azure_dict() for size in VM_SIZES
            if include_test_sizes or size.family != TEST_FAMILY]


def effective_resources(size: VmSize, host_cpus: int, host_memory_gb: float, *,
                        host_gpus: int = 0) -> tuple[VmSize, list[str]]:
    """What a simulated node of ``size`` can really use here, plus warnings for anything cut.

    A node never gets more than the host has: a job sized for ``Standard_D14_v2`` still runs on a
    laptop, but with the laptop's cores and memory, and the warnings say so instead of pretending.
    GPUs are clamped to ``host_gpus`` (none unless the caller says otherwise).
    """
    if host_cpus < 1 or host_memory_gb <= 0 or host_gpus < 0:
        raise ComputeTargetException(
            f"Invalid host resources: {host_cpus} CPUs, {host_memory_gb} GB memory, {host_gpus} GPUs.")
    warnings: list[str] = []
    cpus, memory, gpus = size.v_cpus, size.memory_gb, size.gpus
    if cpus > host_cpus:
        warnings.append(f"VM size {size.name} has {cpus} vCPUs but this host has only {host_cpus}; "
                        f"the simulated node is limited to {host_cpus}.")
        cpus = host_cpus
    if memory > host_memory_gb:
        warnings.append(f"VM size {size.name} has {memory:g} GB memory but this host has only "
                        f"{host_memory_gb:g} GB; the simulated node is limited to {host_memory_gb:g} GB.")
        memory = host_memory_gb
    if gpus > host_gpus:
        warnings.append(f"VM size {size.name} has {gpus} GPU(s) but this host provides {host_gpus}; "
                        f"the simulated node runs with {host_gpus}.")
        gpus = host_gpus
    if not warnings:
        return size, warnings
    return replace(size, v_cpus=cpus, memory_gb=memory, gpus=gpus), warnings
