"""Waiting in tests for something another process does (a runner, a job): poll a condition with
a generous deadline, so a slow machine makes a test slower, never wrong."""

from __future__ import annotations

import time
from typing import Callable


def eventually(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.02)
