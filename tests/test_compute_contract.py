"""Compute targets as every backend serves them (``contract``, ``tests/_contract.py``): lookup,
create, get, list, wait, status, delete, and what is refused before anything is created.

They hold in a shared workspace (unique names, only their own clusters looked at) and do not
depend on the clock: a backend that simulates provisioning time is asked for none
(``provisioning``), a real one is waited for. On the local backend the workspace is the test's
own, so the checks under ``if local:`` also look at the whole list, Azure's exact messages and
simml's simulated cluster (status on a manual clock, updates refused). ``tests/test_compute.py``
has the local backend's simulated-cluster tests (``local_only``: manual clocks and timings).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from _contract import unique
from simml.core.compute import AmlCompute, ComputeTarget, ComputeTargetException
from simml.exceptions import UserErrorException

pytestmark = pytest.mark.contract

STATUS_KEYS = {"currentNodeCount", "targetNodeCount", "nodeStateCounts", "allocationState",
               "allocationStateTransitionTime", "errors", "creationTime", "modifiedTime",
               "provisioningState", "provisioningStateTransitionTime", "scaleSettings",
               "vmPriority", "vmSize"}


@pytest.fixture
def provisioning(contract_backend: str) -> dict[str, Any]:
    """Settings of a cluster whose provisioning the test need not wait long for."""
    if contract_backend == "local":
        from simml.core.compute.cluster import INSTANT
        return {"_timings": INSTANT}
    return {}


@pytest.fixture
def made(ws: Any) -> Iterator[list[str]]:
    """Names of the clusters a test creates: deleted at teardown (a shared workspace)."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            ComputeTarget(ws, name).delete()
        except ComputeTargetException:
            pass


def create(ws: Any, made: list[str], provisioning: dict[str, Any], name: str | None = None,
           **settings: Any) -> AmlCompute:
    name = unique("cpu")[:16] if name is None else name
    settings.setdefault("vm_size", "STANDARD_D2_V2")
    settings.setdefault("max_nodes", 2)
    config = AmlCompute.provisioning_configuration(**settings, **provisioning)
    target = ComputeTarget.create(ws, name, config)
    made.append(name)
    return target


def names(ws: Any) -> list[str]:
    return [c.name for c in ComputeTarget.list(ws)]


def nothing_created(ws: Any, name: str) -> None:
    """No cluster ``name``; in the local workspace (the test's own) no cluster at all."""
    listed = names(ws)
    assert name not in listed
    if ws.backend == "local":
        assert listed == []


def test_missing_target_raises_azures_not_found_message(ws: Any) -> None:
    name = unique("gone")[:16]
    with pytest.raises(ComputeTargetException) as info:
        ComputeTarget(ws, name)
    assert (f"ComputeTargetNotFound: Compute Target with name {name} not found in provided "
            "workspace") in info.value.message
    if ws.backend == "local":  # the whole message, nothing around it
        assert info.value.message == (f"ComputeTargetNotFound: Compute Target with name {name} "
                                      "not found in provided workspace")
    with pytest.raises(ComputeTargetException, match="ComputeTargetNotFound"):
        AmlCompute(workspace=ws, name=name)


