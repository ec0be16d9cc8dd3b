"""pytest fixtures for code that uses simml (loaded automatically through the ``pytest11`` entry
point once simml is installed; see ``docs/testing.md``).

* ``simml_home``: an empty ``SIMML_HOME`` in a temporary folder, so tests never touch ``~/.simml``;
* ``simml_workspace``: a fresh local workspace inside it;
* ``simml_manual_clock``: that workspace on a manual clock starting at a fixed time: simulated
  provisioning, scaling and timeouts move only when the test calls ``advance(seconds)``;
* ``simml_instant_cluster``: an AmlCompute cluster ``cpu-cluster`` (2 nodes) whose provisioning
  and node start-up take no simulated time.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest

MANUAL_START = "2026-01-01T00:00:00+00:00"


class ManualClock:
    """Handle on a workspace's manual clock."""

    def __init__(self, workspace: Any) -> None:
        self.workspace = workspace

    def now(self) -> datetime:
        return self.workspace.clock.now()

    def advance(self, seconds: float) -> datetime:
        self.workspace.advance_clock(seconds)
        return self.now()


@pytest.fixture
def simml_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("simml-home")
    monkeypatch.setenv("SIMML_HOME", str(home))
    monkeypatch.delenv("SIMML_BACKEND", raising=False)
    yield home


@pytest.fixture
def simml_workspace(simml_home: Path) -> Any:
    from simml.core import Workspace
    return Workspace.create("test-ws", exist_ok=True, show_output=False)


@pytest.fixture
def simml_manual_clock(simml_workspace: Any) -> ManualClock:
    simml_workspace.set_clock(f"manual:{MANUAL_START}")
    return ManualClock(simml_workspace)


@pytest.fixture
def simml_instant_cluster(simml_workspace: Any) -> Any:
    from simml.core.compute import AmlCompute, ComputeTarget
    from simml.core.compute.cluster import INSTANT
    config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", min_nodes=0,
                                                   max_nodes=2, _timings=INSTANT)
    cluster = ComputeTarget.create(simml_workspace, "cpu-cluster", config)
    cluster.wait_for_completion(show_output=False)
    return cluster
