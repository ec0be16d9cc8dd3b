"""Execution overhead (issue 4): submitted runs vs plain ``python``, and simulated provisioning time.

1. ``Experiment(ws, "iris").submit(ScriptRunConfig(src, "train_iris.py", arguments=["--kernel",
   "linear", "--penalty", 1.0]))`` on ``'local'``, timed from the ``submit`` call until
   ``wait_for_completion()`` returns (runner process start, stages, the job, journal ingestion,
   ``./outputs`` upload and finalization included), in a worker whose workspace is on the system
   clock. Floor: ``python train_iris.py --kernel linear --penalty 1.0`` run with ``subprocess.run``
   in a copy of the same folder, with ``SIMML_OFFLINE_MODE=print`` (so ``Run.get_context()`` is
   Azure's print-only offline run and nothing is written to a store: the plain script). Peer:
   ``mlflow run <dir> --env-manager local -P kernel=linear -P penalty=1.0`` on an MLproject whose
   entry point runs ``python train_iris_mlflow.py`` (the same script logging with MLflow: "Kernel
   type" as a param, since MLflow metrics are numbers, ``Penalty`` and ``Accuracy`` as metrics, and
   ``outputs/model.joblib`` as an artifact, as simml uploads ``./outputs``) against a SQLite store
   initialised before timing. ``python`` in the MLproject command resolves to ``sys.executable``
   (its folder is put first on ``PATH``; on this machine ``python`` is otherwise a pyenv shim).
   Median of 5, the three interleaved with the order rotated, after one untimed warm-up of each.
   Target: simml at most 1.15x the floor. The note breaks the simml time down from the run's
   status history (system clock, so its times are real): how long ``submit()`` blocks, submit ->
   ``Starting`` (runner process up), ``Starting`` -> ``Running``, ``Running`` -> ``Finalizing``
   (the job), ``Finalizing`` -> ``Completed`` and ``Completed`` -> ``wait_for_completion`` returns.
2. 40 short runs submitted to an ``AmlCompute`` cluster with ``max_nodes=2`` and ``INSTANT``
   timings on the system clock (simulated scaling costs no real time), all submitted first, then
   each waited for. "Short": ``short.py`` imports only ``simml.core.run``, logs one metric and
   exits (no sklearn). Floor: ``seq 0 39 | xargs -P2 -n1 python short.py`` with
   ``SIMML_OFFLINE_MODE=print``: the same 40 scripts, two at a time. Median of 3 interleaved.
   Target: at most 1.15x the floor. simml forks each job from a warm interpreter (the default,
   ``backends/simml_local/warmstart.py``), so its jobs skip the interpreter start-up the floor
   pays; a second row, with no target, times a third worker whose runner starts a new
   interpreter per job (``SIMML_JOB_START=exec``), interleaved with the other two, to show what
   that saves and what the rest of simml's per-run work costs.
3. Manual clock: ``ComputeTarget.create`` of a cluster with the default (Azure-like) timings
   (90 s provisioning, 150 s node start) and one job queued through the backend's
   ``compute_queue_job``; then the real time of ``ws.advance_clock(300)`` plus
   ``cluster.get_status()`` (the status is checked: ``Succeeded``, the node up and running the
   job). Target: under 50 ms. A second row (no target) gives the cost per step of walking the same
   300 s one second at a time (``advance_clock(1)`` + ``get_status()``, 300 steps). Median of 7,
   a fresh cluster each time.

``--quick``: row 1 with one repetition, no warm-up and no MLflow peer (``mlflow run`` takes tens
of seconds here); row 2 with 10 runs, one repetition; row 3 with 3 repetitions and one stepped walk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from _common import ROOT, Worker, interleave, median, mlflow_available, progress, row

TARGET_SUBMIT_X = 1.15      # simml time / floor time
TARGET_BURST_X = 1.15
TARGET_PROVISION_MS = 50.0
IRIS_ARGS = ["--kernel", "linear", "--penalty", "1.0"]
SIMULATED_SECONDS = 300

SHORT_SCRIPT = '''"""A short job: imports only simml.core.run (no sklearn), logs one metric, exits."""
from simml.core.run import Run

run = Run.get_context()
run.log("done", 1)
'''

MLPROJECT = """name: iris-bench
entry_points:
  main:
    parameters:
      kernel: {type: string, default: linear}
      penalty: {type: float, default: 1.0}
    command: "python train_iris_mlflow.py --kernel {kernel} --penalty {penalty}"
