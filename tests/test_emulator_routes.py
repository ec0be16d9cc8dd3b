"""Routes the Azure backend plug-in needs from `simml serve`, through the real azureml-core
client: experiment listing, archive and reactivate, run queries with their filters and paging,
run tag removal and the cancel events (`simml/emulator/history.py`, `service.py`), AmlCompute
tags, description, update and list_nodes (`compute.py`), environments (`environments.py`) and
image metrics (`service.py`). Each is checked against simml's own API, and bad input over plain
HTTP must answer Azure's error shape and change nothing.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from _emulator_server import SCOPE, Emulator

HISTORY = "/history/v1.0" + SCOPE
ENVIRONMENTS = "/environment/v1.0" + SCOPE + "/environments"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def unique(prefix: str) -> str:
    """Names are per test: the server (and its workspace) is shared by the session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def call(emulator: Emulator, method: str, path: str, doc: Any = None,
         raw: bytes | None = None) -> tuple[int, Any]:
    body = raw if raw is not None else (None if doc is None else json.dumps(doc).encode())
    return emulator.request(method, path, body=body,
                            headers={"Content-Type": "application/json"})


def refused(answer: tuple[int, Any], status: int, inner: str | None = None) -> str:
    """Azure's error shape with this status (and inner code); the message."""
    code, body = answer
    assert code == status, answer
    assert set(body) >= {"error", "correlation"}, body
    if inner is not None:
        assert body["error"]["innerError"]["code"] == inner, body
    return body["error"]["message"]


def templates_hit(emulator: Emulator) -> set[tuple[str, str]]:
    return {(e["method"], e["template"]) for e in emulator.log()}


# --- run history -----------------------------------------------------------------------------------

def test_experiments_and_runs_through_the_real_client(emulator: Emulator,
                                                      azureml_venv: Path) -> None:
    from simml.core.experiment import Experiment
    ws = emulator.workspace()
    simml_made = unique("routes-simml")
    theirs = Experiment(ws, simml_made).start_logging()
    theirs.set_tags({"source": "simml"})
    Experiment(ws, simml_made).start_logging().complete()  # untagged: filtered out
    name = unique("routes-hist")

    result = emulator.run_client(azureml_venv, "routes_history.py", name, simml_made)

    assert result["listed"] == [name] and result["by_name"] == [name]
    assert result["in_workspace"] == [True, True]
    assert result["archived"] == [[], [name], [name]]
    assert result["reactivated"] == [[name], []]
    ids = result["ids"]
    assert result["top_level"] == [ids["parent"]]
    assert set(result["everything"]) == set(ids.values())
    assert result["everything"][0] == ids["g"]  # newest first
    assert result["tag_value"] == [ids["a"]] and result["tag_key"] == [ids["a"]]
    assert result["property"] == [ids["a"]]
    assert result["type"] == sorted(ids.values())
    assert result["status"] == [ids["b"]]
    assert result["paged"] == sorted(ids.values())
    assert result["by_ids"] == sorted([ids["a"], ids["b"]])
    assert result["tags_after_remove"] == {"team": "a"}
    assert result["cancel_sequence"] == ["CancelRequested", "Canceled"]
    assert result["cancel_alone"] == "Canceled"
    assert result["simml_runs"] == [[theirs.id, {"source": "simml"}]]
    theirs.complete()

    # the same through simml's API
    experiment = Experiment(ws, name)
    assert experiment.archived_time is None
    assert {r.id for r in experiment.get_runs(include_children=True)} >= set(ids.values())
    simml_runs = {r.id: r for r in experiment.get_runs(include_children=True)}
    assert simml_runs[ids["parent"]].get_tags() == {"team": "a"}
    assert simml_runs[ids["a"]].get_tags() == {"kind": "x"}
    history = [h["status"] for h in simml_runs[ids["g"]].get_details()["statusHistory"]]
    assert history[-1] == "Completed"
    canceled = [r for r in experiment.get_runs() if r.get_status() == "Canceled"]
    assert len(canceled) == 2
    for run in canceled:
        statuses = [h["status"] for h in run.get_details()["statusHistory"]]
        assert statuses[-2:] == ["CancelRequested", "Canceled"]
    hit = templates_hit(emulator)
    for method, path in (("POST", "/experiments:query"), ("PATCH", "/experimentids/{expid}"),
                         ("POST", "/experiments/{exp}/runs:query"),
                         ("DELETE", "/experiments/{exp}/runs/{run}/tags")):
        assert any(m == method and t.startswith("/history/") and t.endswith(path)
                   for m, t in hit), (method, path)
    pages = [e for e in emulator.log() if e["template"] and e["template"].endswith(
        "/runs:query") and name in e["path"]]
    assert len(pages) >= 1 + len(ids) // 2  # the two-a-page listing asked more than once


