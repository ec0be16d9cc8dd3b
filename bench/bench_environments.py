"""Environments (issue 5): first build of a uv environment vs plain uv, cache hits, Preparing time.

Rows:

* ``first build (uv cache warm)``: simml's ``EnvironmentBuilder.prepare`` of an environment with one
  extra pip package into an empty ``SIMML_HOME`` (spec resolution, ``uv venv --relocatable``,
  ``uv pip install``, simml's job side injected and import-checked, atomic rename) vs the peer
  ``uv venv`` + ``uv pip install <the same fully resolved set, pinned>`` into a fresh folder, the
  uv cache warm for both. Median of 7 (quick: 3), interleaved, order alternating. Target: simml at
  most 1.3x the peer's time.
* ``first build (uv cache cold)``: the same with an empty ``UV_CACHE_DIR`` for every build of both
  sides (downloads included). Reported, no target.
* ``resubmit, unchanged environment``: after one run built the environment, 5 (quick: 3) more runs
  with an equal (freshly constructed) ``Environment``: how many rebuilt. Target: 0.
* ``Preparing on a cache hit``: those runs' Preparing status duration (Preparing -> Running in
  their status history), median. Target: under 100 ms. The note gives the in-process
  ``prepare()`` time of a hit.

The package: ``requests`` (and its 4 dependencies) from PyPI when PyPI answers, otherwise (and
always with ``--quick``) two tiny wheels served on 127.0.0.1 by this process (``bench_a`` needing
``bench_b``), so the quick run needs no network. Everything runs in a ``Worker`` with its own
``SIMML_HOME``; all folders are temporary.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from _common import Worker, median, progress, row

TARGET_RATIO = 1.3
TARGET_PREPARE_MS = 100.0
PYPI_PACKAGE = "requests"
LOCAL_PACKAGE = "simml_bench_a"


# --- a local wheel index (quick runs and offline machines) ---------------------------------------
def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'VALUE = "{name}-{version}"\n'.encode(),
        f"{dist}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
            f"Requires-Dist: {r}\n" for r in requires)).encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: simml-bench\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = "".join(
        f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()}"
        f",{len(d)}\n" for p, d in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def local_index(root: Path) -> Iterator[str]:
    """Serve ``simml_bench_a`` (needs ``simml_bench_b``) as a PEP 503 index; yield its URL."""
    (root / "files").mkdir(parents=True)
    wheels = [_wheel(root / "files", "simml_bench_a", "1.0", ("simml_bench_b>=1",)),
              _wheel(root / "files", "simml_bench_b", "1.0")]
    (root / "simple").mkdir()
    for wheel in wheels:
        project = wheel.name.split("-")[0].replace("_", "-")
        (root / "simple" / project).mkdir()
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        (root / "simple" / project / "index.html").write_text(
            f'<a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>')
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: _Quiet(*a, directory=str(root), **k))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"https://pypi.org/simple/{PYPI_PACKAGE}/", timeout=5) as r:
            return r.status == 200
    except Exception:
        return False


# --- inside the worker ------------------------------------------------------------------------------
def _definition(package: str) -> dict[str, Any]:
    return {"name": "bench-env", "version": None,
            "python": {"userManagedDependencies": False,
                       "condaDependencies": {"dependencies": [{"pip": [package]}]}}}


def _uv() -> list[str]:
    from simml_local.environments import uv_command
    return uv_command()


def _simml_build(home: Path, package: str) -> tuple[float, Any]:
    from simml_local.environments import EnvironmentBuilder
    lines: list[str] = []
    t0 = time.perf_counter()
    prepared = EnvironmentBuilder(home).prepare(_definition(package), lines.append)
    elapsed = time.perf_counter() - t0
    if prepared.cached:
        raise RuntimeError("a first build hit the cache")
    return elapsed, prepared


def _peer_build(folder: Path, pinned: list[str]) -> float:
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    env.pop("VIRTUAL_ENV", None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for command in ([*_uv(), "venv", "--python", sys.executable, str(folder)],
                    [*_uv(), "pip", "install", "--python", str(folder / "bin" / "python"),
                     *pinned]):
        proc = subprocess.run(command, env=env, cwd=folder.parent, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{command} failed:\n{proc.stdout}{proc.stderr}")
    return time.perf_counter() - t0


def measure_builds(package: str, warm: int, cold: int, workdir: str) -> dict[str, Any]:
    """Interleaved first builds, simml vs peer, uv cache warm then cold (seconds)."""
    base = Path(workdir)
    warm_cache = base / "uv-cache-warm"
    os.environ["UV_CACHE_DIR"] = str(warm_cache)
    _, prepared = _simml_build(base / "warmup-home", package)  # warms uv's cache and imports
    frozen = subprocess.run([*_uv(), "pip", "freeze", "--python", prepared.details["python"]],
                            capture_output=True, text=True, check=True).stdout.split()
    _peer_build(base / "warmup-peer", frozen)
    samples: dict[str, list[float]] = {"simml_warm": [], "peer_warm": [], "simml_cold": [],
                                       "peer_cold": []}
    for mode, repeats in (("warm", warm), ("cold", cold)):
        for i in range(repeats):
            sides = ["simml", "peer"] if i % 2 == 0 else ["peer", "simml"]
            for side in sides:
                folder = base / f"{mode}-{side}-{i}"
                if mode == "cold":
                    cache = base / f"uv-cache-{side}-{i}"
                    os.environ["UV_CACHE_DIR"] = str(cache)
                else:
                    os.environ["UV_CACHE_DIR"] = str(warm_cache)
                if side == "simml":
                    seconds = _simml_build(folder, package)[0]
                else:
                    seconds = _peer_build(folder / "venv", frozen)
                samples[f"{side}_{mode}"].append(seconds)
                shutil.rmtree(folder, ignore_errors=True)
                if mode == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
    os.environ["UV_CACHE_DIR"] = str(warm_cache)
    return {"samples": samples, "resolved": frozen}


def measure_runs(package: str, resubmits: int) -> dict[str, Any]:
    """One run that builds, then ``resubmits`` runs with an equal environment."""
    from simml.core import Experiment, ScriptRunConfig, Workspace
    from simml.core.conda_dependencies import CondaDependencies
    from simml.core.environment import Environment
    from simml_local.environments import EnvironmentBuilder
    ws = Workspace.create("bench-envs", exist_ok=True, show_output=False)
    source = Path(tempfile.mkdtemp(prefix="simml-bench-src-"))
    (source / "job.py").write_text("from simml.core import Run\nRun.get_context().log('x', 1)\n")

    def environment() -> Environment:
        env = Environment("bench-env")
        env.python.conda_dependencies = CondaDependencies.create(pip_packages=[package])
        return env

    root = Path(ws.get_details()["root"])
    experiment = Experiment(ws, "bench-envs")
    logs, preparing_ms = [], []
    for i in range(resubmits + 1):
        run = experiment.submit(ScriptRunConfig(str(source), "job.py", environment=environment()))
        details = run.wait_for_completion()
        if details["status"] != "Completed":
            raise RuntimeError(f"run {run.id} {details['status']}: {details.get('error')}")
        log = (root / "artifacts" / run.id / "azureml-logs" / "70_driver_log.txt").read_text()
        if i == 0:
            continue
        logs.append(log)
        history = details["statusHistory"]
        index = next(k for k, h in enumerate(history) if h["status"] == "Preparing")
        start = datetime.fromisoformat(history[index]["time"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(history[index + 1]["time"].replace("Z", "+00:00"))
        preparing_ms.append((end - start).total_seconds() * 1000)
    builder = EnvironmentBuilder(os.environ["SIMML_HOME"])
    hits = []
    for _ in range(20):
        t0 = time.perf_counter()
        prepared = builder.prepare(environment()._definition(), lambda line: None)
        hits.append((time.perf_counter() - t0) * 1000)
        assert prepared.cached
    shutil.rmtree(source, ignore_errors=True)
    return {"rebuilds": sum("Building environment" in log for log in logs),
            "preparing_ms": preparing_ms, "prepare_call_ms": hits}


# --- driver -----------------------------------------------------------------------------------------
@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run(quick: bool = False) -> list[dict]:
    warm, cold, resubmits = (3, 2, 3) if quick else (7, 3, 5)
    online = not quick and _pypi_reachable()
    with tempfile.TemporaryDirectory(prefix="simml-bench-envs-") as tmp:
        base = Path(tmp)
        if online:
            index_context: Any = nullcontext(None)
            package, source_note = PYPI_PACKAGE, f"`{PYPI_PACKAGE}` from PyPI"
        else:
            index_context = local_index(base / "index")
            package, source_note = LOCAL_PACKAGE, "two tiny wheels on a 127.0.0.1 index"
        with index_context as url:
            extra = {"UV_CACHE_DIR": str(base / "uv-cache-warm"), "PIP_FIND_LINKS": ""}
            if url:
                extra["UV_DEFAULT_INDEX"] = url
            with _environ(**extra), Worker("environments") as worker:
                progress(f"environments: first builds of {package} ({warm} warm, {cold} cold)")
                builds = worker.call("bench_environments:measure_builds", package=package,
                                     warm=warm, cold=cold, workdir=str(base / "builds"))
                progress(f"environments: 1 + {resubmits} runs with an unchanged environment")
                runs = worker.call("bench_environments:measure_runs", package=package,
                                   resubmits=resubmits)
    s = builds["samples"]
    resolved = ", ".join(builds["resolved"])
    rows = []
    simml_warm, peer_warm = median(s["simml_warm"]), median(s["peer_warm"])
    rows.append(row(
        f"first build of an environment with {package} (uv cache warm)", simml_warm, "s", peer=peer_warm, peer_name="uv venv + uv pip install",
        higher_is_better=False, target=f"≤ {TARGET_RATIO}× peer",
        ok=simml_warm <= TARGET_RATIO * peer_warm,
        note=f"median of {warm}, interleaved; {source_note}; resolved set: "
             f"{resolved}", samples={"simml": s["simml_warm"], "peer": s["peer_warm"]}))
    simml_cold, peer_cold = median(s["simml_cold"]), median(s["peer_cold"])
    rows.append(row(
        f"first build of an environment with {package} (uv cache cold)", simml_cold, "s", peer=peer_cold, peer_name="uv venv + uv pip install",
        higher_is_better=False, target="reported", ok=None,
        note=f"an empty UV_CACHE_DIR for every build of both sides, median of {cold}",
        samples={"simml": s["simml_cold"], "peer": s["peer_cold"]}))
    rows.append(row(
        "resubmit with an unchanged environment", float(runs["rebuilds"]), "rebuilds", target="0",
        ok=runs["rebuilds"] == 0,
        note=f"{resubmits} resubmits after the run that built it"))
    preparing = median(runs["preparing_ms"])
    rows.append(row(
        "Preparing on a cache hit", preparing, "ms", target=f"< {TARGET_PREPARE_MS:g} ms",
        ok=preparing < TARGET_PREPARE_MS,
        note=f"Preparing on a cache hit (status history, median of {resubmits} runs); the "
             f"prepare() call itself: {median(runs['prepare_call_ms']):.1f} ms (median of 20)",
        samples={"simml": runs["preparing_ms"]}))
    return rows


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    for result in run(quick=arguments.quick):
        result.pop("samples", None)
        print(json.dumps(result))