def test_create_get_list_delete(ws: Any, made: list[str], provisioning: dict[str, Any]) -> None:
    local = ws.backend == "local"  # the test's own workspace: the whole list is its clusters
    if local:
        assert ComputeTarget.list(ws) == [] and ws.compute_targets == {}
    name = unique("cpu")[:16]
    ct = create(ws, made, provisioning, name=name, min_nodes=0, max_nodes=3,
                tags={"team": "ml"}, description="demo")
    assert isinstance(ct, AmlCompute) and ct.type == "AmlCompute"
    assert ct.vm_size == "STANDARD_D2_V2" and ct.vm_priority == "dedicated"
    assert ct.scale_settings.maximum_node_count == 3
    assert ct.id.endswith(f"/workspaces/{ws.name}/computes/{name}")
    if local:
        assert ct.name == name and ct.tags == {"team": "ml"}

    got = ComputeTarget(ws, name)
    assert type(got) is AmlCompute and got.name == name
    assert got.scale_settings.maximum_node_count == 3 and got.scale_settings.minimum_node_count == 0
    assert name in names(ws) and name in ws.compute_targets
    if local:
        assert got.provisioning_state == "Succeeded"
        assert got.description == "demo" and got.created_on == ct.created_on
        assert AmlCompute(ws, name).name == name
        assert names(ws) == [name] and list(ws.compute_targets) == [name]

    with pytest.raises(ComputeTargetException, match="already exists"):
        create(ws, made, provisioning, name=name, max_nodes=1)
    assert ComputeTarget(ws, name).scale_settings.maximum_node_count == 3

    got.delete()
    if local:
        assert got.provisioning_state == "Deleting"
    assert name not in names(ws)
    if local:
        assert names(ws) == []
    with pytest.raises(ComputeTargetException, match="ComputeTargetNotFound"):
        ComputeTarget(ws, name)
    if local:
        with pytest.raises(ComputeTargetException, match="ComputeTargetNotFound"):
            got.delete()
        got.wait_for_completion(is_delete_operation=True)  # no nodes: gone at once
        again = create(ws, made, provisioning, name=name, max_nodes=2)  # a fresh cluster
        assert again.scale_settings.maximum_node_count == 2 and names(ws) == [name]


def test_tags_and_description_are_kept(ws: Any, made: list[str],
                                       provisioning: dict[str, Any]) -> None:
    ct = create(ws, made, provisioning, tags={"team": "ml"}, description="demo")
    got = ComputeTarget(ws, ct.name)
    assert got.tags == {"team": "ml"} and got.description == "demo"


def test_wait_until_provisioned_and_status(ws: Any, made: list[str],
                                           provisioning: dict[str, Any]) -> None:
    ct = create(ws, made, provisioning, vm_size="standard_ds3_v2", min_nodes=0, max_nodes=2)
    ct.wait_for_completion(show_output=False, timeout_in_minutes=20)
    assert ct.vm_size == "STANDARD_DS3_V2"
    status = ct.get_status()
    assert status.provisioning_state == "Succeeded"
    assert status.vm_size == "STANDARD_DS3_V2"
    data = status.serialize()
    assert set(data) == STATUS_KEYS
    assert data["scaleSettings"]["maxNodeCount"] == 2 and data["scaleSettings"]["minNodeCount"] == 0
    assert data["currentNodeCount"] == 0  # min_nodes 0 and no job: no node
    assert ComputeTarget(ws, ct.name).provisioning_state == "Succeeded"


@pytest.mark.parametrize("bad", ["a", "1cluster", "cpu_cluster", "x" * 17, "cpu cluster", ""])
def test_invalid_names_are_refused(ws: Any, made: list[str], provisioning: dict[str, Any],
                                   bad: str) -> None:
    with pytest.raises(ComputeTargetException, match="2 to 16 characters"):
        create(ws, made, provisioning, name=bad)
    nothing_created(ws, bad)


@pytest.mark.parametrize("reserved", ["local", "amlcompute", "containerinstance"])
def test_reserved_names_are_refused_as_azure_does(ws: Any, made: list[str],
                                                  provisioning: dict[str, Any],
                                                  reserved: str) -> None:
    with pytest.raises(UserErrorException, match="is a reserved name"):
        create(ws, made, provisioning, name=reserved)
    nothing_created(ws, reserved)