"""

IRIS_MLFLOW = '''"""train_iris.py logging with MLflow instead of simml (the peer of bench_execution)."""
import argparse
import os

import joblib
import mlflow
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernel", type=str, default="linear")
    parser.add_argument("--penalty", type=float, default=1.0)
    args = parser.parse_args()
    with mlflow.start_run():
        mlflow.log_param("Kernel type", str(args.kernel))  # MLflow metrics are numbers only
        mlflow.log_metric("Penalty", float(args.penalty))
        x, y = datasets.load_iris(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)
        model = SVC(kernel=args.kernel, C=args.penalty).fit(x_train, y_train)
        accuracy = model.score(x_test, y_test)
        print("Accuracy of SVM classifier on test set: {:.2f}".format(accuracy))
        mlflow.log_metric("Accuracy", float(accuracy))
        os.makedirs("outputs", exist_ok=True)
        joblib.dump(model, "outputs/model.joblib")
        mlflow.log_artifact("outputs/model.joblib", "outputs")  # simml uploads ./outputs too


if __name__ == "__main__":
    main()
'''

# ---------------------------------------------------------------------------------------------
# Functions run inside worker processes.

_state: dict[str, Any] = {}


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def simml_setup(clock: str = "system") -> dict[str, Any]:
    from simml.core import Workspace
    ws = Workspace.create("bench", exist_ok=True, show_output=False)
    ws.set_clock(clock)
    _state["ws"] = ws
    return {"clock": clock}


def simml_submit_iris(src: str) -> dict[str, Any]:
    """One submit of train_iris.py on 'local', from ``submit`` until ``wait_for_completion``."""
    from simml.core import Experiment, ScriptRunConfig
    ws = _state["ws"]
    config = ScriptRunConfig(src, "train_iris.py", arguments=["--kernel", "linear", "--penalty", 1.0],
                             compute_target="local")
    wall0 = time.time()
    t0 = time.perf_counter()
    run = Experiment(ws, "iris").submit(config)
    t_submitted = time.perf_counter()
    details = run.wait_for_completion()
    t_end = time.perf_counter()
    wall_end = time.time()
    # untimed checks
    metrics = run.get_metrics()
    if details["status"] != "Completed" or not 0.5 < float(metrics.get("Accuracy", 0)) <= 1.0:
        raise RuntimeError(f"run {run.id} ended {details['status']} with metrics {metrics}")
    if "outputs/model.joblib" not in run.get_file_names():
        raise RuntimeError(f"run {run.id}: outputs/model.joblib was not uploaded")
    at = {h["status"]: _epoch(h["time"]) for h in details["statusHistory"]}
    phases = {
        "submit_call": t_submitted - t0,
        "to_starting": at["Starting"] - wall0,
        "starting_to_running": at["Running"] - at["Starting"],
        "job": at["Finalizing"] - at["Running"],
        "finalizing": at["Completed"] - at["Finalizing"],
        "wait_return": wall_end - at["Completed"],
    }
    return {"seconds": t_end - t0, "phases": phases}


def simml_cluster_setup(max_nodes: int) -> None:
    from simml.core.compute import AmlCompute, ComputeTarget
    from simml.core.compute.cluster import INSTANT
    config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", min_nodes=0,
                                                   max_nodes=max_nodes, _timings=INSTANT)
    cluster = ComputeTarget.create(_state["ws"], "burst", config)
    cluster.wait_for_completion(show_output=False)
    _state["cluster"] = cluster


def simml_burst(src: str, n: int) -> dict[str, Any]:
    """Submit ``n`` runs of short.py to the cluster, then wait for every one."""
    from simml.core import Experiment, ScriptRunConfig
    exp = Experiment(_state["ws"], "burst")
    config = ScriptRunConfig(src, "short.py", compute_target=_state["cluster"])
    t0 = time.perf_counter()
    runs = [exp.submit(config) for _ in range(n)]
    t_submitted = time.perf_counter()
    details = [r.wait_for_completion(raise_on_error=False) for r in runs]
    seconds = time.perf_counter() - t0
    bad = [(r.id, d["status"]) for r, d in zip(runs, details) if d["status"] != "Completed"]
    bad += [(r.id, "metrics") for r in runs if r.get_metrics() != {"done": 1}]
    if bad:
        raise RuntimeError(f"{len(bad)} of {n} cluster runs did not complete cleanly: {bad[:3]}")
    return {"seconds": seconds, "submit_seconds": t_submitted - t0}


def clock_provision(name: str, steps: int) -> dict[str, Any]:
    """A fresh cluster (default timings) plus one queued job, then 300 simulated seconds: in one
    ``advance_clock`` (steps=1) or one second at a time, each followed by ``get_status()``."""
    from simml.core.compute import AmlCompute, ComputeTarget
    ws = _state["ws"]
    t0 = time.perf_counter()
    config = AmlCompute.provisioning_configuration(vm_size="STANDARD_D2_V2", min_nodes=0,
                                                   max_nodes=1)
    cluster = ComputeTarget.create(ws, name, config)
    local = next(iter(ws._backend.manager.get_plugins()))
    local.compute_queue_job(ws._info, name, f"job-{name}")
    create_seconds = time.perf_counter() - t0
    before = cluster.get_status()
    if before.provisioning_state != "Creating":
        raise RuntimeError(f"cluster {name} starts {before.provisioning_state}, not Creating")
    step = SIMULATED_SECONDS / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        ws.advance_clock(step)
        status = cluster.get_status()
    seconds = time.perf_counter() - t0
    counts = status.node_state_counts
    if status.provisioning_state != "Succeeded" or counts.running_node_count != 1:
        raise RuntimeError(f"cluster {name} after {SIMULATED_SECONDS} simulated s: {status!r}")
    return {"seconds": seconds, "create_seconds": create_seconds}


def plain_iris(src: str) -> float:
    """``python train_iris.py ...`` in ``src``, print-only offline run."""
    env = dict(os.environ, SIMML_OFFLINE_MODE="print")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "train_iris.py", *IRIS_ARGS], cwd=src, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"python train_iris.py failed:\n{proc.stderr[-2000:]}")
    return seconds


def plain_burst(src: str, n: int) -> float:
    """``seq 0 n-1 | xargs -P2 -n1 python short.py`` in ``src``, print-only offline runs."""
    env = dict(os.environ, SIMML_OFFLINE_MODE="print")
    items = "".join(f"{i}\n" for i in range(n))
    t0 = time.perf_counter()
    proc = subprocess.run(["xargs", "-P2", "-n1", sys.executable, "short.py"], input=items,
                          cwd=src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"xargs -P2 python short.py failed ({proc.returncode}):\n"
                           f"{proc.stderr[-2000:]}")
    return seconds


def _mlflow_command() -> list[str]:
    script = Path(sys.executable).parent / "mlflow"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]


def mlflow_setup() -> None:
    """Create the SQLite store's tables now, so the first timed ``mlflow run`` does not."""
    import mlflow
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.MlflowClient().search_experiments()


