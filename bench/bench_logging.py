"""Metric logging throughput (issue 2): ``run.log`` ×100,000 on an interactive run, until flushed.

simml: ``Experiment(ws, "b").start_logging()``, then ``run.log("m", value)`` 100,000 times and
``run.flush()``; the clock runs from the first call until ``flush()`` returns (every value committed
in SQLite), and ``len(run.get_metrics()["m"])`` is checked afterwards (untimed). A fresh run per
repetition. Target: at least 100,000 values/s.

Peers, MLflow 3.x on a SQLite store, each in its own process:
* ``mlflow.log_metric`` per call (one SQLite transaction per value, so fewer calls are measured);
* ``MlflowClient().log_batch`` of the same 100,000 values, 1,000 metrics per call (MLflow's limit),
  ``Metric`` objects built inside the timed loop as a user would.

Repetitions are interleaved: simml, MLflow batch, MLflow per call, simml, ...
"""

from __future__ import annotations

import os
import time
from typing import Any

from _common import Worker, WorkerError, median, mlflow_available, row

TARGET = 100_000  # values/s

# ---------------------------------------------------------------------------------------------
# Functions run inside worker processes.

_state: dict[str, Any] = {}


def simml_setup() -> None:
    from simml.core import Workspace
    _state["ws"] = Workspace.create("bench", exist_ok=True, show_output=False)


def simml_log(n: int) -> dict[str, Any]:
    from simml.core import Experiment
    run = Experiment(_state["ws"], "b").start_logging()
    t0 = time.perf_counter()
    for i in range(n):
        run.log("m", i * 0.5)
    run.flush()
    seconds = time.perf_counter() - t0
    count = len(run.get_metrics()["m"])
    run.complete()
    return {"seconds": seconds, "count": count}


def mlflow_setup() -> None:
    import mlflow
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    _state["experiment_id"] = mlflow.set_experiment("b").experiment_id


def mlflow_log_metric(n: int) -> dict[str, Any]:
    import mlflow
    with mlflow.start_run(experiment_id=_state["experiment_id"]) as active:
        t0 = time.perf_counter()
        for i in range(n):
            mlflow.log_metric("m", i * 0.5)
        seconds = time.perf_counter() - t0
    count = len(mlflow.MlflowClient().get_metric_history(active.info.run_id, "m"))
    return {"seconds": seconds, "count": count}


def mlflow_log_batch(n: int, batch: int = 1000) -> dict[str, Any]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    client = MlflowClient()
    run_id = client.create_run(_state["experiment_id"]).info.run_id
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        ts = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("m", i * 0.5, ts, i)
                                          for i in range(start, min(n, start + batch))])
    seconds = time.perf_counter() - t0
    count = len(client.get_metric_history(run_id, "m"))
    client.set_terminated(run_id)
    return {"seconds": seconds, "count": count}


# ---------------------------------------------------------------------------------------------
# Driver, run in the parent.


def run(quick: bool = False) -> list[dict]:
    n = 20_000 if quick else 100_000
    simml_reps = 3 if quick else 5
    batch_n, batch_reps = (5_000, 1) if quick else (100_000, 3)
    call_n, call_reps = (100, 1) if quick else (1_000, 3)
    have_mlflow = mlflow_available()

    simml_t: list[float] = []
    batch_t: list[float] = []
    call_t: list[float] = []
    problems: list[str] = []
    with Worker("simml") as s, (Worker("mlflow") if have_mlflow else _Null()) as m:
        s.call("bench_logging:simml_setup")
        if have_mlflow:
            m.call("bench_logging:mlflow_setup")
        for rep in range(max(simml_reps, batch_reps, call_reps)):
            steps = []
            if rep < simml_reps:
                steps.append(("simml", lambda: s.call("bench_logging:simml_log", n=n), n, simml_t))
            if have_mlflow and rep < batch_reps:
                steps.append(("mlflow log_batch",
                              lambda: m.call("bench_logging:mlflow_log_batch", n=batch_n),
                              batch_n, batch_t))
            if have_mlflow and rep < call_reps:
                steps.append(("mlflow log_metric",
                              lambda: m.call("bench_logging:mlflow_log_metric", n=call_n),
                              call_n, call_t))
            if rep % 2:
                steps.reverse()
            for label, step, expected, out in steps:
                result = step()
                if result["count"] != expected:
                    problems.append(f"{label} stored {result['count']} of {expected} values")
                out.append(expected / result["seconds"])

    if problems:
        raise WorkerError("; ".join(problems))
    simml_rate = median(simml_t)
    ok = simml_rate >= TARGET
    target = f"≥ {TARGET:,} values/s"
    base = f"{n:,} run.log calls + flush, median of {simml_reps}"
    rows = [
        row(f"run.log ×{n:,} + flush", simml_rate, "values/s",
            peer=median(call_t) if call_t else None,
            peer_name=f"mlflow.log_metric per call ({call_n:,} calls)", target=target, ok=ok,
            note=f"{base}; peer median of {call_reps}" if call_t else f"{base}; mlflow not installed",
            samples={"simml": simml_t, "peer": call_t}),
        row(f"run.log ×{n:,} + flush", simml_rate, "values/s",
            peer=median(batch_t) if batch_t else None,
            peer_name=f"MlflowClient.log_batch ({batch_n:,} values, 1,000/batch)", target=target,
            ok=ok, note=f"{base}; peer median of {batch_reps}" if batch_t
            else f"{base}; mlflow not installed", samples={"simml": simml_t, "peer": batch_t}),
    ]
    return rows


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
