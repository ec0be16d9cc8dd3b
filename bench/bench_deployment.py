"""Deployment (issue 10): scoring latency and throughput of a local service vs azmlinfsrv, mlflow.

Rows:

* ``POST /score p50`` / ``p99`` / ``requests/s``: an iris SVC (``SVC(kernel='linear')`` on all of
  iris) served by simml's scoring server (``Model.deploy`` of the registered model with
  ``LocalWebservice.deploy_configuration()``), by ``azureml-inference-server-http`` (its own
  ``azmlinfsrv`` command, 1 worker) and by ``mlflow models serve`` (1 worker,
  ``--env-manager local``), all started side by side. The client sends the same two iris rows
  (``{"data": [...]}`` to ``/score``; ``{"inputs": [...]}`` to mlflow's ``/invocations``) 2,000
  times (quick: 300) on one kept-open connection (HTTP/1.1 keep-alive, TCP_NODELAY, a raw-socket
  client so the client's own overhead is small and equal for all), after 100 warm-up requests;
  3 rounds (quick: 1), servers alternating; the figures are medians over rounds. Targets: p50 at
  most 1 ms; at least 2x the requests/s of each peer.
* ``deploy -> first successful score``: ``Model.deploy`` + ``wait_for_deployment`` + the first
  ``run`` in a fresh workspace, with a warm environment: an environment like the seed flow's
  (scikit-learn, scipy, numpy and joblib pinned to this interpreter's versions, built by uv once
  before timing; quick, or when it cannot be built: the interpreter simml runs on), after one
  untimed deploy so the files are in the page cache. Median of 3 (quick: 1). Target: under 3 s.
  The "peer" is the floor: a fresh interpreter of the same environment importing what ``init()``
  needs (``joblib``, ``numpy``, ``sklearn.svm``). The peers' start-to-first-answer times are in
  the note.

The peer ``azureml-inference-server-http`` needs an interpreter where it is installed: this one, or
the one named by ``SIMML_BENCH_AZMLINFSRV_PYTHON`` (e.g. ``python3 -m venv /tmp/infsrv &&
/tmp/infsrv/bin/pip install azureml-inference-server-http scikit-learn joblib``); without one its
rows say so. mlflow comes with the ``bench`` extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from _common import Worker, median, mlflow_available, progress, row

NAME = "deployment"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
TARGET_P50_MS = 1.0
TARGET_RATIO = 2.0
TARGET_DEPLOY_S = 3.0
WARMUP = 100
FLOOR_IMPORTS = "import json, os, joblib, numpy, sklearn.svm"
"""What a fresh interpreter must import before the first score: the floor of deploy -> score."""

SIMML_SCORE = '''
import json, os
import joblib
import numpy as np

def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.joblib"))

def run(raw_data):
    return model.predict(np.array(json.loads(raw_data)["data"])).tolist()
'''

PEER_SCORE = '''
import json
import numpy as np
from sklearn.datasets import load_iris
from sklearn.svm import SVC

def init():
    global model
    X, y = load_iris(return_X_y=True)
    model = SVC(kernel="linear", C=1.0).fit(X, y)     # the same model simml's service loads

def run(raw_data):
    return model.predict(np.array(json.loads(raw_data)["data"])).tolist()
'''


# --- inside the worker ---------------------------------------------------------------------------
def _seed_environment() -> Any:
    """The environment the seed flow deploys in (its SKLearn estimator's): scikit-learn, scipy,
    numpy and joblib pinned to this interpreter's versions, built by uv and cached."""
    import platform

    import joblib
    import numpy
    import scipy
    import sklearn

    from simml.core import Environment
    from simml.core.conda_dependencies import CondaDependencies
    env = Environment("bench-deploy-env")
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=[f"scikit-learn=={sklearn.__version__}", f"scipy=={scipy.__version__}",
                      f"numpy=={numpy.__version__}", f"joblib=={joblib.__version__}"],
        python_version=platform.python_version())
    return env