def mlflow_project_run(project: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    command = [*_mlflow_command(), "run", project, "--env-manager", "local",
               "-P", "kernel=linear", "-P", "penalty=1.0"]
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"ok": False, "seconds": seconds, "error": proc.stdout[-1500:]}
    from mlflow import MlflowClient
    latest = MlflowClient().search_runs(["0"], order_by=["attributes.start_time DESC"],
                                        max_results=1)
    metrics = latest[0].data.metrics if latest else {}
    if "Accuracy" not in metrics or latest[0].info.status != "FINISHED":
        return {"ok": False, "seconds": seconds,
                "error": f"the run did not record Accuracy: {metrics}"}
    return {"ok": True, "seconds": seconds}


# ---------------------------------------------------------------------------------------------
# Driver, run in the parent.


def _folders(base: Path) -> dict[str, Path]:
    out = {}
    for name in ("iris_simml", "iris_plain"):
        out[name] = base / name
        out[name].mkdir()
        shutil.copy2(ROOT / "train_iris.py", out[name] / "train_iris.py")
    for name in ("short_simml", "short_plain"):
        out[name] = base / name
        out[name].mkdir()
        (out[name] / "short.py").write_text(SHORT_SCRIPT)
    out["mlproject"] = base / "mlproject"
    out["mlproject"].mkdir()
    (out["mlproject"] / "MLproject").write_text(MLPROJECT)
    (out["mlproject"] / "train_iris_mlflow.py").write_text(IRIS_MLFLOW)
    return out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _submit_rows(quick: bool, dirs: dict[str, Path], s: Worker, p: Worker,
                 m: Worker | None) -> list[dict]:
    reps = 1 if quick else 5
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("simml", lambda: s.call("bench_execution:simml_submit_iris", src=str(dirs["iris_simml"]))),
        ("floor", lambda: p.call("bench_execution:plain_iris", src=str(dirs["iris_plain"]))),
    ]
    mlflow_note = ""
    if m is not None:
        steps.append(("mlflow", lambda: m.call("bench_execution:mlflow_project_run",
                                               project=str(dirs["mlproject"]))))
    if not quick:
        progress("submit: warm-up (untimed)")
        for name, step in steps:
            step()
    results = interleave(reps, steps, "submit")
    simml_t = [r["seconds"] for r in results["simml"]]
    floor_t = results["floor"]
    simml_s, floor_s = median(simml_t), median(floor_t)
    overhead = simml_s / floor_s
    ok = overhead <= TARGET_SUBMIT_X
    phases = {k: median(r["phases"][k] for r in results["simml"])
              for k in results["simml"][0]["phases"]}
    breakdown = (f"simml phases (medians): submit() blocks {_ms(phases['submit_call'])}, "
                 f"submit->Starting {_ms(phases['to_starting'])}, Starting->Running "
                 f"{_ms(phases['starting_to_running'])}, Running->Finalizing (job) "
                 f"{_ms(phases['job'])}, Finalizing->Completed {_ms(phases['finalizing'])}, "
                 f"Completed->wait returns {_ms(phases['wait_return'])}")
    target = f"≤ {TARGET_SUBMIT_X}× floor (ratio ≥ {1 / TARGET_SUBMIT_X:.2f}×)"
    how = (f"submit→wait_for_completion on 'local', system clock, median of {reps}"
           + ("" if quick else " interleaved, 1 warm-up"))
    rows = [row("train_iris.py submit → Completed on 'local'", simml_s, "s", peer=floor_s,
                peer_name="python train_iris.py (floor, SIMML_OFFLINE_MODE=print)",
                higher_is_better=False, target=target, ok=ok,
                note=f"simml/floor = {overhead:.2f}x; {how}; {breakdown}",
                samples={"simml": simml_t, "peer": floor_t})]
    if m is None:
        mlflow_note = ("not measured in --quick (mlflow run takes tens of seconds here)" if quick
                       else "mlflow not installed")
        rows.append(row("train_iris.py submit → Completed on 'local'", simml_s, "s",
                        peer_name="mlflow run . --env-manager local", higher_is_better=False,
                        target=target, ok=ok, note=mlflow_note))
        return rows
    runs = results["mlflow"]
    failed = [r for r in runs if not r["ok"]]
    if failed:
        error = (failed[0]["error"].strip().splitlines() or ["?"])[-1][:300]
        rows.append(row("train_iris.py submit → Completed on 'local'", simml_s, "s",
                        peer_name="mlflow run . --env-manager local", higher_is_better=False,
                        target=target, ok=ok,
                        note=f"mlflow run failed {len(failed)}/{len(runs)} times: {error}"))
        return rows
    mlflow_t = [r["seconds"] for r in runs]
    mlflow_s = median(mlflow_t)
    rows.append(row("train_iris.py submit → Completed on 'local'", simml_s, "s", peer=mlflow_s,
                    peer_name="mlflow run . --env-manager local (SQLite store)",
                    higher_is_better=False, target=target, ok=ok,
                    note=(f"ok is simml vs the floor (row above); mlflow/floor = "
                          f"{mlflow_s / floor_s:.2f}x; same script logging with mlflow "
                          f"(Kernel type as a param, model.joblib as an artifact), `python` = "
                          f"sys.executable; median of {reps} interleaved"),
                    samples={"simml": simml_t, "peer": mlflow_t}))
    return rows


