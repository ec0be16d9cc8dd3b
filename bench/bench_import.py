"""Import time (issue 2): wall time of ``python3 -c "<simml imports>"`` vs ``import mlflow``.

Raw wall time of a fresh interpreter (start-up included; ``python3 -c pass`` is reported beside it
as the floor).

simml: ``from simml.core import Workspace, Experiment, Run; from simml.core.compute import
AmlCompute`` (``vm_sizes`` instead while ``AmlCompute`` does not exist; the row's note says so).
Peer: ``import mlflow``. Median of 7 interleaved repetitions (order rotated every round), after one
untimed warm-up of each command (so ``.pyc`` files exist and the page cache is warm). Each command
runs in a temporary working directory with a temporary ``SIMML_HOME``. Target: at most 300 ms.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import median, mlflow_available, row, worker_env

TARGET_MS = 300
SIMML_FULL = ("from simml.core import Workspace, Experiment, Run; "
              "from simml.core.compute import AmlCompute")
SIMML_FALLBACK = ("from simml.core import Workspace, Experiment, Run; "
                  "from simml.core.compute import vm_sizes")


def _wall_ms(code: str, cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0:
        raise RuntimeError(f"python3 -c {code!r} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def run(quick: bool = False) -> list[dict]:
    reps = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="simml-bench-import-") as tmp:
        home = Path(tmp)
        (home / "simml-home").mkdir()
        env = worker_env(home)
        env.pop("PYTHONDONTWRITEBYTECODE")  # users' imports read (and write) .pyc files
        simml_code, note = SIMML_FULL, ""
        probe = subprocess.run([sys.executable, "-c", SIMML_FULL], cwd=home, env=env,
                               capture_output=True, text=True)
        if probe.returncode != 0:
            simml_code = SIMML_FALLBACK
            last = (probe.stderr.strip().splitlines() or ["?"])[-1].split(":")[0]
            note = (f"simml.core.compute.AmlCompute does not exist yet ({last}): measured "
                    "`from simml.core.compute import vm_sizes` instead; ")
        commands = {"floor": "pass", "simml": simml_code}
        if mlflow_available():
            commands["mlflow"] = "import mlflow"
        times: dict[str, list[float]] = {k: [] for k in commands}
        for key, code in commands.items():  # warm-up
            _wall_ms(code, home, env)
        order = list(commands)
        for rep in range(reps):
            rotated = order[rep % len(order):] + order[:rep % len(order)]
            for key in rotated:
                times[key].append(_wall_ms(commands[key], home, env))

    simml_ms = median(times["simml"])
    mlflow_ms = median(times["mlflow"]) if "mlflow" in times else None
    floor_ms = median(times["floor"])
    how = (f"raw wall ms incl. interpreter start (sys.executable, not a pyenv shim), median of "
           f"{reps} interleaved, 1 warm-up")
    label = "import simml.core + compute" + ("" if simml_code == SIMML_FULL else " (vm_sizes)")
    return [
        row(label, simml_ms, "ms", peer=mlflow_ms, peer_name="import mlflow",
            higher_is_better=False, target=f"≤ {TARGET_MS} ms", ok=simml_ms <= TARGET_MS,
            note=note + how + ("" if mlflow_ms is not None else "; mlflow not installed"),
            samples={"simml": times["simml"], "peer": times.get("mlflow", [])}),
        row("python3 -c pass (floor)", floor_ms, "ms", note=how, samples={"simml": times["floor"]}),
    ]
