"""Injectable time.

Nothing in simml reads the wall clock directly: simulated provisioning, scaling and timeouts read a
``Clock``, so tests advance a ``ManualClock`` instead of sleeping. A workspace persists which kind of
clock it uses (``system``, ``scaled:N`` or ``manual``) so every process reads the same time; this
module holds the pure clock types and the parser for that setting.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Protocol

from simml.exceptions import ConfigurationException

if TYPE_CHECKING:
    from simml.entities import ClockState

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
"""Where a fresh manual clock starts: fixed so that recorded timestamps are reproducible."""


class Clock(Protocol):
    """What simml needs from time: an aware UTC ``now`` and a way to wait."""

    def now(self) -> datetime: ...

    def time(self) -> float:
        """``now()`` as unix seconds; on hot paths (metric timestamps) this must be cheap."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    time = staticmethod(_time.time)

    def sleep(self, seconds: float) -> None:
        _time.sleep(max(0.0, seconds))


@dataclass
class ManualClock:
    """Time that moves only when told to (``advance`` or ``sleep``): tests never wait."""

    current: datetime = EPOCH

    def now(self) -> datetime:
        return self.current

    def time(self) -> float:
        return self.current.timestamp()

    def advance(self, seconds: float) -> datetime:
        self.current = self.current + timedelta(seconds=seconds)
        return self.current

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))


@dataclass(frozen=True)
class ScaledClock:
    """Simulated time running ``factor`` times faster than real time from ``anchor_real``.

    ``sim = anchor_sim + (real - anchor_real) * factor``; a sleep of simulated seconds takes
    ``seconds / factor`` real seconds.
    """

    factor: float
    anchor_real: datetime
    anchor_sim: datetime

    def now(self) -> datetime:
        elapsed = datetime.now(timezone.utc) - self.anchor_real
        return self.anchor_sim + elapsed * self.factor

    def time(self) -> float:
        return self.now().timestamp()

    def sleep(self, seconds: float) -> None:
        _time.sleep(max(0.0, seconds) / self.factor)


def clock_now(state: "ClockState", real_now: datetime) -> datetime:
    """Simulated now of a persisted clock state, given the real now."""
    if state.kind == "manual":
        return state.manual_now or EPOCH
    if state.kind == "scaled":
        return state.anchor_sim + (real_now - state.anchor_real) * state.factor
    return real_now


class WorkspaceClock:
    """A workspace's persisted clock, re-read on every ``now()`` so that a manual clock advanced
    or a setting changed by another process is seen at once. ``time()`` (metric timestamps, a hot
    path) reuses the state for up to ``cache_seconds`` of real time."""

    def __init__(self, read_state: "Callable[[], ClockState]", cache_seconds: float = 0.5) -> None:
        self._read_state = read_state
        self._cache_seconds = cache_seconds
        self._cached: tuple[float, ClockState] | None = None

    def state(self) -> "ClockState":
        state = self._read_state()
        self._cached = (_time.monotonic(), state)
        return state

    def now(self) -> datetime:
        return clock_now(self.state(), datetime.now(timezone.utc))

    def time(self) -> float:
        cached = self._cached
        if cached is None or _time.monotonic() - cached[0] > self._cache_seconds:
            state = self.state()
        else:
            state = cached[1]
        if state.kind == "system":
            return _time.time()
        return clock_now(state, datetime.now(timezone.utc)).timestamp()

    @property
    def kind(self) -> str:
        return self.state().kind

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time: real sleeping for system and scaled clocks; for a
        manual clock, poll until another party has advanced it that far."""
        state = self.state()
        if state.kind == "system":
            _time.sleep(max(0.0, seconds))
        elif state.kind == "scaled":
            _time.sleep(max(0.0, seconds) / state.factor)
        else:
            until = self.now() + timedelta(seconds=seconds)
            while self.now() < until:
                _time.sleep(0.02)


@dataclass(frozen=True)
class ClockSetting:
    """A workspace's persisted clock source: ``system``, ``scaled:N`` or ``manual``.

    ``manual:<ISO time>`` starts a manual clock at that time instead of the current simulated
    time, so that tests can record identical timestamps run after run.
    """

    kind: str
    factor: float = 1.0
    start: datetime | None = None

    @classmethod
    def parse(cls, text: str) -> "ClockSetting":
        raw = text.strip()
        text = raw.lower()
        if text in ("system", "manual"):
            return cls(text)
        if text.startswith("manual:"):
            try:
                start = datetime.fromisoformat(raw.split(":", 1)[1].replace("Z", "+00:00"))
            except ValueError:
                start = None
            if start is not None and start.tzinfo is not None:
                return cls("manual", start=start)
        if text.startswith("scaled:"):
            try:
                factor = float(text.split(":", 1)[1])
            except ValueError:
                factor = 0.0
            if factor > 0 and factor != float("inf"):
                return cls("scaled", factor)
        raise ConfigurationException(
            f"Invalid clock setting {raw!r}: expected 'system', 'manual', 'manual:<ISO time with "
            "zone>' or 'scaled:N' with N > 0.")

    def __str__(self) -> str:
        return f"scaled:{self.factor:g}" if self.kind == "scaled" else self.kind