def test_run_queries_refuse_bad_input(emulator: Emulator) -> None:
    from simml.core.experiment import Experiment
    ws = emulator.workspace()
    name = unique("routes-bad")
    experiment = Experiment(ws, name)
    run = experiment.start_logging()
    run.set_tags({"keep": "1"})
    query = f"{HISTORY}/experiments/{name}/runs:query"
    for doc in ({"filter": "(Tags/keep eq \"1\""}, {"filter": "Colour eq red"},
                {"filter": "(Tags eq \"1\")"}, {"filter": "(CreatedUtc ge yesterday)"},
                {"filter": 5}, {"filter": "(" * 200 + "Status eq a" + ")" * 200},
                {"filter": "Status eq a or " * 1000}):
        refused(call(emulator, "POST", query, doc), 400, "InvalidFilter")
    for doc in ({"orderby": "Colour desc"}, {"orderby": "CreatedUtc sideways"}, {"top": 0},
                {"top": "ten"}, {"continuationToken": "not-a-token"}):
        refused(call(emulator, "POST", query, doc), 400, "BadArgument")
    refused(call(emulator, "POST", query, raw=b"{nope"), 400, "InvalidJson")
    refused(call(emulator, "POST", f"{HISTORY}/experiments/{unique('nothing')}/runs:query",
                 {}), 404, "ExperimentNotFound")
    # a token of one ordering is not taken by another
    status, page = call(emulator, "POST", query, {"top": 1, "orderby": "RunId asc"})
    assert status == 200 and page["continuationToken"] is None  # one run only
    experiment.start_logging().complete()
    status, page = call(emulator, "POST", query, {"top": 1, "orderby": "RunId asc"})
    assert status == 200 and page["continuationToken"]
    refused(call(emulator, "POST", query, {"top": 1, "orderby": "RunId desc",
                                           "continuationToken": page["continuationToken"]}),
            400, "BadArgument")

    listing = f"{HISTORY}/experiments:query"
    refused(call(emulator, "POST", listing, {"viewType": "Deleted"}), 400, "BadArgument")
    refused(call(emulator, "POST", listing, {"filter": "(name eq"}), 400, "InvalidFilter")
    status, found = call(emulator, "POST", listing, {"filter": f"(name eq {name})"})
    assert status == 200 and [e["name"] for e in found["value"]] == [name]

    # experiment PATCH: nothing changes on a refusal
    patch = f"{HISTORY}/experimentids/{experiment.id}"
    refused(call(emulator, "PATCH", patch, {"archive": "yes"}), 400, "BadArgument")
    refused(call(emulator, "PATCH", patch, {"archive": True, "tags": {"a": "b"}}), 400,
            "NotSupported")
    refused(call(emulator, "PATCH", patch, {"archive": True, "name": "renamed"}), 400,
            "NotSupported")
    refused(call(emulator, "PATCH", patch, {"archive": True, "colour": "red"}), 400,
            "BadArgument")
    refused(call(emulator, "PATCH", f"{HISTORY}/experimentids/{uuid.uuid4()}",
                 {"archive": True}), 404, "ExperimentNotFound")
    assert Experiment(ws, name).archived_time is None
    assert call(emulator, "PATCH", patch, {"archive": True})[0] == 200
    assert Experiment(ws, name).archived_time is not None
    assert call(emulator, "PATCH", patch, {"archive": False})[0] == 200
    assert Experiment(ws, name).archived_time is None

    # tag removal: a body that is not a list of keys changes nothing
    tags = f"{HISTORY}/experiments/{name}/runs/{run.id}/tags"
    for bad in ({"keep": None}, "keep", [1], [""]):
        refused(call(emulator, "DELETE", tags, bad), 400, "BadArgument")
    refused(call(emulator, "DELETE", f"{HISTORY}/experiments/{name}/runs/nope/tags",
                 ["keep"]), 404, "RunNotFound")
    assert run.get_tags() == {"keep": "1"}