def simml_deploy(workdir: str, repeats: int, built_environment: bool) -> dict[str, Any]:
    """Register the iris SVC, then time deploy -> first score ``repeats`` times; leave the last
    service running and return its port. With ``built_environment``, the service runs in the
    seed flow's kind of environment (built once before timing: a warm environment), else on this
    interpreter."""
    os.environ["AZUREML_LOG_DEPRECATION_WARNING_ENABLED"] = "False"
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.svm import SVC

    from simml.core import Workspace
    from simml.core.model import InferenceConfig, Model
    from simml.core.webservice import LocalWebservice
    base = Path(workdir)
    (base / "app").mkdir(parents=True)
    (base / "app" / "score.py").write_text(textwrap.dedent(SIMML_SCORE))
    X, y = load_iris(return_X_y=True)
    joblib.dump(SVC(kernel="linear", C=1.0).fit(X, y), base / "model.joblib")
    ws = Workspace.create("bench-deploy", exist_ok=True, show_output=False)
    cwd = os.getcwd()
    os.chdir(base)
    try:
        model = Model.register(ws, model_path="model.joblib", model_name="sklearn-iris")
    finally:
        os.chdir(cwd)
    environment, python, where = None, sys.executable, "this interpreter"
    if built_environment:
        from simml_local.environments import EnvironmentBuilder
        try:
            candidate = _seed_environment()
            prepared = EnvironmentBuilder(os.environ["SIMML_HOME"]).prepare(
                candidate._definition(), lambda line: None)
            environment, python = candidate, str(prepared.details["python"])
            where = "a uv environment like the seed's (scikit-learn, scipy, numpy, joblib)"
        except Exception as exc:  # noqa: BLE001 - no index reachable: this interpreter
            where = (f"this interpreter (building a seed-like environment failed: "
                     f"{str(exc).splitlines()[0][:120]})")
    config = InferenceConfig(entry_script="score.py", source_directory=str(base / "app"),
                             environment=environment)
    body = json.dumps({"data": ROWS})
    seconds, floors = [], []
    service = None
    for index in range(repeats + 1):             # the first one warms the page cache
        if service is not None:
            service.delete()
        started = time.perf_counter()           # the floor: a fresh interpreter importing what
        subprocess.run([python, "-c", FLOOR_IMPORTS], check=True)   # init() needs, same python
        if index:
            floors.append(time.perf_counter() - started)
        started = time.perf_counter()
        service = Model.deploy(ws, "bench-iris", [model], config,
                               LocalWebservice.deploy_configuration())
        service.wait_for_deployment()
        answer = service.run(body)
        elapsed = time.perf_counter() - started
        if answer != [0, 2]:
            raise RuntimeError(f"unexpected answer {answer}")
        if index:
            seconds.append(elapsed)
    assert service is not None
    return {"port": service.port, "seconds": seconds, "floors": floors, "where": where}


def simml_delete() -> bool:
    """Delete the benchmark's services (there may be none: the deploy may have failed)."""
    from simml.core import Workspace
    from simml.core.webservice import Webservice
    from simml.exceptions import WorkspaceException
    try:
        ws = Workspace.get("bench-deploy")
    except WorkspaceException:
        return False
    for service in Webservice.list(ws):
        service.delete()
    return True


def mlflow_save(path: str) -> str:
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.svm import SVC
    X, y = load_iris(return_X_y=True)
    mlflow.sklearn.save_model(SVC(kernel="linear", C=1.0).fit(X, y), path)
    return path


# --- the client ----------------------------------------------------------------------------------
class KeepAliveClient:
    """A minimal HTTP/1.1 client on one connection: the same cost for every server."""

    def __init__(self, port: int, path: str, body: bytes) -> None:
        self.port = port
        self.request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                        "\r\n").encode() + body
        self.sock: socket.socket | None = None
        self.reconnects = -1
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self.reconnects += 1

    def one(self) -> tuple[int, bytes]:
        if self.sock is None:       # the server closed the last one (gunicorn's sync workers
            self._connect()         # answer "Connection: close"): reconnecting is part of it
        assert self.sock is not None
        self.sock.sendall(self.request)
        status = int(self.rfile.readline().split()[1])
        length, chunked, close = 0, False, False
        while True:
            line = self.rfile.readline()
            if line in (b"\r\n", b""):
                break
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif key == b"connection" and b"close" in value.lower():
                close = True
        if not chunked:
            body = self.rfile.read(length)
        else:
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(parts)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.rfile.close()
            self.sock.close()
            self.sock = None


