"""What-if replay: a finished sweep's metric histories under another early-termination policy.

Nothing is re-run. Trials are replayed in number order with the same pure decision the sweep loop
uses (``policy.decide``); since every trial has ended, nothing ever waits, and a trial the replayed
policy stops has its history cut there before later trials are judged against it. The report says
which trials would have been stopped, at which interval, and the child compute that would have been
saved: intervals (primary-metric values) not logged, and seconds (from the time of the value at
the stopping interval to the trial's last logged value, on the workspace clock; the time a
script spends after its last value is not counted, so this is a lower bound).

Limit: a trial that the sweep's own policy already stopped has no values past that point, so the
replay cannot know how it would have continued; such trials are listed in ``truncated``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from simml.train.hyperdrive.policy import (
    STOP,
    EarlyTerminationPolicy,
    TrialHistory,
    decide,
    numeric,
)


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial's primary-metric history."""

    number: int
    run_id: str
    values: tuple[float | None, ...]
    times: tuple[float, ...] = ()
    status: str = "Completed"
    stopped_by_policy: bool = False


@dataclass(frozen=True)
class ReplayedTrial:
    number: int
    run_id: str
    intervals: int
    stop_at: int | None
    reason: str
    saved_intervals: int
    saved_seconds: float


@dataclass(frozen=True)
class WhatIfReport:
    policy: str
    trials: tuple[ReplayedTrial, ...]
    truncated: tuple[int, ...]
    best_trial_before: int | None
    best_trial_after: int | None

    @property
    def stopped(self) -> tuple[ReplayedTrial, ...]:
        return tuple(t for t in self.trials if t.stop_at is not None)

    @property
    def total_intervals(self) -> int:
        return sum(t.intervals for t in self.trials)

    @property
    def saved_intervals(self) -> int:
        return sum(t.saved_intervals for t in self.trials)

    @property
    def saved_seconds(self) -> float:
        return sum(t.saved_seconds for t in self.trials)

    def summary(self) -> str:
        total = self.total_intervals
        share = f" ({100 * self.saved_intervals / total:.0f}%)" if total else ""
        lines = [f"What-if under {self.policy}: {len(self.stopped)} of {len(self.trials)} trials "
                 f"would have been stopped, saving {self.saved_intervals} of {total} "
                 f"intervals{share} and at least {self.saved_seconds:.1f} s of child compute; "
                 f"best trial {self.best_trial_before} -> {self.best_trial_after}."]
        lines += [f"  trial {t.number} ({t.run_id}): stop at interval {t.stop_at} of "
                  f"{t.intervals}: {t.reason}" for t in self.stopped]
        if self.truncated:
            lines.append(f"  trials {list(self.truncated)} were already stopped by the sweep's "
                         "own policy; their histories end there.")
        return "\n".join(lines)


def _best(values: Sequence[float | None], maximize: bool) -> float | None:
    numbers = [v for v in values if v is not None]
    if not numbers:
        return None
    return max(numbers) if maximize else min(numbers)


def _best_trial(histories: dict[int, Sequence[float | None]], maximize: bool) -> int | None:
    best_trial, best_value = None, None
    for number in sorted(histories):
        value = _best(histories[number], maximize)
        if value is None:
            continue
        if best_value is None or (value > best_value if maximize else value < best_value):
            best_trial, best_value = number, value
    return best_trial


def replay(records: Sequence[TrialRecord], policy: EarlyTerminationPolicy,
           maximize: bool) -> WhatIfReport:
    """Replay ``records`` under ``policy`` (pure; see the module doc)."""
    ordered = sorted(records, key=lambda r: r.number)
    cut: list[TrialHistory] = []
    replayed: list[ReplayedTrial] = []
    for record in ordered:
        values = numeric(record.values)
        stop_at, reason = None, ""
        for k in range(1, len(values) + 1):
            if not policy.is_evaluation_point(k):
                continue
            decision = decide(policy, maximize, record.number, k, values, cut)
            if decision.action == STOP:
                stop_at, reason = k, decision.reason
                break
        kept = values if stop_at is None else values[:stop_at]
        cut.append(TrialHistory(record.number, tuple(kept), final=True))
        saved_seconds = 0.0
        if stop_at is not None and len(record.times) >= len(values) and values:
            saved_seconds = max(0.0, record.times[len(values) - 1] - record.times[stop_at - 1])
        replayed.append(ReplayedTrial(
            record.number, record.run_id, len(values), stop_at, reason,
            0 if stop_at is None else len(values) - stop_at, saved_seconds))
    before = _best_trial({r.number: numeric(r.values) for r in ordered}, maximize)
    after = _best_trial({h.number: h.values for h in cut}, maximize)
    return WhatIfReport(policy.describe(), tuple(replayed),
                        tuple(r.number for r in ordered if r.stopped_by_policy), before, after)
