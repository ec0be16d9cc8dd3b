"""The run-status state machine: pure, no I/O, no clock (times are passed in).

A submitted run moves through Azure ML's statuses in this order::

    NotStarted -> Starting -> Preparing -> Queued -> Running -> Finalizing -> Completed
                                                                            \\-> Failed
    any non-terminal status -> CancelRequested -> Canceled

``Preparing`` and ``Queued`` may be skipped (a 'local' target goes Starting -> Running), an
interactive ``start_logging()`` run goes NotStarted -> Running -> Completed directly, and any
non-terminal status may go to ``Failed``. Completed, Failed and Canceled are terminal.

Two kinds of input, after dask's worker state machine:

* **driven** events (``RunStateMachine.handle``): simml itself runs the stages, so an event that
  the ``TRANSITIONS`` table does not allow is a bug and raises ``InvalidTransition``;
* **observed** statuses (``RunStateMachine.observe``): a remote backend reports what it saw, so
  skipped, extra (``NotResponding``) and out-of-order reports are recorded, never rejected, and
  the status only ever moves forward.

Everything the machine did is kept in ``history`` so that any status can be explained, persisted
and rebuilt with ``replay``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from types import MappingProxyType
from typing import Any

from simml.exceptions import InvalidTransition, InvalidValueException

__all__ = [
    "POST_PROCESSING",
    "RUNNING_STATES",
    "STAGE_ORDER",
    "STAGE_STATUS",
    "TERMINAL",
    "TRANSITIONS",
    "CancelRequested",
    "Canceled",
    "Completed",
    "Event",
    "ExecutionEnded",
    "Failed",
    "Observed",
    "RunStateMachine",
    "RunStatus",
    "Stage",
    "StageStarted",
    "Started",
    "Submitted",
    "Transition",
    "replay",
]


# --------------------------------------------------------------------------------------------
# Statuses and stages
# --------------------------------------------------------------------------------------------


class RunStatus(str, Enum):
    """Azure ML's run statuses; member names equal the values so ``RunStatus["Running"]`` works."""

    NotStarted = "NotStarted"
    Queued = "Queued"
    Preparing = "Preparing"
    Provisioning = "Provisioning"
    Starting = "Starting"
    Running = "Running"
    CancelRequested = "CancelRequested"
    Canceled = "Canceled"
    Finalizing = "Finalizing"
    Completed = "Completed"
    Failed = "Failed"
    Unapproved = "Unapproved"
    NotResponding = "NotResponding"
    Pausing = "Pausing"
    Paused = "Paused"

    def __str__(self) -> str:
        return self.value


TERMINAL: frozenset[RunStatus] = frozenset(
    {RunStatus.Completed, RunStatus.Failed, RunStatus.Canceled})
"""Statuses a run never leaves; ``get_status()`` stops refreshing once it sees one."""

RUNNING_STATES: frozenset[RunStatus] = frozenset({
    RunStatus.NotStarted, RunStatus.Queued, RunStatus.Preparing, RunStatus.Provisioning,
    RunStatus.Starting, RunStatus.Running, RunStatus.Unapproved, RunStatus.NotResponding,
    RunStatus.Pausing, RunStatus.Paused,
})
"""Azure's ``RunStatus.get_running_statuses()``: the run has not reached its post-processing."""

POST_PROCESSING: frozenset[RunStatus] = frozenset(
    {RunStatus.CancelRequested, RunStatus.Finalizing})
"""Azure's ``get_post_processing_statuses()``: the job is over but the run is not yet terminal
(``wait_for_completion(wait_post_processing=False)`` may return here)."""

_NON_TERMINAL: frozenset[RunStatus] = frozenset(RunStatus) - TERMINAL


class Stage(str, Enum):
    """The phases simml drives a submitted run through, in this order.

    PREPARE and SCALE may be skipped. POSTPROCESS is entered by ``ExecutionEnded`` (not by
    ``StageStarted``) because post-processing must know whether execution succeeded.
    """

    PREPARE = "prepare"
    SCALE = "scale"
    EXECUTE = "execute"
    POSTPROCESS = "postprocess"

    def __str__(self) -> str:
        return self.value


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)
"""The stages in the order they are visited."""