def _burst_rows(quick: bool, dirs: dict[str, Path], s: Worker, p: Worker, cold: Worker
                ) -> list[dict]:
    n, reps = (10, 1) if quick else (40, 3)
    for worker in (s, cold):
        worker.call("bench_execution:simml_cluster_setup", max_nodes=2)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("simml", lambda: s.call("bench_execution:simml_burst", src=str(dirs["short_simml"]), n=n)),
        ("floor", lambda: p.call("bench_execution:plain_burst", src=str(dirs["short_plain"]), n=n)),
        ("cold", lambda: cold.call("bench_execution:simml_burst", src=str(dirs["short_simml"]),
                                   n=n)),
    ]
    results = interleave(reps, steps, f"cluster burst ({n} runs)")
    floor_t = results["floor"]
    floor_s = median(floor_t)
    rows = []
    for label, what, gated in (
            ("simml", "", True),
            ("cold", " with SIMML_JOB_START=exec (a new interpreter per job)", False)):
        simml_t = [r["seconds"] for r in results[label]]
        simml_s = median(simml_t)
        overhead = simml_s / floor_s
        submit_s = median(r["submit_seconds"] for r in results[label])
        rows.append(row(
            f"{n} short runs on a max_nodes=2 cluster{what}, submit all → all Completed", simml_s,
            "s", peer=floor_s, peer_name=f"seq 0 {n - 1} | xargs -P2 -n1 python short.py (floor)",
            higher_is_better=False,
            target=(f"≤ {TARGET_BURST_X}× floor (ratio ≥ {1 / TARGET_BURST_X:.2f}×)" if gated
                    else "– (shows what warm starts save)"),
            ok=(overhead <= TARGET_BURST_X) if gated else None,
            note=(f"simml/floor = {overhead:.2f}x; INSTANT timings, system clock; short.py "
                  f"imports only simml.core.run and logs one metric (floor: "
                  f"SIMML_OFFLINE_MODE=print); jobs "
                  + ("forked from a warm interpreter (the default)" if gated else
                     "started as a new interpreter each, like the floor")
                  + f"; the {n} submit() calls alone take {submit_s:.1f} s; median of {reps}"
                  + (" interleaved" if reps > 1 else "")),
            samples={"simml": simml_t, "peer": floor_t}))
    return rows


