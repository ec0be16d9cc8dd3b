"""pytest fixtures for code that uses simml (loaded automatically through the ``pytest11`` entry
point once simml is installed).

* ``simml_home``: an empty ``SIMML_HOME`` in a temporary folder, so tests never touch ``~/.simml``;
* ``simml_workspace``: a fresh local workspace inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest


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
