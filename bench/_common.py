"""Shared helpers for the benchmarks: rows, medians, isolated worker processes.

A ``Worker`` is a child Python process (``bench/_child.py``) with its own temporary ``SIMML_HOME``,
MLflow SQLite store and working directory. The parent calls functions of a bench module inside it
(``worker.call("bench_logging:simml_log", n=100_000)``) and gets their JSON result back, so simml
and MLflow never share an interpreter (their imports, threads and SQLite settings would otherwise
interfere) while the parent can still interleave their repetitions.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

# Environment variables that would change what simml does in a child (a job context, a seed, ...).
_SCRUB = ("SIMML_SEED", "SIMML_OFFLINE_MODE", "SIMML_BACKEND", "AZUREML_RUN_ID", "SIMML_RUN_JOURNAL",
          "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


def mlflow_available() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def progress(message: str) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    print(f"  {message}", file=sys.stderr, flush=True)


def interleave(reps: int, steps: list[tuple[str, Callable[[], Any]]],
               label: str) -> dict[str, list[Any]]:
    """Run each step ``reps`` times, the order rotated every repetition, so that load hits every
    variant alike; a step returns seconds, or a dict with ``seconds``."""
    results: dict[str, list[Any]] = {name: [] for name, _ in steps}
    for rep in range(reps):
        shift = rep % len(steps)
        for name, step in steps[shift:] + steps[:shift]:
            value = step()
            results[name].append(value)
            seconds = value["seconds"] if isinstance(value, dict) else value
            progress(f"{label} {rep + 1}/{reps}: {name} {seconds:.2f} s")
    return results


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def row(name: str, simml: float | None, unit: str, *, peer: float | None = None,
        peer_name: str = "", higher_is_better: bool = True, target: str | None = None,
        ok: bool | None = None, note: str = "",
        samples: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """A result row in the common shape (plus, optionally, the raw ``samples`` behind the medians,
    which only the JSON output carries).

    ``ratio`` is always "how many times better simml is than the peer" (> 1: simml is better):
    simml / peer for rates, peer / simml for times.
    """
    ratio = None
    if simml is not None and peer is not None and simml > 0 and peer > 0:
        ratio = simml / peer if higher_is_better else peer / simml
    out = {"name": name, "simml": simml, "peer": peer, "peer_name": peer_name,
           "ratio": None if ratio is None else round(ratio, 3), "target": target, "unit": unit,
           "ok": ok, "note": note}
    if samples:
        out["samples"] = {k: [round(v, 6) for v in vs] for k, vs in samples.items()}
    return out


def worker_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update({
        "SIMML_HOME": str(home / "simml-home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",   # no network traffic while we time
        "DO_NOT_TRACK": "true",
        "GIT_PYTHON_REFRESH": "quiet",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    env.update(extra)
    return env


class WorkerError(RuntimeError):
    pass


class Worker:
    """A child interpreter running ``bench/_child.py`` in its own temporary home.

    Use as a context manager; ``call("module:function", **kwargs)`` returns the function's
    JSON-serialisable result or raises ``WorkerError`` with the child's traceback.
    """

    def __init__(self, label: str, **env: str) -> None:
        self.label = label
        self.home = Path(tempfile.mkdtemp(prefix=f"simml-bench-{label}-"))
        (self.home / "simml-home").mkdir()
        (self.home / "work").mkdir()
        self.log_path = self.home / "stderr.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "_child.py")], cwd=self.home / "work",
            env=worker_env(self.home, **env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, text=True, bufsize=1)

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    def call(self, func: str, **kwargs: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"call": func, "kwargs": kwargs}) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(f"{self.label} worker died: {exc}\n{self.stderr_tail()}") from exc
        if not line:
            raise WorkerError(f"{self.label} worker exited (code {self.proc.poll()}) during "
                              f"{func}\n{self.stderr_tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"{self.label} worker: {func} failed:\n{reply['error']}")
        return reply["result"]

    def stderr_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def fmt(value: Any) -> str:
    """A number for the table: thousands separators, about three significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    mag = abs(value)
    if mag >= 1000:
        return f"{value:,.0f}"
    if mag >= 100:
        return f"{value:.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    if mag >= 1:
        return f"{value:.2f}"
    if mag == 0:
        return "0"
    return f"{value:.3g}"