def _clock_rows(quick: bool, c: Worker) -> list[dict]:
    jump_reps, step_reps = (3, 1) if quick else (7, 7)
    jumps: list[dict[str, Any]] = []
    walks: list[dict[str, Any]] = []
    for rep in range(max(jump_reps, step_reps)):
        order = []
        if rep < jump_reps:
            order.append(("jump", jumps, 1))
        if rep < step_reps:
            order.append(("walk", walks, SIMULATED_SECONDS))
        if rep % 2:
            order.reverse()
        for label, out, steps in order:
            result = c.call("bench_execution:clock_provision", name=f"{label[0]}c{rep}",
                            steps=steps)
            out.append(result)
            progress(f"manual clock {rep + 1}: {label} ({steps} step(s)) "
                     f"{result['seconds'] * 1000:.1f} ms")
    jump_ms = [r["seconds"] * 1000 for r in jumps]
    step_ms = [r["seconds"] * 1000 / SIMULATED_SECONDS for r in walks]
    create_ms = median(r["create_seconds"] * 1000 for r in jumps + walks)
    value = median(jump_ms)
    return [
        row(f"{SIMULATED_SECONDS // 60} simulated minutes of provisioning (manual clock)", value,
            "ms", target=f"< {TARGET_PROVISION_MS:.0f} ms", ok=value < TARGET_PROVISION_MS,
            note=(f"ws.advance_clock({SIMULATED_SECONDS}) + cluster.get_status(): Creating → "
                  f"Succeeded (90 s) → node ready (150 s) → running the queued job; default "
                  f"Timings, 1 job queued via compute_queue_job; untimed before it: "
                  f"ComputeTarget.create + queue, median {create_ms:.1f} ms; median of "
                  f"{jump_reps}, fresh cluster each"),
            samples={"simml": jump_ms}),
        row("… walked 1 simulated s at a time: per step", median(step_ms), "ms",
            note=(f"advance_clock(1) + get_status(), {SIMULATED_SECONDS} steps per walk (a walk "
                  f"≈ {median(step_ms) * SIMULATED_SECONDS:.0f} ms); median of {step_reps} walks"),
            samples={"simml": step_ms}),
    ]


def run(quick: bool = False) -> list[dict]:
    have_mlflow = mlflow_available()
    use_mlflow = have_mlflow and not quick
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="simml-bench-execution-") as tmp:
        dirs = _folders(Path(tmp))
        with Worker("simml") as s, Worker("plain") as p, \
                Worker("simml-cold", SIMML_JOB_START="exec") as cold, \
                (Worker("mlflow") if use_mlflow else _Null()) as m:
            s.call("bench_execution:simml_setup", clock="system")
            cold.call("bench_execution:simml_setup", clock="system")
            if use_mlflow:
                m.call("bench_execution:mlflow_setup")
            rows += _submit_rows(quick, dirs, s, p, m if use_mlflow else None)
            rows += _burst_rows(quick, dirs, s, p, cold)
        with Worker("clock") as c:
            c.call("bench_execution:simml_setup", clock="manual")
            rows += _clock_rows(quick, c)
    return rows


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None

