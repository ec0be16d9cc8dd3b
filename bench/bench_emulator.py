"""The emulator (issue 8): the seed flow through the REAL azureml-core client against ``simml serve``
vs the same flow through simml's own API, and the requests the client makes per step.

The client flow is ``tests/emulator_client/seed_flow.py`` (the acceptance test's script: plain
``Workspace.from_config()``, datastore upload, ``ComputeTargetException`` then ``AmlCompute``
create and wait, the ``SKLearn`` estimator with ``pip_packages=['joblib']``, submit, streamed
``wait_for_completion``, metrics, files, ``download_file``, ``register_model`` twice, ``Model.list``,
``Model``, ``download``, a ``ScriptRunConfig`` on ``'local'``), run in the client's own venv
(``SIMML_AZUREML_VENV``, else the tests' cached uv venv) with the environment ``simml serve
--write-env`` printed. The simml flow is the *same file* with its import prefix changed
(``azureml.`` → ``simml.``, also in the training script), which is the port simml promises, run by
this interpreter on a workspace of its own. Both workspaces use the ``scaled:60`` clock and keep
their job environments built (one untimed warm-up each). Median of 3, interleaved.

Rows: wall time of the client flow vs the simml flow (ratio; no target: the issue asks for the
figure), and the requests the server answered per step of the client flow (median).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, interleave, median, progress, row

CLIENT_DIR = ROOT / "tests" / "emulator_client"
SUB, RG, WS = "00000000-0000-0000-0000-000000000000", "rg1", "ws1"
STEPS = ["workspace", "upload", "compute", "train", "register", "local"]


def _client_venv() -> Path:
    named = os.environ.get("SIMML_AZUREML_VENV")
    if named:
        return Path(named) / "bin" / "python"
    sys.path.insert(0, str(ROOT / "tests"))
    from _venvs import cached_venv
    python, problem = cached_venv("azureml-client", ["azureml-core", "azureml-train-core"],
                                  "azureml.train.sklearn")
    if python is None:
        raise RuntimeError(f"no azureml client venv: {problem}")
    return Path(python)


def _iris_csv(folder: Path) -> Path:
    """The main job's iris.csv (header, then features and class): examples/seed.py's writer."""
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from seed import write_iris_csv
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return write_iris_csv(folder)


def _ported(source: Path, target: Path) -> Path:
    """``source`` with the import prefix changed, as a user ports from Azure to simml."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(re.sub(r"\bfrom azureml\.", "from simml.", source.read_text()))
    return target


def _workspace_folder(folder: Path, home: Path) -> None:
    (folder / ".azureml").mkdir(parents=True)
    (folder / ".azureml" / "config.json").write_text(json.dumps(
        {"subscription_id": SUB, "resource_group": RG, "workspace_name": WS,
         "simml_home": str(home)}))
    subprocess.run([sys.executable, "-c", "from simml.core import Workspace; "
                    "Workspace.from_config().set_clock('scaled:60')"], cwd=folder, check=True,
                   env={k: v for k, v in os.environ.items() if k != "SIMML_HOME"})


