"""Best run of a large experiment (issue 3): ``get_best_run("acc")`` over 10,000 runs.

Data: 10,000 runs in one experiment, each with 3 "params" (simml has none: stored as run tags with
``run.set_tags``) and 3 metrics ``acc``, ``loss``, ``f1``, drawn from one seeded generator so both
sides hold the same values. simml builds them through the public API (``start_logging``,
``set_tags``, ``log`` ×3, ``complete``); MLflow with ``create_run`` + ``log_batch`` (metrics and
params in one call) per run. Build rates are reported for information.

Timed: ``Experiment(ws, "e").get_best_run("acc")`` (target ≤ 50 ms) beside MLflow
``search_runs(experiment_ids=[...], order_by=["metrics.acc DESC"], max_results=1)``; one untimed
warm-up each, then median of 7 interleaved calls. Both must find the same best ``acc``.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Iterator

from _common import Worker, median, mlflow_available, progress, row

TARGET_MS = 50

_state: dict[str, Any] = {}


def _dataset(n: int) -> Iterator[tuple[dict[str, str], dict[str, float]]]:
    rng = random.Random(20240611)
    for _ in range(n):
        params = {"lr": f"{rng.choice((0.001, 0.01, 0.1))}", "depth": str(rng.randint(2, 12)),
                  "n_estimators": str(rng.choice((50, 100, 200, 400)))}
        metrics = {"acc": rng.random(), "loss": rng.random() * 2, "f1": rng.random()}
        yield params, metrics


# --- simml, inside its worker ---------------------------------------------------------------------
def simml_build(n: int) -> dict[str, Any]:
    from simml.core import Experiment, Workspace
    ws = _state["ws"] = Workspace.create("bench", exist_ok=True, show_output=False)
    experiment = Experiment(ws, "e")
    t0 = time.perf_counter()
    for params, metrics in _dataset(n):
        run = experiment.start_logging()
        run.set_tags(params)
        for name, value in metrics.items():
            run.log(name, value)
        run.complete()
    return {"seconds": time.perf_counter() - t0}


def simml_best() -> dict[str, Any]:
    from simml.core import Experiment
    t0 = time.perf_counter()
    best = Experiment(_state["ws"], "e").get_best_run("acc")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "acc": best.get_metrics("acc")["acc"]}


# --- MLflow, inside its worker --------------------------------------------------------------------
def mlflow_build(n: int) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    client = _state["client"] = MlflowClient()
    experiment_id = _state["experiment_id"] = client.create_experiment("e")
    t0 = time.perf_counter()
    for params, metrics in _dataset(n):
        run_id = client.create_run(experiment_id).info.run_id
        ts = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, ts, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()])
    return {"seconds": time.perf_counter() - t0}


def mlflow_best() -> dict[str, Any]:
    client = _state["client"]
    t0 = time.perf_counter()
    runs = client.search_runs(experiment_ids=[_state["experiment_id"]],
                              order_by=["metrics.acc DESC"], max_results=1)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "acc": runs[0].data.metrics["acc"]}


# --- driver ---------------------------------------------------------------------------------------
def run(quick: bool = False) -> list[dict]:
    n = 1_000 if quick else 10_000
    reps = 3 if quick else 7
    have_mlflow = mlflow_available()
    expected = max(m["acc"] for _, m in _dataset(n))
    simml_t: list[float] = []
    peer_t: list[float] = []
    with Worker("simml") as s, Worker("mlflow") as m:
        progress(f"building {n:,} simml runs")
        simml_build_s = s.call("bench_best_run:simml_build", n=n)["seconds"]
        progress(f"built in {simml_build_s:.0f} s")
        peer_build_s = None
        if have_mlflow:
            progress(f"building {n:,} MLflow runs (about 50 ms each: this is the slow part)")
            peer_build_s = m.call("bench_best_run:mlflow_build", n=n)["seconds"]
            progress(f"built in {peer_build_s:.0f} s")
        steps = [("simml", lambda: s.call("bench_best_run:simml_best"), simml_t)]
        if have_mlflow:
            steps.append(("mlflow", lambda: m.call("bench_best_run:mlflow_best"), peer_t))
        for label, step, _ in steps:        # warm-up
            step()
        for rep in range(reps):
            for label, step, out in (steps if rep % 2 == 0 else steps[::-1]):
                result = step()
                if abs(result["acc"] - expected) > 1e-12:
                    raise RuntimeError(f"{label} found best acc {result['acc']}, expected {expected}")
                out.append(result["seconds"] * 1000)

    best_ms = median(simml_t)
    missing = "" if have_mlflow else "; mlflow not installed"
    return [
        row(f"get_best_run('acc') over {n:,} runs", best_ms, "ms",
            peer=median(peer_t) if peer_t else None,
            peer_name="search_runs(order_by metrics.acc DESC, max_results=1)",
            higher_is_better=False, target=f"≤ {TARGET_MS} ms", ok=best_ms <= TARGET_MS,
            note=f"median of {reps} interleaved after 1 warm-up; both found the best acc" + missing,
            samples={"simml": simml_t, "peer": peer_t}),
        row(f"build {n:,} runs (3 params/tags + 3 metrics)", n / simml_build_s, "runs/s",
            peer=n / peer_build_s if peer_build_s else None,
            peer_name="MlflowClient create_run + log_batch",
            note="information only, one pass each; simml: start_logging, set_tags, log ×3, "
                 "complete" + missing),
    ]