STAGE_STATUS: Mapping[Stage, RunStatus] = MappingProxyType({
    Stage.PREPARE: RunStatus.Preparing,
    Stage.SCALE: RunStatus.Queued,
    Stage.EXECUTE: RunStatus.Running,
    Stage.POSTPROCESS: RunStatus.Finalizing,
})
"""The status a run shows while a stage is in progress."""


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Base of everything ``RunStateMachine`` accepts; ``str()`` is the name used in errors."""

    def __str__(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Submitted(Event):
    """The run was handed to a compute target (NotStarted -> Starting)."""


@dataclass(frozen=True)
class StageStarted(Event):
    """A stage began: the run takes the stage's status (see ``STAGE_STATUS``)."""

    stage: Stage

    def __str__(self) -> str:
        return f"StageStarted({self.stage})"


@dataclass(frozen=True)
class Started(Event):
    """An interactive (``start_logging``) run began in this process (NotStarted -> Running)."""


@dataclass(frozen=True)
class ExecutionEnded(Event):
    """The user's script exited (Running -> Finalizing); ``success`` decides how it may end."""

    success: bool
    error: dict[str, Any] | None = field(default=None, hash=False)

    def __str__(self) -> str:
        return f"ExecutionEnded(success={self.success})"


@dataclass(frozen=True)
class Completed(Event):
    """The run finished well (Finalizing after a successful execution, or interactive Running)."""


@dataclass(frozen=True)
class Failed(Event):
    """The run failed; allowed from every non-terminal status."""

    error: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class CancelRequested(Event):
    """Someone asked to cancel; a no-op on a finished run."""


@dataclass(frozen=True)
class Canceled(Event):
    """Cancellation took effect; a no-op on a finished run."""


@dataclass(frozen=True)
class Observed(Event):
    """A status reported by a remote backend (see ``RunStateMachine.observe``)."""

    status: RunStatus

    def __str__(self) -> str:
        return f"Observed({self.status})"


# --------------------------------------------------------------------------------------------
# The transition table
# --------------------------------------------------------------------------------------------

_S = RunStatus


def _build_table() -> dict[tuple[RunStatus, type[Event]], frozenset[RunStatus]]:
    table: dict[tuple[RunStatus, type[Event]], frozenset[RunStatus]] = {
        (_S.NotStarted, Submitted): frozenset({_S.Starting}),
        (_S.NotStarted, Started): frozenset({_S.Running}),
        # Stages only move forward; which target is taken depends on StageStarted.stage.
        (_S.Starting, StageStarted): frozenset({_S.Preparing, _S.Queued, _S.Running}),
        (_S.Preparing, StageStarted): frozenset({_S.Queued, _S.Running}),
        (_S.Queued, StageStarted): frozenset({_S.Running}),
        (_S.Running, ExecutionEnded): frozenset({_S.Finalizing}),
        (_S.Running, Completed): frozenset({_S.Completed}),      # interactive runs
        (_S.Finalizing, Completed): frozenset({_S.Completed}),   # only if execution succeeded
        (_S.CancelRequested, Canceled): frozenset({_S.Canceled}),
        # Nothing has run yet, so there is nothing to wait for.
        (_S.NotStarted, Canceled): frozenset({_S.Canceled}),
        (_S.Starting, Canceled): frozenset({_S.Canceled}),
        (_S.Queued, Canceled): frozenset({_S.Canceled}),
    }
    for status in _NON_TERMINAL:
        table[(status, Failed)] = frozenset({_S.Failed})
        if status is not _S.CancelRequested:
            table[(status, CancelRequested)] = frozenset({_S.CancelRequested})
    return table


TRANSITIONS: Mapping[tuple[RunStatus, type[Event]], frozenset[RunStatus]] = MappingProxyType(
    _build_table())
"""(current status, driven event type) -> the statuses that event may lead to.

A missing key means the event is not allowed. Every value has one member except for
``StageStarted``, whose target is ``STAGE_STATUS[event.stage]`` and must be a member. One guard
sits outside the table: Finalizing -> Completed needs a successful ``ExecutionEnded`` first.
"""

_CANCEL_EVENTS = (CancelRequested, Canceled)