def test_cancel_events_in_the_sequences_clients_send(emulator: Emulator) -> None:
    """CancelRequested, a repeated CancelRequested, then Canceled: each answered 200 (the repeat
    records nothing); Canceled on a finished run changes nothing."""
    from simml.core.experiment import Experiment
    experiment = Experiment(emulator.workspace(), unique("routes-cancel"))
    run = experiment.start_logging()
    events = f"{HISTORY}/experiments/{experiment.name}/runs/{run.id}/events"
    prefix = "Microsoft.MachineLearning.Run."
    for kind, status in (("CancelRequested", "CancelRequested"),
                         ("CancelRequested", "CancelRequested"), ("Canceled", "Canceled"),
                         ("Canceled", "Canceled")):
        answer = call(emulator, "POST", events, {"name": prefix + kind})
        assert answer[0] == 200 and answer[1]["status"] == status, (kind, answer)
    statuses = [h["status"] for h in run.get_details()["statusHistory"]]
    assert statuses == ["NotStarted", "Running", "CancelRequested", "Canceled"]
    done = experiment.start_logging()
    done.complete()
    done_events = f"{HISTORY}/experiments/{experiment.name}/runs/{done.id}/events"
    answer = call(emulator, "POST", done_events, {"name": prefix + "Canceled"})
    assert answer[0] == 200 and answer[1]["status"] == "Completed"
    refused(call(emulator, "POST", done_events, {"name": prefix + "Start"}), 409,
            "InvalidStatusTransition")


# --- compute -----------------------------------------------------------------------------------------

def test_compute_tags_update_and_nodes_through_the_real_client(emulator: Emulator,
                                                               azureml_venv: Path) -> None:
    from simml.core.compute import ComputeTarget
    name = f"rt-{uuid.uuid4().hex[:8]}"
    result = emulator.run_client(azureml_venv, "routes_compute.py", name)
    ws = emulator.workspace()
    try:
        assert result["kept"] == [{"team": "ml"}, "demo cluster"]
        assert result["nodes_idle"] == []
        assert result["updated"] == [0, 3, 600]
        nodes = result["nodes_up"]
        assert len(nodes) == 1 and nodes[0]["nodeState"] == "idle", nodes
        assert result["too_many"][0] == "ComputeTargetException"
        assert "max nodes count must be greater than or equal to min nodes" in \
            result["too_many"][1]
        assert result["after_refusal"] == [1, 3]
        # simml's API sees the same cluster
        target = ComputeTarget(ws, name)
        assert target.tags == {"team": "ml"} and target.description == "demo cluster"
        assert [target.scale_settings.minimum_node_count,
                target.scale_settings.maximum_node_count,
                target.scale_settings.idle_seconds_before_scaledown] == [1, 3, 600]
        assert [n["nodeId"] for n in target.list_nodes()] == [n["nodeId"] for n in nodes]
    finally:
        ws._backend.compute_delete(ws._info, name)


