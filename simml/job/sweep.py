"""The job side of a HyperDrive trial's evaluation points (standard library only).

When the runner starts a sweep trial under an active early-termination policy it sets:

=========================  ==================================================================
``SIMML_SWEEP_GATE``       a file the runner writes the last interval it has judged into
``SIMML_SWEEP_METRIC``     the primary metric's name
``SIMML_SWEEP_POINTS``     ``evaluation_interval,delay_evaluation``
=========================  ==================================================================

Each ``run.log(primary metric, value)`` is one interval. At an evaluation point (a multiple of the
interval, at least the delay) the job flushes its journal and waits until the runner has judged that
interval: the gate file then holds a number >= it and the script goes on, or the runner stops the
job (the policy said stop) and the script never logs past that point. This is what makes early
stopping reproducible: a trial's history, and so every later decision, does not depend on how fast
the runner reacted. The wait ends early if the runner process goes away (the job is reparented).
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

GATE_ENV = "SIMML_SWEEP_GATE"
METRIC_ENV = "SIMML_SWEEP_METRIC"
POINTS_ENV = "SIMML_SWEEP_POINTS"


def read_gate(path: str) -> int:
    try:
        with open(path, "rb") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def wait_for_gate(path: str, interval: int, parent_pid: int) -> None:
    """Block until the runner has judged ``interval`` (or has gone away)."""
    delay = 0.001
    while read_gate(path) < interval:
        if os.getppid() != parent_pid:
            return  # the runner died: nobody will judge, carry on
        time.sleep(delay)
        delay = min(delay * 1.5, 0.01)


def install(run: Any, env: Mapping[str, str]) -> None:
    """Make ``run.log`` wait at the sweep's evaluation points (an instance attribute, so runs
    outside a sweep keep the class's fast path untouched)."""
    path, metric = env.get(GATE_ENV), env.get(METRIC_ENV)
    if not path or not metric:
        return
    try:
        every, delay = (int(x) for x in (env.get(POINTS_ENV) or "1,0").split(","))
    except ValueError:
        every, delay = 1, 0
    every = max(every, 1)
    parent_pid = os.getppid()
    log = type(run).log
    count = 0

    def gated_log(name: str, value: Any, description: str = "", step: Any = None) -> None:
        nonlocal count
        log(run, name, value, description, step)
        if name != metric:
            return
        count += 1
        if count % every == 0 and count >= delay:
            run._writer.flush()
            wait_for_gate(path, count, parent_pid)

    run.log = gated_log