# Forward order used for observed statuses. Side statuses share the rank of the status they
# interrupt, so Running <-> NotResponding / Pausing / Paused (and Starting <-> Unapproved) may
# alternate, while a late report of an earlier status never moves a run backwards.
_RANK: Mapping[RunStatus, int] = MappingProxyType({
    _S.NotStarted: 0,
    _S.Starting: 1, _S.Unapproved: 1,
    _S.Provisioning: 2,
    _S.Preparing: 3,
    _S.Queued: 4,
    _S.Running: 5, _S.NotResponding: 5, _S.Pausing: 5, _S.Paused: 5,
    _S.Finalizing: 6,
    _S.CancelRequested: 7,
    _S.Completed: 8, _S.Failed: 8, _S.Canceled: 8,
})


def _target(status: RunStatus, event: Event, execution_succeeded: bool | None) -> RunStatus | None:
    """Where a driven ``event`` leads from ``status``, or None if it is not allowed."""
    allowed = TRANSITIONS.get((status, type(event)))
    if allowed is None:
        return None
    if isinstance(event, StageStarted):
        target = STAGE_STATUS[event.stage]
        return target if target in allowed else None
    if isinstance(event, Completed) and status is _S.Finalizing and execution_succeeded is not True:
        return None
    (target,) = allowed
    return target


def _advances(current: RunStatus, reported: RunStatus) -> bool:
    """Whether an observed status moves the run (forward, and never out of a terminal status)."""
    return (current not in TERMINAL and reported != current
            and _RANK[reported] >= _RANK[current])


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    """One entry of a run's history.

    ``old`` is the status when the event arrived (None only for a creation record at the start of
    a persisted history). An observed entry whose ``new`` went backwards or came after a terminal
    status is kept for the record but did not change the status.
    """

    at: datetime
    old: RunStatus | None
    new: RunStatus
    event: Event
    observed: bool = False

    def __str__(self) -> str:
        return (f"{self.at.isoformat()} {self.old} -> {self.new} on {self.event}"
                + (" (observed)" if self.observed else ""))