VALIDATION_CASES = [
    (dict(max_nodes=None), "max nodes count is mandatory"),
    (dict(min_nodes=3, max_nodes=2), "max nodes count must be greater than or equal to min nodes"),
    (dict(max_nodes=-1), "max nodes count must be greater than or equal to 0"),
    (dict(min_nodes=-1, max_nodes=2), "min nodes count must be greater than or equal to 0"),
    (dict(max_nodes="4"), "must be an integer"),
    (dict(idle_seconds_before_scaledown=-5), "idle_seconds_before_scaledown"),
    (dict(vm_priority="spot"), "expected 'dedicated' or 'lowpriority'"),
    (dict(vnet_name="vnet", subnet_name="default"), "not all virtual net information provided"),
    (dict(admin_username="azureuser", admin_user_password="password"),
     "The admin user password must have 3 of the following"),
    (dict(admin_username="azureuser"), "no password or key information provided"),
    (dict(admin_user_password="Str0ng!Pass"), "admin username must be provided"),
    (dict(identity_id=["/subscriptions/x/identity"]),
     "identity_id cannot be set when identity type is not user assigned"),
    (dict(identity_type="UserAssigned"), "identity_id of the user assigned identity as a list"),
    (dict(identity_type="Managed"), "identity_type must be set to"),
]


@pytest.mark.parametrize("settings, message", VALIDATION_CASES,
                         ids=[m.split(",")[0][:40] for _, m in VALIDATION_CASES])
def test_invalid_configuration_is_refused_and_nothing_is_created(
        ws: Any, made: list[str], provisioning: dict[str, Any], settings: dict[str, Any],
        message: str) -> None:
    local = ws.backend == "local"
    if local:  # the test's own workspace: a cluster in it, and the whole list must stay as it is
        create(ws, made, provisioning, name="existing")
        before = names(ws)
    name = unique("bad")[:16]
    with pytest.raises(ComputeTargetException, match=message):
        AmlCompute.provisioning_configuration(**{"vm_size": "STANDARD_D2_V2", "max_nodes": 2,
                                                 **settings})
    with pytest.raises(ComputeTargetException, match=message):
        create(ws, made, provisioning, name=name, **settings)
    assert name not in names(ws)
    if local:
        assert names(ws) == before


def test_unknown_vm_size_is_refused_and_nothing_is_created(
        ws: Any, made: list[str], provisioning: dict[str, Any]) -> None:
    name = unique("potato")[:16]
    with pytest.raises(ComputeTargetException):
        create(ws, made, provisioning, name=name, vm_size="Standard_Potato")
    assert name not in names(ws)


def test_update_changes_scale_settings(ws: Any, made: list[str],
                                       provisioning: dict[str, Any]) -> None:
    local = ws.backend == "local"
    if local:  # simml's simulated cluster, on a clock only the test moves
        ws.set_clock("manual")
    ct = create(ws, made, provisioning, min_nodes=0, max_nodes=2)
    ct.wait_for_completion(show_output=False, timeout_in_minutes=20)
    ct.update(max_nodes=3, idle_seconds_before_scaledown=600)
    assert ct.scale_settings.maximum_node_count == 3
    again = ComputeTarget(ws, ct.name)
    assert again.scale_settings.maximum_node_count == 3
    assert again.scale_settings.idle_seconds_before_scaledown == 600
    if local:
        ct.update(min_nodes=1, idle_seconds_before_scaledown=60)
        assert ct.scale_settings.minimum_node_count == 1
        status = ct.get_status()
        assert status.scale_settings.serialize() == {"minNodeCount": 1, "maxNodeCount": 3,
                                                     "nodeIdleTimeBeforeScaleDown": "PT60S"}
        assert status.current_node_count == 1  # INSTANT: the min node is there at once
        with pytest.raises(ComputeTargetException, match="max nodes count"):
            ct.update(max_nodes=0)
        with pytest.raises(ComputeTargetException):
            ct.update(min_nodes=-1)
        ct.update()  # nothing to do
        assert ComputeTarget(ws, ct.name).scale_settings.maximum_node_count == 3
        assert ct.get_active_runs() == []


def test_list_nodes_of_an_idle_cluster(ws: Any, made: list[str],
                                       provisioning: dict[str, Any]) -> None:
    ct = create(ws, made, provisioning, min_nodes=0, max_nodes=1)
    ct.wait_for_completion(show_output=False, timeout_in_minutes=20)
    assert ct.list_nodes() == []
