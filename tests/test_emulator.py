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
import urllib.error
import urllib.request
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

REPO = Path(__file__).resolve().parent.parent
CLIENT_SCRIPTS = Path(__file__).resolve().parent / "emulator_client"
SUB, RG, WS = "00000000-0000-0000-0000-000000000000", "rg1", "ws1"
SCOPE = ARM_SCOPE.format(sub=SUB, rg=RG, ws=WS)


AZUREML_CLIENT_REQUIREMENTS = ["azureml-core", "azureml-train-core"]


def _venv_works(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    check = subprocess.run([str(python), "-c", "import azureml.core, azureml.train.sklearn"],
                           capture_output=True, timeout=120)
    return check.returncode == 0


@pytest.fixture(scope="session")
def azureml_venv() -> Path:
    """The real client's venv: the one named by ``SIMML_AZUREML_VENV``, else one the tests build
    once with uv and reuse (``tests/_venvs.py``, like the inference server's), so the README's test
    command needs nothing by hand. When it cannot be built (no package index) the client tests
    skip, except in CI (``CI`` set), where that fails them."""
    named = os.environ.get("SIMML_AZUREML_VENV")
    if named and _venv_works(Path(named)):
        return Path(named)
    from _venvs import cached_venv
    python, problem = cached_venv("azureml-client", AZUREML_CLIENT_REQUIREMENTS,
                                  "azureml.train.sklearn")
    if python is None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return Path(python).parent.parent


class Emulator:
    """One `simml serve` process for the whole module, and the folders around it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "simml-home"
        self.server_dir = root / "server"
        self.client_dir = root / "client"
        self.client_home = root / "client-home"
        self.request_log = root / "requests.jsonl"
        self.key = new_key()
        for folder in (self.server_dir / ".azureml", self.client_dir, self.client_home):
            folder.mkdir(parents=True)
        self.config = {"subscription_id": SUB, "resource_group": RG, "workspace_name": WS,
                       "simml_home": str(self.home)}
        (self.server_dir / ".azureml" / "config.json").write_text(json.dumps(self.config))
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def workspace(self) -> Any:
        """The served workspace through simml's API (SIMML_HOME would win over the config's
        simml_home, and the suite's autouse fixture sets one per test: point it here)."""
        from simml.core.workspace import Workspace
        saved = os.environ.get("SIMML_HOME")
        os.environ["SIMML_HOME"] = str(self.home)
        try:
            return Workspace._open(dict(self.config), create_if_local=True)
        finally:
            if saved is None:
                os.environ.pop("SIMML_HOME", None)
            else:
                os.environ["SIMML_HOME"] = saved

    def start(self) -> None:
        self.workspace().set_clock("scaled:60")  # cluster provisioning in simulated time
        env = {**os.environ, "SIMML_EMULATOR_KEY": self.key, "PYTHONUNBUFFERED": "1"}
        env.pop("SIMML_HOME", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "simml.cli", "serve", "--port", "0", "--request-log",
             str(self.request_log), "--write-config", str(self.client_dir)],
            cwd=self.server_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        deadline = time.monotonic() + 60
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("simml emulator:"):
                self.url = line.rsplit(" at ", 1)[1].strip()
                return
        raise AssertionError(f"simml serve did not start (exit {self.process.poll()})")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> list[dict[str, Any]]:
        if not self.request_log.exists():
            return []
        return [json.loads(line) for line in self.request_log.read_text().splitlines()]

    def request(self, method: str, path: str, body: bytes | None = None,
                token: str | None = "auto", headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if token == "auto":
            token = mint_token(self.key)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, (json.loads(raw) if raw else None)

    def run_client(self, venv: Path, script: str, *args: str) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SIMML_", "AZUREML_")) and "PROXY" not in k.upper()}
        env.update({"HOME": str(self.client_home), "SIMML_EMULATOR_KEY": self.key,
                    "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"})
        done = subprocess.run([str(venv / "bin" / "python"), str(CLIENT_SCRIPTS / script), *args],
                              cwd=self.client_dir, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, (f"{script} failed ({done.returncode}):\n"
                                      f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        assert lines, f"{script} printed no RESULT line:\n{done.stdout[-3000:]}"
        result = json.loads(lines[-1][len("RESULT "):])
        result["_stdout"] = done.stdout
        return result


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = Emulator(tmp_path_factory.mktemp("emulator"))
    server.start()
    yield server
    server.stop()


def _templates(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["method"], e["template"]) for e in entries]


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
    result = emulator.run_client(azureml_venv, "compute.py")
    entries = emulator.log()[before:]

    assert result["first_lookup"].startswith("ComputeTargetException")
    assert "ComputeTargetNotFound" in result["first_lookup"]
    assert result["type"] == "AmlCompute"
    assert result["provisioning_state"] == "Succeeded"
    assert result["status"]["vmSize"] == "STANDARD_D2_V2"
    assert result["status"]["scaleSettings"]["maxNodeCount"] == 4
    assert result["list"] == ["cpu-cluster"]
    assert result["again"] == ["AmlCompute", "STANDARD_D2_V2", 4]
    assert "Minimum number of nodes requested have been provisioned" in result["_stdout"]
    # the cluster is simml's simulated cluster
    ws = emulator.workspace()
    assert [c.name for c in ws._backend.compute_list(ws._info)] == ["cpu-cluster"]
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