def measure(port: int, path: str, payload: dict[str, Any], n: int) -> dict[str, float]:
    client = KeepAliveClient(port, path, json.dumps(payload).encode())
    try:
        for _ in range(WARMUP):
            status, body = client.one()
            if status != 200:
                raise RuntimeError(f"{path} on port {port} answered {status}: {body[:300]!r}")
        latencies = []
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = client.one()
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"{path} on port {port} answered {status}")
        total = time.perf_counter() - started
    finally:
        client.close()
    latencies.sort()
    return {"p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            "rps": n / total, "reconnects": client.reconnects}


# --- peers ---------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(process: subprocess.Popen, port: int, path: str, payload: dict[str, Any],
                log: Path, timeout: float = 180.0) -> float:
    started = time.perf_counter()
    body = json.dumps(payload).encode()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the peer exited ({process.returncode}):\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        try:
            client = KeepAliveClient(port, path, body)
            try:
                status, _ = client.one()
            finally:
                client.close()
            if status == 200:
                return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the peer did not answer within {timeout:g} s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


def _start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")
    try:
        return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        handle.close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
            process.wait()


def azmlinfsrv_python() -> str | None:
    if importlib.util.find_spec("azureml_inference_server_http") is not None:
        return sys.executable
    named = os.environ.get("SIMML_BENCH_AZMLINFSRV_PYTHON")
    return named if named and os.path.isfile(named) else None


