"""Workspace create/get/list and experiment naming.

Experiments and runs are backend contract tests (``contract``, ``tests/_contract.py``): they hold
in a shared workspace. Creating workspaces is ``local_only``: the azure backend opens existing
workspaces and refuses to create one (tests/test_azure_backend.py).
"""

from __future__ import annotations

import pytest

from _contract import unique
from simml.core import Experiment, Workspace
from simml.exceptions import (
    InvalidValueException,
    NotFoundException,
    UserErrorException,
    WorkspaceException,
)


@pytest.mark.local_only
def test_create_get_list(simml_home) -> None:
    ws = Workspace.create("alpha", show_output=False)
    assert Workspace.get("alpha") == ws
    assert ws.backend == "local"
    with pytest.raises(WorkspaceException, match="already exists"):
        Workspace.create("alpha", show_output=False)
    assert Workspace.create("alpha", exist_ok=True, show_output=False) == ws
    Workspace.create("beta", resource_group="other", show_output=False)
    listed = Workspace.list()
    assert sorted(listed) == ["alpha", "beta"]
    assert [w.resource_group for w in Workspace.list(resource_group="other")["beta"]] == ["other"]


@pytest.mark.local_only
def test_get_unknown_workspace_creates_nothing(simml_home) -> None:
    with pytest.raises(WorkspaceException, match="not found"):
        Workspace.get("missing")
    assert not (simml_home / "workspaces").exists() or not any(
        (simml_home / "workspaces").rglob("workspace.json"))


@pytest.mark.local_only
@pytest.mark.parametrize("name", ["ab", "-bad", "x" * 40, "a/b", "../up"])
def test_invalid_workspace_names(name: str) -> None:
    with pytest.raises(UserErrorException):
        Workspace.create(name, show_output=False)


@pytest.mark.contract
@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "x" * 256, "é-accent"])
def test_invalid_experiment_names(ws, name: str) -> None:
    with pytest.raises(InvalidValueException):
        Experiment(ws, name)
    assert name not in ws.experiments


@pytest.mark.contract
def test_experiment_created_on_use_and_listed(ws) -> None:
    name = unique("sklearn-iris")
    exp = Experiment(ws, name)
    assert Experiment(ws, name).id == exp.id

    def listed(**kwargs) -> list[str]:
        return [e.name for e in Experiment.list(ws, **kwargs) if e.name == name]

    assert listed() == [name]
    exp.archive()
    assert listed() == []
    assert listed(view_type="All") == [name]
    assert exp.archived_time is not None
    exp.reactivate()
    assert listed() == [name]


@pytest.mark.contract
def test_unknown_run_id(ws) -> None:
    exp = Experiment(ws, unique("e1"))
    from simml.core import Run
    with pytest.raises(NotFoundException, match="nope"):
        Run(exp, "nope")
    with pytest.raises(NotFoundException):
        ws.get_run("nope")


@pytest.mark.contract
def test_unknown_experiment_when_not_creating(ws) -> None:
    name = unique("never-made")
    with pytest.raises(NotFoundException, match=name):
        Experiment(ws, name, _create_in_cloud=False)
    assert name not in ws.experiments