def test_compute_update_refuses_bad_input(emulator: Emulator) -> None:
    from simml.core.compute import AmlCompute, ComputeTarget
    ws = emulator.workspace()
    name = f"rb-{uuid.uuid4().hex[:8]}"
    arm = f"{SCOPE}/computes/{name}?api-version=2020-02-02"
    put = {"location": "local", "tags": {"team": 5}, "properties": {
        "computeType": "AmlCompute", "description": "x", "properties": {
            "vmSize": "STANDARD_D2_V2", "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2}}}}
    refused(call(emulator, "PUT", arm, put), 400, "BadArgument")
    assert name not in [c.name for c in ComputeTarget.list(ws)]
    ComputeTarget.create(ws, name, AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=2, tags={"team": "ml"}))
    try:
        def patch(scale: Any, **extra: Any) -> tuple[int, Any]:
            return call(emulator, "PATCH", arm, {"properties": {
                "computeType": "AmlCompute", "properties": {"scaleSettings": scale}, **extra}})

        for scale in ({"minNodeCount": -1}, {"maxNodeCount": "3"}, {"maxNodeCount": True},
                      {"nodeIdleTimeBeforeScaleDown": "ten minutes"}, {"colour": 1}, [1]):
            refused(patch(scale), 400, "BadArgument")
        refused(patch({"minNodeCount": 3}), 400, "BadArgument")  # above maxNodeCount 2
        refused(patch({"maxNodeCount": 3}, description="new"), 400, "NotSupported")
        refused(call(emulator, "PATCH", arm, {"properties": {"computeType": "ComputeInstance",
                                                             "properties": {}}}),
                400, "NotSupported")
        refused(call(emulator, "PATCH", arm, [1]), 400, "InvalidJson")
        missing = f"{SCOPE}/computes/nope-{uuid.uuid4().hex[:6]}"
        refused(call(emulator, "PATCH", missing, {"properties": {"properties": {
            "scaleSettings": {"maxNodeCount": 3}}}}), 404, "ComputeNotFound")
        refused(call(emulator, "POST", missing + "/listNodes"), 404, "ComputeNotFound")
        target = ComputeTarget(ws, name)
        assert [target.scale_settings.minimum_node_count,
                target.scale_settings.maximum_node_count,
                target.scale_settings.idle_seconds_before_scaledown] == [0, 2, 1800]
        status, dto = patch({"maxNodeCount": 4, "nodeIdleTimeBeforeScaleDown": "PT5M"})
        assert status == 200, dto
        assert dto["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 4
        assert ComputeTarget(ws, name).scale_settings.idle_seconds_before_scaledown == 300
        status, nodes = call(emulator, "POST", f"{SCOPE}/computes/{name}/listNodes")
        assert status == 200 and nodes == {"nodes": []}
        status, dto = call(emulator, "GET", f"/rp/workspaces{SCOPE}/computes/{name}")
        assert dto["tags"] == {"team": "ml"}
    finally:
        ws._backend.compute_delete(ws._info, name)


# --- environments ------------------------------------------------------------------------------------

def test_environments_through_the_real_client(emulator: Emulator, azureml_venv: Path) -> None:
    from simml.core.conda_dependencies import CondaDependencies
    from simml.core.environment import Environment
    ws = emulator.workspace()
    simml_made = unique("routes-simml-env")
    env = Environment(simml_made)
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["numpy"])
    env.environment_variables = {"FROM": "simml"}
    env.register(ws)
    name = unique("routes-env")

    result = emulator.run_client(azureml_venv, "routes_environments.py", name, simml_made)

    assert result["versions"] == ["1", "1", "2"]
    assert result["latest"][:2] == ["2", "1"] and "joblib" in result["latest"][2]
    assert result["v1"][:2] == ["1", None] and "joblib" in result["v1"][2]
    assert result["listed"] == "2"
    assert result["simml_made"][:2] == [simml_made, "1"]
    assert "numpy" in result["simml_made"][2] and result["simml_made"][3] == "simml"
    assert result["same_version"] == "2"
    assert "409" in result["changed_version"][1], result["changed_version"]
    assert "404" in result["unknown"][1] and "400" in result["label"][1]
    assert result["final"] == "2"
    # simml's registry holds what the client registered
    latest = Environment.get(ws, name)
    assert latest.version == "2" and latest.environment_variables["ROUTES"] == "1"
    assert "joblib" in latest.python.conda_dependencies.pip_packages
    assert Environment.get(ws, name, version="1").environment_variables.get("ROUTES") is None
    assert Environment.list(ws)[name].version == "2"


def test_environment_registration_refuses_bad_input(emulator: Emulator) -> None:
    from simml.core.environment import Environment, EnvironmentNotFoundException
    ws = emulator.workspace()
    name = unique("routes-env-bad")
    path = f"{ENVIRONMENTS}/{name}"
    good = {"Name": name, "python": {"condaDependencies": {
        "dependencies": [{"pip": ["joblib"]}]}}, "EnvironmentVariables": {"A": "1"}}
    for bad, inner in (({**good, "Name": "other"}, "BadArgument"),
                       ({**good, "python": ["joblib"]}, "BadArgument"),
                       ({**good, "python": {"condaDependencies": ["joblib"]}}, "BadArgument"),
                       ({**good, "EnvironmentVariables": {"A": {"b": 1}}}, "BadArgument"),
                       ({**good, "Colour": "red"}, "BadArgument"), ([1], "InvalidJson")):
        refused(call(emulator, "PUT", path, bad), 400, inner)
    refused(call(emulator, "PUT", path, raw=b"{nope"), 400, "InvalidJson")
    refused(call(emulator, "PUT", f"{ENVIRONMENTS}/AzureML-mine", {}), 400, "BadArgument")
    refused(call(emulator, "PUT", f"{path}/versions/3", good), 400, "NotSupported")
    refused(call(emulator, "GET", path), 404, "EnvironmentNotFound")
    with pytest.raises(EnvironmentNotFoundException):
        Environment.get(ws, name)

    status, first = call(emulator, "PUT", f"{path}/versions/1", good)
    assert status == 200 and first["version"] == "1", first
    changed = {**good, "EnvironmentVariables": {"A": "2"}}
    refused(call(emulator, "PUT", f"{path}/versions/1", changed), 409,
            "EnvironmentVersionConflict")
    assert call(emulator, "PUT", f"{path}/versions/1", good)[1]["version"] == "1"
    refused(call(emulator, "GET", f"{path}/labels/prod"), 400, "NotSupported")
    refused(call(emulator, "PUT", f"{path}/versions/1/metadata", {"Labels": ["prod"]}), 400,
            "NotSupported")
    refused(call(emulator, "GET", f"{path}/versions/9"), 404, "EnvironmentNotFound")
    assert Environment.get(ws, name).version == "1"
    assert Environment.get(ws, name).environment_variables == {"A": "1"}
    status, listed = call(emulator, "GET", ENVIRONMENTS + "/")
    assert status == 200 and name in [e["name"] for e in listed["value"]]


# --- image metrics -----------------------------------------------------------------------------------

def test_log_image_through_the_real_client(emulator: Emulator, azureml_venv: Path) -> None:
    from simml.core.experiment import Experiment
    from simml.core.run import Run
    ws = emulator.workspace()
    source = emulator.client_dir / f"{unique('img')}.png"
    source.write_bytes(PNG)
    ours = Experiment(ws, "routes-images").start_logging()
    ours.log_image("chart", path=str(source))
    ours.complete()

    result = emulator.run_client(azureml_venv, "routes_images.py", source.name,
                                 "routes-images", ours.id)

    run_id = result["run_id"]
    reference = f"aml://artifactId/ExperimentRun/dcid.{run_id}/{source.name}"
    assert result["metrics"] == {"loss": 0.5, "curve": reference}
    assert source.name in result["files"]
    assert result["simml_made"] == {
        "chart": f"aml://artifactId/ExperimentRun/dcid.{ours.id}/chart.png"}
    # simml's API: an image metric naming the run file, whose bytes are the PNG
    run = Run.get(ws, run_id)
    assert run.get_metrics() == {"loss": 0.5, "curve": reference}
    target = emulator.root / "downloaded.png"
    run.download_file(source.name, str(target))
    assert target.read_bytes() == PNG


def test_image_metrics_refuse_bad_references(emulator: Emulator) -> None:
    """A reference to no file of the run, to another run, or out of it is refused, and the
    batch it came in is written not at all."""
    from simml.core.experiment import Experiment
    ws = emulator.workspace()
    run = Experiment(ws, "routes-images").start_logging()
    other = Experiment(ws, "routes-images").start_logging()
    source = emulator.root / "img.png"
    source.write_bytes(PNG)
    run.upload_file("plot.png", str(source))
    batch = f"/metric/v2.0{SCOPE}/runs/{run.id}/batch"
    prefix = "aml://artifactId/ExperimentRun/"

    def image(location: Any, ux: str = "azureml.v2.image") -> dict[str, Any]:
        return {"name": "curve", "columns": {"curve": "Artifact"},
                "properties": {"uxMetricType": ux},
                "value": [{"metricId": uuid.uuid4().hex, "data": {"curve": location}}]}

    scalar = {"name": "loss", "properties": {"uxMetricType": "azureml.v1.scalar"},
              "value": [{"data": {"loss": 0.25}}]}
    for location, inner in ((f"{prefix}dcid.{run.id}/missing.png", "ArtifactNotFound"),
                            (f"{prefix}dcid.{other.id}/plot.png", "BadArgument"),
                            (f"{prefix}dcid.{run.id}/../x.png", "UnsafePath"),
                            ("https://example.invalid/plot.png", "BadArgument"),
                            (42, "BadArgument")):
        refused(call(emulator, "POST", batch, {"values": [scalar, image(location)]}), 400,
                inner)
    refused(call(emulator, "POST", batch, {"values": [{
        "name": "cm", "properties": {"uxMetricType": "azureml.v2.confusion_matrix"},
        "value": []}]}), 400, "NotSupported")
    refused(call(emulator, "POST", batch, {"values": [scalar, {"name": "loss", "value": [
        {"data": {"loss": "not a number"}}]}]}), 400, "BadArgument")
    assert run.get_metrics() == {}  # no part of a refused batch was written
    # the old form (a path in the run) and the new one are both taken
    answer = call(emulator, "POST", batch, {"values": [
        image("aml://artifactId/plot.png", "azureml.v1.image"),
        image(f"{prefix}dcid.{run.id}/plot.png")]})
    assert answer[0] == 200, answer
    assert run.get_metrics()["curve"] == [f"{prefix}dcid.{run.id}/plot.png"] * 2
    status, full = call(emulator, "POST", f"/metric/v2.0{SCOPE}/runs/{run.id}/full",
                        {"metricName": "curve"})
    assert status == 200 and full["properties"]["uxMetricType"] == "azureml.v2.image"
    assert full["columns"] == {"curve": "Artifact"}
    run.complete()
    other.complete()