class Flows:
    """The server, the two flows' folders, and one run of either flow."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = _client_venv()
        self.data = root / "data"
        _iris_csv(self.data)
        self.project = root / "project"
        shutil.copytree(CLIENT_DIR / "seed_project", self.project)
        self.simml_project = root / "simml-project"
        _ported(CLIENT_DIR / "seed_project" / "train_iris.py", self.simml_project / "train_iris.py")
        self.server_dir, self.client_dir, self.simml_dir = (
            root / "server", root / "client", root / "simml")
        _workspace_folder(self.server_dir, root / "server-home")
        _workspace_folder(self.simml_dir, root / "simml-home")
        self.simml_script = _ported(CLIENT_DIR / "seed_flow.py", self.simml_dir / "seed_flow.py")
        self.client_dir.mkdir()
        self.request_log = root / "requests.jsonl"
        self.env_file = root / "client.env"
        self.key = os.urandom(24).hex()
        self.runs = 0
        env = {k: v for k, v in os.environ.items() if k != "SIMML_HOME"}
        env.update(SIMML_EMULATOR_KEY=self.key, PYTHONUNBUFFERED="1")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "simml.cli", "serve", "--port", "0", "--proxy-port", "0",
             "--request-log", str(self.request_log), "--write-config", str(self.client_dir),
             "--write-env", str(self.env_file)],
            cwd=self.server_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        assert self.server.stdout is not None
        for line in self.server.stdout:
            if line.startswith("simml emulator: workspace"):
                break
        else:
            raise RuntimeError(f"simml serve did not start (exit {self.server.poll()})")
        self.client_env = self._client_env()

    def _client_env(self) -> dict[str, str]:
        import shlex
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SIMML_", "AZUREML_")) and "PROXY" not in k.upper()}
        env.update(HOME=str(self.root / "client-home"), SIMML_EMULATOR_KEY=self.key,
                   PYTHONWARNINGS="ignore")
        for line in self.env_file.read_text().splitlines():
            words = shlex.split(line)
            if len(words) == 2 and words[0] == "export":
                name, _, value = words[1].partition("=")
                env[name] = value
        return env

    def _names(self, label: str) -> tuple[str, str, str, Path]:
        self.runs += 1
        scratch = self.root / f"out-{label}-{self.runs}"
        scratch.mkdir()
        tag = f"{label[0]}{self.runs}"
        return f"seed-{tag}", f"seed-{tag}", f"sklearn-iris-{tag}", scratch

    def _run(self, command: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
        t0 = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=900)
        seconds = time.perf_counter() - t0
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"{command[1]} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                               f"\n{done.stderr[-3000:]}")
        result = json.loads(lines[-1][len("RESULT "):])
        if result["status"] != "Completed" or result["versions"] != [1, 2]:
            raise RuntimeError(f"unexpected flow result: {result}")
        return {"seconds": seconds, "result": result}

    def client(self) -> dict[str, Any]:
        experiment, cluster, model, scratch = self._names("client")
        outcome = self._run([str(self.venv), str(CLIENT_DIR / "seed_flow.py"), str(self.project),
                             str(self.data), experiment, cluster, model, str(scratch)],
                            self.client_dir, self.client_env)
        outcome["requests"] = self._requests(outcome["result"]["steps"])
        return outcome

    def simml(self) -> dict[str, Any]:
        experiment, cluster, model, scratch = self._names("simml")
        env = {k: v for k, v in os.environ.items() if k != "SIMML_HOME"}
        return self._run([sys.executable, str(self.simml_script), str(self.simml_project),
                          str(self.data), experiment, cluster, model, str(scratch)],
                         self.simml_dir, env)

    def _requests(self, steps: dict[str, float]) -> dict[str, int]:
        """Requests the server answered in each step of one client flow (by wall-clock stamp)."""
        entries = [json.loads(line) for line in self.request_log.read_text().splitlines()]
        counts = {}
        start = steps["start"]
        for name in STEPS:
            end = steps[name]
            counts[name] = sum(1 for e in entries if start < e["at"] <= end)
            start = end
        counts["total"] = sum(counts[name] for name in STEPS)
        counts["msi"] = sum(1 for e in entries if steps["start"] < e["at"] <= steps[STEPS[-1]]
                            and e["template"] == "/simml/msi/token")
        return counts

    def close(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()


def run(quick: bool = False) -> list[dict]:
    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="simml-bench-emulator-") as tmp:
        flows = Flows(Path(tmp))
        try:
            if not quick:  # job environments built in both workspaces, outside the timing
                progress("emulator: warm-up (untimed)")
                flows.client()
                flows.simml()
            results = interleave(reps, [("client", flows.client), ("simml", flows.simml)],
                                 "seed flow")
        finally:
            flows.close()
    client_t = [r["seconds"] for r in results["client"]]
    simml_t = [r["seconds"] for r in results["simml"]]
    client_s, simml_s = median(client_t), median(simml_t)
    counts = {name: median(r["requests"][name] for r in results["client"])
              for name in [*STEPS, "total", "msi"]}
    per_step = ", ".join(f"{name} {counts[name]:g}" for name in STEPS)
    return [
        row("seed flow: real azureml client → simml serve (wall)", client_s, "s", peer=simml_s,
            peer_name="the same file ported (azureml. → simml.) on simml's API",
            higher_is_better=False, target="– (figure asked for by issue 8)",
            note=(f"client/simml = {client_s / simml_s:.2f}x; scaled:60 clock; job environments "
                  + ("built during the timed run (--quick)" if quick else "warm")
                  + f"; median of {reps}" + (" interleaved" if reps > 1 else "")),
            samples={"simml": client_t, "peer": simml_t}),
        row("seed flow: requests the emulator served", counts["total"], "requests",
            note=(f"per step: {per_step}; of which {counts['msi']:g} are MSI token fetches "
                  "(the client's ambient auth asks for a token before each call); median of "
                  f"{reps}")),
    ]