def _peer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AZUREML_", "SIMML_", "AML_", "MLFLOW_"))}
    env.update({"PYTHONUNBUFFERED": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true"})
    return env


def start_azmlinfsrv(python: str, base: Path) -> tuple[subprocess.Popen, int, float]:
    app = base / "azmlinfsrv-app"
    app.mkdir()
    (app / "score.py").write_text(textwrap.dedent(PEER_SCORE))
    port = _free_port()
    executable = Path(python).parent / "azmlinfsrv"   # the command as users run it
    if not executable.exists():
        raise RuntimeError(f"no azmlinfsrv command next to {python}")
    command = [str(executable), "--entry_script", str(app / "score.py"), "--port", str(port),
               "--worker_count", "1"]
    log = base / "azmlinfsrv.log"
    process = _start(command, app, _peer_env(), log)
    ready = _wait_ready(process, port, "/score", {"data": ROWS}, log)
    return process, port, ready


def start_mlflow(model_path: str, base: Path) -> tuple[subprocess.Popen, int, float]:
    port = _free_port()
    env = _peer_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_path,
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = base / "mlflow.log"
    process = _start(command, base, env, log)
    ready = _wait_ready(process, port, "/invocations", {"inputs": ROWS}, log)
    return process, port, ready


# --- the benchmark -------------------------------------------------------------------------------
def _measure_all(deployed: dict[str, Any], peers: dict[str, Any], starts: dict[str, float],
                 skipped: dict[str, str], samples: dict[str, list[dict[str, float]]], base: Path,
                 n: int, rounds: int) -> None:
    """Start the peers beside simml's service, then measure every server in rounds."""
    servers: dict[str, tuple[int, str, dict[str, Any]]] = {
        "simml": (deployed["port"], "/score", {"data": ROWS})}
    python = azmlinfsrv_python()
    if python is None:
        skipped["azmlinfsrv"] = ("azureml-inference-server-http is not installed here; "
                                 "set SIMML_BENCH_AZMLINFSRV_PYTHON")
    else:
        progress("deployment: starting azmlinfsrv")
        try:
            process, port, starts["azmlinfsrv"] = start_azmlinfsrv(python, base)
            peers["azmlinfsrv"] = (process, port, "/score", {"data": ROWS})
        except Exception as exc:  # noqa: BLE001 - reported in the table
            skipped["azmlinfsrv"] = f"did not start: {str(exc).splitlines()[0]}"
    if not mlflow_available():
        skipped["mlflow"] = "mlflow is not installed (pip install -e '.[bench]')"
    else:
        progress("deployment: saving the model for mlflow and starting mlflow models "
                 "serve")
        try:
            with Worker("deployment-mlflow") as mlflow_worker:
                model_path = mlflow_worker.call("bench_deployment:mlflow_save",
                                                path=str(base / "mlflow-model"))
            process, port, starts["mlflow"] = start_mlflow(model_path, base)
            peers["mlflow"] = (process, port, "/invocations", {"inputs": ROWS})
        except Exception as exc:  # noqa: BLE001 - reported in the table
            skipped["mlflow"] = f"did not start: {str(exc).splitlines()[0]}"
    for name, (_, port, path, payload) in peers.items():
        servers[name] = (port, path, payload)
    order = list(servers)
    for index in range(rounds):
        progress(f"deployment: round {index + 1}/{rounds}, {n} requests per server")
        for name in (order if index % 2 == 0 else list(reversed(order))):
            port, path, payload = servers[name]
            samples.setdefault(name, []).append(measure(port, path, payload, n))


def run(quick: bool = False) -> list[dict]:
    n, rounds, repeats = (300, 1, 1) if quick else (2000, 3, 3)
    base = Path(tempfile.mkdtemp(prefix="simml-bench-deploy-"))
    peers: dict[str, tuple[subprocess.Popen, int, str, dict[str, Any]]] = {}
    starts: dict[str, float] = {}
    skipped: dict[str, str] = {}
    samples: dict[str, list[dict[str, float]]] = {}
    try:
        with Worker("deployment") as worker:
            progress(f"deployment: simml deploy -> first score ({repeats} + 1 warm-up)")
            try:
                deployed = worker.call("bench_deployment:simml_deploy",
                                       workdir=str(base / "simml"), repeats=repeats,
                                       built_environment=not quick)
                _measure_all(deployed, peers, starts, skipped, samples, base, n, rounds)
            finally:     # the service is detached: it outlives the worker unless deleted
                worker.call("bench_deployment:simml_delete")
    finally:
        for process, *_ in peers.values():
            _stop(process)
        shutil.rmtree(base, ignore_errors=True)

    def figure(name: str, key: str) -> float | None:
        if name not in samples:
            return None
        return statistics.median(s[key] for s in samples[name])

    rows = []
    closing = {k for k, v in samples.items() if any(s.get("reconnects", 0) for s in v)}
    base_note = (f"2 iris rows, {n} requests on one kept-open connection after {WARMUP} "
                 f"warm-up, median of {rounds} round(s)")

    def noted(peer: str) -> str:
        if peer in skipped:
            return skipped[peer]
        return base_note + "".join(
            f"; {k} closed the connection after every answer (the client reconnects, inside "
            "the timing)" for k in ("simml", peer) if k in closing)
    p50 = figure("simml", "p50_ms")
    for peer in ("azmlinfsrv", "mlflow"):
        rows.append(row(f"POST /score p50 vs {peer}", p50, "ms", peer=figure(peer, "p50_ms"),
                        peer_name=peer if peer not in skipped else "", higher_is_better=False,
                        target=f"≤ {TARGET_P50_MS:g} ms", ok=p50 is not None and
                        p50 <= TARGET_P50_MS, note=noted(peer),
                        samples={k: [s["p50_ms"] for s in v] for k, v in samples.items()}))
    p99 = figure("simml", "p99_ms")
    for peer in ("azmlinfsrv", "mlflow"):
        rows.append(row(f"POST /score p99 vs {peer}", p99, "ms", peer=figure(peer, "p99_ms"),
                        peer_name=peer if peer not in skipped else "", higher_is_better=False,
                        target="reported", ok=None, note=skipped.get(peer, "")))
    rps = figure("simml", "rps")
    for peer in ("azmlinfsrv", "mlflow"):
        peer_rps = figure(peer, "rps")
        rows.append(row(f"requests/s vs {peer}", rps, "req/s", peer=peer_rps,
                        peer_name=peer if peer not in skipped else "",
                        target=f"≥ {TARGET_RATIO:g}× peer",
                        ok=None if peer_rps is None or rps is None else
                        rps >= TARGET_RATIO * peer_rps,
                        note=noted(peer),
                        samples={k: [s["rps"] for s in v] for k, v in samples.items()}))
    deploy_s = median(deployed["seconds"])
    floor_s = median(deployed["floors"])
    peer_starts = ", ".join(f"{k} start -> first answer {v:.1f} s" for k, v in starts.items())
    rows.append(row("deploy -> first successful score (warm environment)", deploy_s, "s",
                    peer=floor_s, peer_name="floor: python -c 'import joblib, sklearn.svm'",
                    higher_is_better=False, target=f"< {TARGET_DEPLOY_S:g} s",
                    ok=deploy_s < TARGET_DEPLOY_S,
                    note=f"Model.deploy + wait_for_deployment + run, median of {repeats}, "
                         "interleaved with the floor (a fresh interpreter of the same "
                         f"environment importing what init() needs); the service in "
                         f"{deployed['where']}; {peer_starts or 'no peer started'}",
                    samples={"simml": deployed["seconds"], "floor": deployed["floors"]}))
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    for result in run(quick=arguments.quick):
        result.pop("samples", None)
        print(json.dumps(result))
