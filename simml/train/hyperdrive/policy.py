"""Early-termination policies (Azure's ``azureml.train.hyperdrive.policy``) and pure decisions.

An *interval* is one value of the primary metric logged by a child (``run.log(name, value)``); the
k-th logged value is the child's value at interval k. A policy is applied at interval ``k`` when
``k`` is a multiple of ``evaluation_interval`` and ``k >= delay_evaluation`` (Azure's rule).

``decide(policy, maximize, n, k, own, earlier)`` is the whole decision, a pure function: trial
``n`` at interval ``k`` is judged **only against trials numbered below n** (``earlier``), using
their values at interval ``k``. If one of them is still running and has not reached interval ``k``
the answer is ``wait`` (the sweep loop keeps trial ``n`` at that point until it can decide), so the
decision never depends on which trial happened to run faster. A trial that already ended (finished,
failed, or stopped at an earlier interval, its history cut there) simply has no value at ``k``.

* ``BanditPolicy``: stop when the value at ``k`` is worse than the best value at ``k`` (own
  included) by more than the slack: maximize ``v < best / (1 + slack_factor)`` or
  ``v < best - slack_amount``; minimize ``v > best * (1 + slack_factor)`` or
  ``v > best + slack_amount``.
* ``MedianStoppingPolicy``: stop when the trial's best value so far is worse than the median of
  the earlier trials' running averages up to ``k`` (Google Vizier's median stopping rule).
* ``TruncationSelectionPolicy``: stop when the trial's value at ``k`` is among the lowest
  ``truncation_percentage`` percent of the values at ``k`` (earlier trials and itself); ties
  favour the trial.
* ``NoTerminationPolicy``: never stops anything (what ``policy=None`` means).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Sequence

from simml.train.hyperdrive.exceptions import HyperDriveConfigException

CONTINUE, STOP, WAIT = "continue", "stop", "wait"


def _interval(label: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HyperDriveConfigException(f"{label} must be an int >= {minimum}, not {value!r}.")
    return value


class EarlyTerminationPolicy:
    """Base of the policies."""

    _name = ""

    def __init__(self, evaluation_interval: int = 1, delay_evaluation: int = 0) -> None:
        self._evaluation_interval = _interval("evaluation_interval", evaluation_interval, 1)
        self._delay_evaluation = _interval("delay_evaluation", delay_evaluation, 0)

    @property
    def evaluation_interval(self) -> int:
        return self._evaluation_interval

    @property
    def delay_evaluation(self) -> int:
        return self._delay_evaluation

    @property
    def is_active(self) -> bool:
        return True

    def is_evaluation_point(self, k: int) -> bool:
        return self.is_active and k >= 1 and k % self._evaluation_interval == 0 \
            and k >= self._delay_evaluation

    def _properties(self) -> dict[str, Any]:
        return {"evaluation_interval": self._evaluation_interval,
                "delay_evaluation": self._delay_evaluation}

    def to_json(self) -> dict[str, Any]:
        return {"name": self._name, "properties": self._properties()}

    def judge(self, maximize: bool, n: int, k: int, own: Sequence[float | None],
              peers: list[tuple[int, Sequence[float | None]]]) -> tuple[bool, str]:
        """(stop?, reason) given every earlier trial that reached ``k`` (values cut to ``k``)."""
        raise NotImplementedError

    def describe(self) -> str:
        settings = ', '.join(f'{k}={v}' for k, v in self._properties().items())
        return f"{type(self).__name__}({settings})"

    def __repr__(self) -> str:
        return self.describe()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EarlyTerminationPolicy) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(repr(self.to_json()))


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class BanditPolicy(EarlyTerminationPolicy):
    """Stop trials whose value falls outside a slack of the best value at the same interval."""

    _name = "Bandit"

    def __init__(self, evaluation_interval: int = 1, slack_factor: float | None = None,
                 slack_amount: float | None = None, delay_evaluation: int = 0) -> None:
        super().__init__(evaluation_interval, delay_evaluation)
        if (slack_factor is None) == (slack_amount is None):
            raise HyperDriveConfigException(
                "Bandit termination policy expects exactly one of slack factor or slack amount "
                "to be set.")
        for label, value in (("slack_factor", slack_factor), ("slack_amount", slack_amount)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise HyperDriveConfigException(
                    f"{label} must be a number >= 0, not {value!r}.")
        self._slack_factor = slack_factor
        self._slack_amount = slack_amount

    @property
    def slack_factor(self) -> float | None:
        return self._slack_factor

    @property
    def slack_amount(self) -> float | None:
        return self._slack_amount

    def _properties(self) -> dict[str, Any]:
        slack = ({"slack_factor": self._slack_factor} if self._slack_factor is not None
                 else {"slack_amount": self._slack_amount})
        return {**super()._properties(), **slack}

    def judge(self, maximize: bool, n: int, k: int, own: Sequence[float | None],
              peers: list[tuple[int, Sequence[float | None]]]) -> tuple[bool, str]:
        value = own[k - 1]
        scored = [(v[k - 1], m) for m, v in peers if v[k - 1] is not None]
        if value is None or not scored:
            return False, ""
        best, best_trial = scored[0]
        for candidate, m in scored[1:]:
            if _better(candidate, best, maximize):
                best, best_trial = candidate, m
        if not _better(best, value, maximize):
            return False, ""
        if self._slack_factor is not None:
            limit = best / (1 + self._slack_factor) if maximize else best * (1 + self._slack_factor)
            how = f"{'/' if maximize else '*'} (1 + slack_factor {self._slack_factor:g})"
        else:
            assert self._slack_amount is not None
            limit = best - self._slack_amount if maximize else best + self._slack_amount
            how = f"{'-' if maximize else '+'} slack_amount {self._slack_amount:g}"
        if _better(limit, value, maximize):
            return True, (f"its value {_fmt(value)} is {'below' if maximize else 'above'} "
                          f"{_fmt(limit)} (best {_fmt(best)} of trial {best_trial} {how})")
        return False, ""


class MedianStoppingPolicy(EarlyTerminationPolicy):
    """Stop trials whose best value is worse than the median of earlier running averages."""

    _name = "MedianStopping"

    def judge(self, maximize: bool, n: int, k: int, own: Sequence[float | None],
              peers: list[tuple[int, Sequence[float | None]]]) -> tuple[bool, str]:
        mine = [v for v in own[:k] if v is not None]
        averages = []
        for _, values in peers:
            numbers = [v for v in values[:k] if v is not None]
            if numbers:
                averages.append(sum(numbers) / len(numbers))
        if not mine or not averages:
            return False, ""
        best = max(mine) if maximize else min(mine)
        median = statistics.median(averages)
        if _better(median, best, maximize):
            return True, (f"its best value {_fmt(best)} is worse than {_fmt(median)}, the median "
                          f"of the running averages of {len(averages)} earlier trial(s)")
        return False, ""


class TruncationSelectionPolicy(EarlyTerminationPolicy):
    """Stop trials in the lowest ``truncation_percentage`` percent at each evaluation."""

    _name = "TruncationSelection"

    def __init__(self, truncation_percentage: int, evaluation_interval: int = 1,
                 delay_evaluation: int = 0) -> None:
        super().__init__(evaluation_interval, delay_evaluation)
        if isinstance(truncation_percentage, bool) or not isinstance(truncation_percentage, int) \
                or not 1 <= truncation_percentage <= 99:
            raise HyperDriveConfigException(
                f"truncation_percentage must be an int between 1 and 99, not "
                f"{truncation_percentage!r}.")
        self._truncation_percentage = truncation_percentage

    @property
    def truncation_percentage(self) -> int:
        return self._truncation_percentage

    def _properties(self) -> dict[str, Any]:
        return {**super()._properties(), "truncation_percentage": self._truncation_percentage,
                "exclude_finished_jobs": False}

    def judge(self, maximize: bool, n: int, k: int, own: Sequence[float | None],
              peers: list[tuple[int, Sequence[float | None]]]) -> tuple[bool, str]:
        value = own[k - 1]
        others = [v[k - 1] for _, v in peers if v[k - 1] is not None]
        if value is None or not others:
            return False, ""
        cutoff = math.floor((len(others) + 1) * self._truncation_percentage / 100)
        not_better = sum(1 for other in others if not _better(other, value, maximize))
        if not_better < cutoff:
            return True, (f"its value {_fmt(value)} is in the lowest "
                          f"{self._truncation_percentage}% of the {len(others) + 1} values at "
                          f"this interval")
        return False, ""


class NoTerminationPolicy(EarlyTerminationPolicy):
    """No early termination: every trial runs to its end."""

    _name = "Default"

    def __init__(self) -> None:
        super().__init__(1, 0)

    @property
    def is_active(self) -> bool:
        return False

    def to_json(self) -> dict[str, Any]:
        return {"name": self._name}

    def describe(self) -> str:
        return "NoTerminationPolicy()"

    def judge(self, maximize: bool, n: int, k: int, own: Sequence[float | None],
              peers: list[tuple[int, Sequence[float | None]]]) -> tuple[bool, str]:
        return False, ""


def from_json(document: dict[str, Any] | None) -> EarlyTerminationPolicy:
    """The policy a ``to_json()`` document describes."""
    if not document or document.get("name") == "Default":
        return NoTerminationPolicy()
    props = dict(document.get("properties") or {})
    name = document.get("name")
    if name == "Bandit":
        return BanditPolicy(props.get("evaluation_interval", 1), props.get("slack_factor"),
                            props.get("slack_amount"), props.get("delay_evaluation", 0))
    if name == "MedianStopping":
        return MedianStoppingPolicy(props.get("evaluation_interval", 1),
                                    props.get("delay_evaluation", 0))
    if name == "TruncationSelection":
        return TruncationSelectionPolicy(props["truncation_percentage"],
                                         props.get("evaluation_interval", 1),
                                         props.get("delay_evaluation", 0))
    raise HyperDriveConfigException(f"Unknown early termination policy {name!r}.")


@dataclass(frozen=True)
class TrialHistory:
    """An earlier trial as a policy sees it: its primary metric values in logging order (None
    for a value that is not a number) and whether it has ended (then ``values`` is complete; for a
    stopped trial, cut at the interval where it was stopped)."""

    number: int
    values: tuple[float | None, ...]
    final: bool


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str = ""
    waiting_for: tuple[int, ...] = field(default=())


def numeric(values: Sequence[Any]) -> tuple[float | None, ...]:
    """Metric values with anything that is not a finite number replaced by None."""
    out: list[float | None] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            out.append(None)
        else:
            out.append(float(value))
    return tuple(out)


def decide(policy: EarlyTerminationPolicy, maximize: bool, n: int, k: int,
           own: Sequence[float | None], earlier: Sequence[TrialHistory]) -> Decision:
    """Judge trial ``n`` at interval ``k`` (``own`` holds at least ``k`` values) against the
    trials numbered below ``n`` only (see the module doc)."""
    if not policy.is_evaluation_point(k):
        return Decision(CONTINUE)
    if len(own) < k:
        raise ValueError(f"trial {n} has {len(own)} values; it cannot be judged at interval {k}")
    waiting = tuple(h.number for h in earlier
                    if h.number < n and not h.final and len(h.values) < k)
    if waiting:
        return Decision(WAIT, waiting_for=waiting)
    peers = [(h.number, tuple(h.values[:k])) for h in sorted(earlier, key=lambda h: h.number)
             if h.number < n and len(h.values) >= k]
    stop, why = policy.judge(maximize, n, k, tuple(own[:k]), peers)
    if stop:
        return Decision(STOP, f"{type(policy).__name__} stopped trial {n} at interval {k}: {why}.")
    return Decision(CONTINUE)
