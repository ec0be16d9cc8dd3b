"""Issue 8's acceptance: the seed doc end to end with the REAL azureml-core / azureml-train-core client
(its own venv) against the shared `simml serve`, written as users write it (no simml import, plain
`Workspace.from_config()`), and the request sequence it causes compared with the one the real client
sent to a throw-away prototype server (`tests/data/azureml-emulator-traffic.log`)."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from _emulator_server import REPO, Emulator

CLIENT = Path(__file__).resolve().parent / "emulator_client"
# The requests the real client sent in one run of the seed flow against a throw-away prototype
# server (a copy of the project's shared/reference/azureml-emulator-traffic.log, kept here so a
# clean checkout has it).
TRAFFIC_LOG = Path(__file__).resolve().parent / "data" / "azureml-emulator-traffic.log"
# Content URLs the prototype chose for itself (SAS uploads, its log endpoint, its blob container):
# servers choose these, so they are not part of the protocol being compared.
PROTOTYPE_CONTENT = ("/artifacts/", "/simml/logs/", "/azureml-blobstore-local/")


def _write_iris_csv(folder: Path) -> Path:
    """The main job's iris.csv (header, then features and class): examples/seed.py's writer."""
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from seed import write_iris_csv
    finally:
        sys.path.remove(str(REPO / "examples"))
    return write_iris_csv(folder)


def _reference_requests() -> list[tuple[str, str]]:
    """(method, path) of the seed part of the reference log: up to the second script (the next
    ARM workspace GET)."""
    requests: list[tuple[str, str]] = []
    for line in TRAFFIC_LOG.read_text().splitlines():
        found = re.match(r"^\d{3} (GET|POST|PUT|PATCH|DELETE|HEAD) (\S+)", line)
        if not found:
            continue
        method, path = found.group(1), found.group(2).split("?")[0]
        if requests and method == "GET" and "/workspaces/" in path and \
                path.rstrip("/").endswith("/workspaces/ws1") and not path.startswith("/rp"):
            break
        requests.append((method, path))
    return requests


def _first_occurrences(templates: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each (method, template) once, where it first occurs; a run addressed through its
    experiment's id (``experimentids/{expid}``) counts as addressed through its name: which one
    the client uses depends on what it already knows (ids aside)."""
    seen: list[tuple[str, str]] = []
    for method, template in templates:
        item = (method, template.replace("/experimentids/{expid}/", "/experiments/{exp}/"))
        if item not in seen:
            seen.append(item)
    return seen


def test_seed_flow_through_the_real_client(emulator: Emulator, azureml_venv: Path,
                                           simml_workspace: Any, tmp_path: Path) -> None:
    from simml.core.model import Model
    from simml.core.run import Run
    from simml.emulator.service import Emulator as Routes

    suffix = uuid.uuid4().hex[:6]
    experiment, cluster, model = f"seed-{suffix}", f"seed-{suffix}", f"sklearn-iris-{suffix}"
    data, scratch = emulator.client_dir / f"data-{suffix}", emulator.client_dir / f"out-{suffix}"
    _write_iris_csv(data)
    scratch.mkdir()
    before = len(emulator.log())
    home = emulator.root / f"seed-home-{suffix}"  # the client's caches start cold, as in the
    home.mkdir()                                   # reference run (discovery, snapshots)
    result = emulator.run_client(azureml_venv, "seed_flow.py", str(CLIENT / "seed_project"),
                                 str(data), experiment, cluster, model, str(scratch), home=home)
    entries = emulator.log()[before:]
    out = result["_stdout"]

    # what came back to the client
    assert result["workspace"][0] == "ws1"
    assert result["auth"] == "InteractiveLoginAuthentication"  # plain from_config(): ambient
    assert result["first_lookup"].startswith("ComputeTargetException")
    assert result["cluster"] == ["AmlCompute", "Succeeded"]
    assert "Uploading" in out and "Uploaded" in out  # the datastore upload's progress lines
    assert result["status"] == "Completed" and result["target"] == cluster
    logged = json.loads([ln for ln in out.splitlines() if ln.startswith("LOGGED ")][0][7:])
    assert result["metrics"] == logged and logged["Kernel type"] == "linear"
    assert logged["Accuracy"] > 0.9  # trained on the iris.csv uploaded to the datastore
    assert "Execution Summary" in out and "run class: _SubmittedRun" in out
    assert "outputs/model.joblib" in result["files"]
    assert any(f.endswith("70_driver_log.txt") for f in result["files"])
    assert result["versions"] == [1, 2] and result["listed"] == [1, 2]
    assert result["latest"] == [model, 2, result["run_id"]]
    downloaded = Path(result["downloaded"])
    run_copy = scratch / "run-model.joblib"
    assert downloaded.read_bytes() == run_copy.read_bytes()
    local_id, local_status, local_target, local_metrics = result["local"]
    assert (local_status, local_target) == ("Completed", "local")
    assert local_metrics["Kernel type"] == "rbf" and local_metrics["Penalty"] == 0.5

    # the same objects through simml's own API
    ws = emulator.workspace()
    seen = Run.get(ws, result["run_id"])
    assert seen.get_status() == "Completed" and seen.get_metrics() == logged
    statuses = [h["status"] for h in seen.get_details()["statusHistory"]]
    assert statuses[:5] == ["NotStarted", "Starting", "Preparing", "Queued", "Running"]
    registered = Model(ws, model)
    assert registered.version == 2 and registered.run_id == result["run_id"]
    stored = Path(registered.download(target_dir=str(tmp_path / "simml-model"), exist_ok=True))
    stored = stored if stored.is_file() else next(stored.rglob("model.joblib"))
    assert hashlib.sha256(stored.read_bytes()).digest() == \
        hashlib.sha256(run_copy.read_bytes()).digest()
    assert Run.get(ws, local_id).get_status() == "Completed"

    # every request matched a route; none failed on the server's side
    assert not [e for e in entries if e["template"] == "unknown"], entries
    assert not [e for e in entries if e["status"] >= 500], entries

    # the request sequence: Azure's order, ids and poll counts aside. Each reference request is
    # templated with this server's routing table; the order in which each (method, template)
    # first occurs must be the reference's.
    router = Routes(simml_workspace).router
    reference: list[tuple[str, str]] = []
    for method, path in _reference_requests():
        matched = router.match(method, path)
        if matched is None:
            assert path.startswith(PROTOTYPE_CONTENT), f"no route for {method} {path}"
            continue
        reference.append((method, matched[0].template))
    expected = _first_occurrences(reference)
    made = _first_occurrences([(e["method"], e["template"] or "") for e in entries])
    missing = [item for item in expected if item not in made]
    assert not missing, f"the flow never made: {missing}"
    assert [item for item in made if item in expected] == expected