class RunStateMachine:
    """The status of one run; mutated only through ``handle`` and ``observe``.

    The constructor trusts its arguments (``validate()`` checks them); use ``replay`` to rebuild
    a machine from persisted history.
    """

    def __init__(self, run_id: str, status: RunStatus = RunStatus.NotStarted,
                 history: tuple[Transition, ...] = ()) -> None:
        self.run_id = run_id
        self._status = RunStatus(status)
        self._history: tuple[Transition, ...] = tuple(history)
        self._last_driven_at: datetime | None = None
        self._execution_succeeded: bool | None = None
        for transition in self._history:
            self._note_driven(transition)

    def __repr__(self) -> str:
        return f"RunStateMachine({self.run_id!r}, {self._status}, {len(self._history)} transitions)"

    @property
    def status(self) -> RunStatus:
        return self._status

    @property
    def history(self) -> tuple[Transition, ...]:
        return self._history

    @property
    def is_terminal(self) -> bool:
        return self._status in TERMINAL

    @property
    def execution_succeeded(self) -> bool | None:
        """The outcome recorded by ``ExecutionEnded``; None until the script has exited."""
        return self._execution_succeeded

    def handle(self, event: Event, at: datetime) -> list[Transition]:
        """Apply a driven event and return the transitions it caused.

        Raises ``InvalidTransition`` (and changes nothing) if ``TRANSITIONS`` does not allow the
        event in the current status, including any event after a terminal status, except that
        ``CancelRequested``/``Canceled`` on a finished run are no-ops returning ``[]``: at this
        level cancelling a finished run does nothing, and the API layer decides what to tell the
        user. Raises ``InvalidValueException`` if ``at`` is earlier than the last driven
        transition. An ``Observed`` event is passed on to ``observe``.
        """
        if isinstance(event, Observed):
            return self.observe(event.status, at)
        if self.is_terminal and isinstance(event, _CANCEL_EVENTS):
            return []
        target = _target(self._status, event, self._execution_succeeded)
        if target is None:
            raise InvalidTransition(self.run_id, str(self._status), str(event), self._history)
        if self._last_driven_at is not None and at < self._last_driven_at:
            raise InvalidValueException(
                f"Run {self.run_id}: {event} at {at.isoformat()} is earlier than the last "
                f"transition at {self._last_driven_at.isoformat()}.")
        transition = Transition(at, self._status, target, event, observed=False)
        self._history += (transition,)
        self._status = target
        self._note_driven(transition)
        return [transition]

    def observe(self, status: RunStatus | str, at: datetime) -> list[Transition]:
        """Record a status reported by a remote backend and return what was recorded.

        Reports are never rejected: skipped statuses and ``NotResponding`` are applied, while a
        report of an earlier status, or any report after a terminal status, is recorded (with
        ``observed=True``) without changing the status. Repeating the current status records
        nothing, so polling does not grow the history.
        """
        reported = RunStatus(status)
        if reported == self._status:
            return []
        transition = Transition(at, self._status, reported, Observed(reported), observed=True)
        self._history += (transition,)
        if _advances(self._status, reported):
            self._status = reported
        return [transition]

    def validate(self) -> None:
        """Check the invariants; raise ``AssertionError`` naming the first broken one.

        Each entry starts from the status the previous ones left; driven entries are allowed by
        ``TRANSITIONS`` and their times never go backwards; terminal statuses are absorbing; the
        current status is where the history leads.
        """
        status: RunStatus | None = None
        last_driven_at: datetime | None = None
        succeeded: bool | None = None
        for index, t in enumerate(self._history):
            problem: str | None = None
            if t.old is None:
                if index:
                    problem = "only the first entry may have no old status"
                status = t.new
            else:
                if status is None:
                    status = t.old
                if t.old != status:
                    problem = f"starts from {t.old}, but the run was {status}"
                elif t.observed:
                    if t.event != Observed(t.new):
                        problem = f"observed entry with event {t.event}"
                    elif t.new == t.old:
                        problem = "an unchanged report is recorded"
                    elif _advances(status, t.new):
                        status = t.new
                elif status in TERMINAL:
                    problem = f"driven transition out of terminal {status}"
                elif _target(status, t.event, succeeded) != t.new:
                    problem = "not allowed by TRANSITIONS"
                elif last_driven_at is not None and t.at < last_driven_at:
                    problem = f"time goes backwards (previous {last_driven_at.isoformat()})"
                else:
                    last_driven_at = t.at
                    if isinstance(t.event, ExecutionEnded):
                        succeeded = t.event.success
                    status = t.new
            if problem is not None:
                raise AssertionError(f"Run {self.run_id}: history[{index}] ({t}): {problem}")
        if status is not None and status != self._status:
            raise AssertionError(
                f"Run {self.run_id}: status is {self._status}, but history leads to {status}")

    def _note_driven(self, transition: Transition) -> None:
        """Keep the facts that later driven events depend on."""
        if transition.observed or transition.old is None:
            return
        self._last_driven_at = transition.at
        if isinstance(transition.event, ExecutionEnded):
            self._execution_succeeded = transition.event.success


def replay(run_id: str, transitions: Iterable[Transition]) -> RunStateMachine:
    """Rebuild a machine from persisted history by feeding it every entry again.

    Raises ``InvalidTransition`` at the first entry the machine would not have produced itself
    (a corrupted or hand-edited history, or driven times going backwards), so a replayed
    machine always satisfies ``validate()``.
    """
    entries = tuple(transitions)
    if not entries:
        return RunStateMachine(run_id)
    first = entries[0]
    if first.old is None:  # a creation record: the run came into being in first.new
        machine = RunStateMachine(run_id, first.new, (first,))
        entries = entries[1:]
    else:
        machine = RunStateMachine(run_id, first.old)
    for entry in entries:
        before, history = machine.status, machine.history
        try:
            if entry.observed:
                produced = machine.observe(entry.new, entry.at)
            else:
                produced = machine.handle(entry.event, entry.at)
        except (InvalidTransition, InvalidValueException) as exc:
            raise _rejected(run_id, before, entry, history) from exc
        if produced != [entry]:
            raise _rejected(run_id, before, entry, history)
    return machine


def _rejected(run_id: str, status: RunStatus, entry: Transition,
              history: tuple[Transition, ...]) -> InvalidTransition:
    return InvalidTransition(run_id, str(status), str(entry.event), history + (entry,))
