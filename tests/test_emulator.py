"""`simml serve`, the Azure ML v1 emulator: the real azureml-core client (its own venv, built once
by the tests: `tests/_venvs.py`) run as a subprocess against one shared server, and the server's answers to
bad input and bad tokens (plain HTTP, no client needed).

The venv is reused, or built once when missing; the client tests skip only when it cannot be
built outside CI (`CI` set: a failure to build it fails the tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from simml.emulator.protocol import (
    ARM_SCOPE,
    AzureError,
    Router,
    TokenError,
    mint_token,
    new_key,
    verify_token,
)
from _emulator_server import RG, SCOPE, SUB, WS, Emulator
from _emulator_server import templates as _templates


# --- the real client -----------------------------------------------------------------------------

def test_interactive_run_through_the_real_client(emulator: Emulator, azureml_venv: Path) -> None:
    from simml.core.experiment import Experiment
    from simml.core.run import Run
    # a run made through simml's API, read back by the real client ("and the reverse")
    ws = emulator.workspace()
    mine = Experiment(ws, "probe").start_logging()
    mine.log("from_simml", 42)
    mine.complete()

    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "interactive.py", mine.id)
    entries = emulator.log()[before:]

    assert result["workspace"] == [WS, SUB, RG]
    assert result["metrics"] == {"accuracy": [0.5, 0.75], "kernel": "linear",
                                 "losses": [3, 2, 1], "table": {"a": 1, "b": 2.5}}
    assert result["status"] == "Completed"
    assert result["other"] == {"from_simml": 42}
    # the client's run is simml's: same metrics, status and tag through simml's API
    seen = Run.get(ws, result["run_id"])
    assert seen.get_status() == "Completed"
    assert seen.get_metrics()["accuracy"] == [0.5, 0.75]
    assert seen.get_tags()["team"] == "simml"
    assert seen.experiment.name == "probe"
    # every request matched a route; the flow's shape is Azure's
    assert all(e["template"] != "unknown" for e in entries), entries
    templates = _templates(entries)
    assert templates[0] == ("GET", ARM_SCOPE)
    assert ("PATCH", "/history/v1.0" + ARM_SCOPE + "/experiments/{exp}/runs/{run}") in templates
    assert ("POST", "/metric/v2.0" + ARM_SCOPE + "/runs/{run}/batch") in templates
    assert ("POST", "/metric/v2.0" + ARM_SCOPE + "/runs/{run}/full") in templates


def test_run_list_cli_shows_the_clients_runs(emulator: Emulator, azureml_venv: Path) -> None:
    result = emulator.run_client(azureml_venv, "interactive.py")
    listed = subprocess.run([sys.executable, "-m", "simml.cli", "--json", "run", "list",
                             "--experiment", "probe"], cwd=emulator.server_dir,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "SIMML_HOME": str(emulator.home)})
    assert listed.returncode == 0, listed.stderr
    ids = {doc["run_id"] if "run_id" in doc else doc["id"] for doc in json.loads(listed.stdout)}
    assert result["run_id"] in ids


def test_compute_flow_through_the_real_client(emulator: Emulator, azureml_venv: Path) -> None:
    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "compute.py", "compute-flow")  # its own cluster
    entries = emulator.log()[before:]

    assert result["first_lookup"].startswith("ComputeTargetException")
    assert "ComputeTargetNotFound" in result["first_lookup"]
    assert result["type"] == "AmlCompute"
    assert result["provisioning_state"] == "Succeeded"
    assert result["status"]["vmSize"] == "STANDARD_D2_V2"
    assert result["status"]["scaleSettings"]["maxNodeCount"] == 4
    assert "compute-flow" in result["list"]  # the session's other tests make clusters too
    assert result["again"] == ["AmlCompute", "STANDARD_D2_V2", 4]
    assert "Minimum number of nodes requested have been provisioned" in result["_stdout"]
    # the cluster is simml's simulated cluster
    ws = emulator.workspace()
    assert "compute-flow" in [c.name for c in ws._backend.compute_list(ws._info)]
    assert all(e["template"] != "unknown" for e in entries), entries
    sequence = _templates(entries)
    compute = "/rp/workspaces" + ARM_SCOPE + "/computes/{name}"
    # Azure's order: ARM workspace, 404 lookup, PUT with the async header, operation poll
    assert sequence[0] == ("GET", ARM_SCOPE)
    first = [e for e in entries if e["template"] == compute][0]
    assert first["status"] == 404
    put = sequence.index(("PUT", ARM_SCOPE + "/computes/{name}"))
    assert ("GET", "/operations/{operation}") in sequence[put:]


# --- bad input and security (plain HTTP) ---------------------------------------------------------

def test_missing_token_is_401_in_azures_shape(emulator: Emulator) -> None:
    status, body = emulator.request("GET", SCOPE, token=None)
    assert status == 401
    assert body["error"]["code"] == "AuthenticationFailed"
    assert body["error"]["details"] == []


def test_expired_and_foreign_tokens_are_401(emulator: Emulator) -> None:
    expired = mint_token(emulator.key, seconds=60, now=time.time() - 3600)
    status, body = emulator.request("GET", SCOPE, token=expired)
    assert status == 401 and "expired" in body["error"]["message"]
    foreign = mint_token(new_key())
    status, body = emulator.request("GET", SCOPE, token=foreign)
    assert status == 401 and "not issued by this emulator" in body["error"]["message"]
    status, _ = emulator.request("GET", SCOPE, token="not-a-jwt")
    assert status == 401
    status, body = emulator.request("GET", SCOPE)
    assert status == 200 and body["name"] == WS


def test_malformed_json_is_400_and_the_server_keeps_serving(emulator: Emulator) -> None:
    path = "/history/v1.0" + SCOPE + "/experiments/probe/runs/bad-json-run"
    status, body = emulator.request("PATCH", path, body=b"{not json",
                                    headers={"Content-Type": "application/json"})
    assert status == 400
    assert body["error"]["code"] == "UserError"
    assert body["error"]["innerError"]["code"] == "InvalidJson"
    status, body = emulator.request("PATCH", path, body=b"[1, 2]")
    assert status == 400
    status, body = emulator.request("GET", SCOPE)
    assert status == 200


def test_unknown_route_is_404_naming_it_and_logged(emulator: Emulator) -> None:
    status, body = emulator.request("GET", "/history/v9.9/nowhere")
    assert status == 404
    assert "GET /history/v9.9/nowhere" in body["error"]["message"]
    assert body["error"]["innerError"]["code"] == "RouteNotFound"
    logged = [e for e in emulator.log() if e["path"] == "/history/v9.9/nowhere"]
    assert logged and logged[-1]["template"] == "unknown" and logged[-1]["status"] == 404


def test_another_workspace_is_not_served(emulator: Emulator) -> None:
    status, body = emulator.request("GET", ARM_SCOPE.format(sub=SUB, rg=RG, ws="other"))
    assert status == 404
    assert body["error"]["innerError"]["code"] == "WorkspaceNotFound"


def test_unknown_run_and_metric_are_404(emulator: Emulator) -> None:
    status, body = emulator.request("GET", "/history/v1.0" + SCOPE +
                                    "/experiments/probe/runs/no-such-run")
    assert status == 404 and body["error"]["innerError"]["code"] == "RunNotFound"
    status, body = emulator.request("POST", "/metric/v2.0" + SCOPE + "/runs/no-such-run/full",
                                    body=b'{"metricName": "x"}')
    assert status == 404


def test_compute_put_with_bad_size_is_400_and_nothing_created(emulator: Emulator) -> None:
    body = json.dumps({"location": "local", "properties": {
        "computeType": "AmlCompute", "properties": {
            "vmSize": "NO_SUCH_SIZE", "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2}}}})
    status, answer = emulator.request("PUT", SCOPE + "/computes/bad-size", body=body.encode())
    assert status == 400
    assert answer["error"]["code"] == "UserError"
    status, _ = emulator.request("GET", "/rp/workspaces" + SCOPE + "/computes/bad-size")
    assert status == 404


# --- pure parts ------------------------------------------------------------------------------------

def test_tokens_round_trip_and_refuse_tampering() -> None:
    key = new_key()
    token = mint_token(key, subject="run", scope="run-1")
    claims = verify_token(key, token)
    assert claims["sub"] == "run" and claims["scope"] == "run-1"
    header, body, signature = token.split(".")
    tampered = f"{header}.{body[:-2]}xx.{signature}"
    with pytest.raises(TokenError):
        verify_token(key, tampered)
    with pytest.raises(TokenError, match="expired"):
        verify_token(key, token, now=claims["exp"] + 1)


def test_router_templates() -> None:
    router = Router()
    router.add("GET", "/a/{x}/b", lambda r: None)
    router.add("GET", "/files/{path*}", lambda r: None)
    route, params = router.match("GET", "/A/one%20two/B")  # literals are case-insensitive
    assert route.template == "/a/{x}/b" and params == {"x": "one two"}
    route, params = router.match("GET", "/files/x/y/z.txt")
    assert params == {"path": "x/y/z.txt"}
    assert router.match("GET", "/a/one/two/b") is None
    with pytest.raises(AzureError) as raised:
        router.match("POST", "/a/x/b")
    assert raised.value.status == 405
