"""Model registry (issue 3): register 1,000 versions of one model, then look up the latest.

simml: ``Model.register(ws, model_path="model.pkl", model_name="m")`` from a temporary working
directory holding a small ``model.pkl``, 1,000 times; median ms per registration (target ≤ 5 ms).
Then ``Model(ws, "m")`` (the latest version) at 1,000 versions; median ms per lookup (target ≤ 2 ms).

Peer, MLflow 3.x on a SQLite store in its own process: ``MlflowClient().create_model_version("m",
source=<folder holding model.pkl>)`` and ``search_model_versions("name='m'", max_results=1,
order_by=["version_number DESC"])`` as the latest lookup (``get_latest_versions`` is stage-based
and deprecated in MLflow 3).

Registrations are interleaved in blocks of 50 (simml block, MLflow block, order alternating);
lookups in 7 rounds of 20 calls. Both sides must end at version 1,000. While simml has no
``Model`` (issue 3 not landed), the simml cells are empty with the note "not implemented yet" and
MLflow is still measured.
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any

from _common import Worker, median, mlflow_available, row

TARGET_REGISTER_MS = 5
TARGET_LATEST_MS = 2

_state: dict[str, Any] = {}


def _write_model() -> Path:
    path = Path("model.pkl").resolve()
    path.write_bytes(pickle.dumps({"coef": [0.1 * i for i in range(64)], "kind": "bench"}))
    return path


# --- simml, inside its worker ---------------------------------------------------------------------
def simml_setup() -> dict[str, Any]:
    from simml.core import Workspace
    _state["ws"] = Workspace.create("bench", exist_ok=True, show_output=False)
    _write_model()
    try:
        from simml.core import Model
        if not callable(getattr(Model, "register", None)):
            raise AttributeError("simml.core.Model has no register()")
    except Exception as exc:
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    _state["Model"] = Model
    return {"available": True}


def simml_register(count: int) -> list[float]:
    Model, ws = _state["Model"], _state["ws"]
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        Model.register(ws, model_path="model.pkl", model_name="m")
        times.append(time.perf_counter() - t0)
    return times


def simml_latest(count: int) -> dict[str, Any]:
    Model, ws = _state["Model"], _state["ws"]
    times = []
    version = None
    for _ in range(count):
        t0 = time.perf_counter()
        version = Model(ws, "m").version
        times.append(time.perf_counter() - t0)
    return {"times": times, "version": int(version) if version is not None else None}


# --- MLflow, inside its worker --------------------------------------------------------------------
def mlflow_setup() -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    _state["source"] = str(_write_model().parent)
    _state["client"] = client = MlflowClient()
    client.create_registered_model("m")
    return {"available": True}


def mlflow_register(count: int) -> list[float]:
    client, source = _state["client"], _state["source"]
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        client.create_model_version("m", source=source)
        times.append(time.perf_counter() - t0)
    return times


def mlflow_latest(count: int) -> dict[str, Any]:
    client = _state["client"]
    times = []
    version = None
    for _ in range(count):
        t0 = time.perf_counter()
        found = client.search_model_versions("name='m'", max_results=1,
                                             order_by=["version_number DESC"])
        times.append(time.perf_counter() - t0)
        version = int(found[0].version)
    return {"times": times, "version": version}


# --- driver ---------------------------------------------------------------------------------------
def _not_implemented(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("BackendCapabilityException", "NotImplementedError",
                                   "ModuleNotFoundError", "No module named"))


def run(quick: bool = False) -> list[dict]:
    versions, block = (100, 25) if quick else (1000, 50)
    rounds, per_round = (3, 10) if quick else (7, 20)
    have_mlflow = mlflow_available()
    simml_reg: list[float] = []
    simml_get: list[float] = []
    peer_reg: list[float] = []
    peer_get: list[float] = []
    simml_note = ""
    simml_ok = True      # False: simml measured nothing usable
    simml_version = peer_version = None

    with Worker("simml") as s, Worker("mlflow") as m:
        setup = s.call("bench_registry:simml_setup")
        if not setup["available"]:
            simml_ok = False
            simml_note = f"not implemented yet ({setup['error']})"
        if have_mlflow:
            m.call("bench_registry:mlflow_setup")

        def simml_step(func: str, out: list[float], **kw: Any) -> Any:
            nonlocal simml_ok, simml_note
            if not simml_ok:
                return None
            try:
                result = s.call(func, **kw)
            except Exception as exc:
                simml_ok = False
                last = (str(exc).strip().splitlines() or ["?"])[-1]
                simml_note = (f"not implemented yet ({last})" if _not_implemented(exc)
                              else f"error: {last}")
                return None
            out.extend(result if isinstance(result, list) else result["times"])
            return result

        for b in range(versions // block):
            steps = [lambda: simml_step("bench_registry:simml_register", simml_reg, count=block)]
            if have_mlflow:
                steps.append(lambda: peer_reg.extend(m.call("bench_registry:mlflow_register",
                                                            count=block)))
            for step in (steps if b % 2 == 0 else steps[::-1]):
                step()
        for r in range(rounds):
            results: dict[str, Any] = {}
            steps = [lambda: results.__setitem__(
                "simml", simml_step("bench_registry:simml_latest", simml_get, count=per_round))]
            if have_mlflow:
                steps.append(lambda: results.__setitem__(
                    "peer", m.call("bench_registry:mlflow_latest", count=per_round)))
            for step in (steps if r % 2 == 0 else steps[::-1]):
                step()
            if results.get("simml"):
                simml_version = results["simml"]["version"]
            if results.get("peer"):
                peer_get.extend(results["peer"]["times"])
                peer_version = results["peer"]["version"]

    if peer_version is not None and peer_version != versions:
        raise RuntimeError(f"MLflow's latest version is {peer_version}, expected {versions}")
    wrong_version = simml_ok and simml_version != versions
    if wrong_version:
        simml_note = f"error: Model(ws, 'm').version is {simml_version}, expected {versions}"

    def ms(values: list[float]) -> float | None:
        return median(values) * 1000 if values else None

    usable = simml_ok and not wrong_version
    reg_ms = ms(simml_reg) if usable else None
    get_ms = ms(simml_get) if usable else None
    how_reg = f"median of {versions:,} registrations, interleaved in blocks of {block}"
    how_get = f"median of {rounds}×{per_round} lookups at {versions:,} versions, interleaved"
    peer_missing = "" if have_mlflow else "; mlflow not installed"

    def verdict(value: float | None, target: float) -> bool | None:
        if not simml_ok:
            return None if simml_note.startswith("not implemented") else False
        if wrong_version:
            return False
        return value is not None and value <= target

    return [
        row(f"Model.register ×{versions:,} (one model)", reg_ms, "ms",
            peer=ms(peer_reg), peer_name="MlflowClient.create_model_version",
            higher_is_better=False, target=f"≤ {TARGET_REGISTER_MS} ms",
            ok=verdict(reg_ms, TARGET_REGISTER_MS),
            note="; ".join(x for x in (simml_note, how_reg) if x) + peer_missing),
        row(f"latest version Model(ws, 'm') at {versions:,} versions", get_ms, "ms",
            peer=ms(peer_get),
            peer_name="search_model_versions(max_results=1, order_by version_number DESC)",
            higher_is_better=False, target=f"≤ {TARGET_LATEST_MS} ms",
            ok=verdict(get_ms, TARGET_LATEST_MS),
            note="; ".join(x for x in (simml_note, how_get) if x) + peer_missing),
    ]
