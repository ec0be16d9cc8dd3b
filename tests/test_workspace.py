"""Workspace create/get/list and experiment naming."""

from __future__ import annotations

import pytest

from simml.core import Experiment, Workspace
from simml.exceptions import (
    InvalidValueException,
    NotFoundException,
    UserErrorException,
    WorkspaceException,
)


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


def test_get_unknown_workspace_creates_nothing(simml_home) -> None:
    with pytest.raises(WorkspaceException, match="not found"):
        Workspace.get("missing")
    assert not (simml_home / "workspaces").exists() or not any(
        (simml_home / "workspaces").rglob("workspace.json"))


@pytest.mark.parametrize("name", ["ab", "-bad", "x" * 40, "a/b", "../up"])
def test_invalid_workspace_names(name: str) -> None:
    with pytest.raises(UserErrorException):
        Workspace.create(name, show_output=False)


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "x" * 256, "é-accent"])
def test_invalid_experiment_names(ws, name: str) -> None:
    with pytest.raises(InvalidValueException):
        Experiment(ws, name)
    assert name not in ws.experiments


def test_experiment_created_on_use_and_listed(ws) -> None:
    exp = Experiment(ws, "sklearn-iris")
    assert Experiment(ws, "sklearn-iris").id == exp.id
    assert [e.name for e in Experiment.list(ws)] == ["sklearn-iris"]
    exp.archive()
    assert Experiment.list(ws) == []
    assert [e.name for e in Experiment.list(ws, view_type="All")] == ["sklearn-iris"]
    assert exp.archived_time is not None
    exp.reactivate()
    assert [e.name for e in Experiment.list(ws)] == ["sklearn-iris"]


def test_unknown_run_id(ws) -> None:
    exp = Experiment(ws, "e1")
    from simml.core import Run
    with pytest.raises(NotFoundException, match="nope"):
        Run(exp, "nope")
    with pytest.raises(NotFoundException):
        ws.get_run("nope")


def test_unknown_experiment_when_not_creating(ws) -> None:
    with pytest.raises(NotFoundException, match="never-made"):
        Experiment(ws, "never-made", _create_in_cloud=False)
    assert "never-made" not in ws.experiments
