"""The shared `simml serve` of the emulator tests: one server process (and its simulated cluster)
for the whole session, and the real azureml-core client's venv (built once with uv by
`tests/_venvs.py`). The fixtures are in conftest.py: `azureml_venv` and `emulator`."""

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

from simml.emulator.protocol import ARM_SCOPE, mint_token, new_key

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
        self.env_file = root / "client.env"  # the proxy's export lines (`simml serve --write-env`)
        self.client_env: dict[str, str] = {}

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
             str(self.request_log), "--write-config", str(self.client_dir),
             "--proxy-port", "0", "--write-env", str(self.env_file)],
            cwd=self.server_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        deadline = time.monotonic() + 60
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("simml emulator: workspace"):
                self.url = line.rsplit(" at ", 1)[1].strip()
                self.client_env = parse_env_file(self.env_file)
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

    def run_client(self, venv: Path, script: str, *args: str,
                   home: Path | None = None) -> dict[str, Any]:
        """Run a client script; ``home`` gives it a HOME of its own (the client caches
        discovery answers and snapshots there), else the one the client scripts share."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SIMML_", "AZUREML_")) and "PROXY" not in k.upper()}
        env.update({"HOME": str(home or self.client_home), "SIMML_EMULATOR_KEY": self.key,
                    "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"})
        env.update(self.client_env)  # HTTPS_PROXY, REQUESTS_CA_BUNDLE, MSI_* (blob hosts, ARM)
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


def parse_env_file(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines `simml serve --write-env` wrote."""
    import shlex
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            found[name] = value
    return found


def templates(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (method, path template) of each logged request."""
    return [(e["method"], e["template"]) for e in entries]
