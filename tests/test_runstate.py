"""Tests for the pure run-status state machine: exact transition lists, then random lifecycles."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from simml.exceptions import InvalidTransition, InvalidValueException
from simml.runstate import (
    POST_PROCESSING,
    RUNNING_STATES,
    STAGE_ORDER,
    STAGE_STATUS,
    TERMINAL,
    TRANSITIONS,
    CancelRequested,
    Canceled,
    Completed,
    Event,
    ExecutionEnded,
    Failed,
    Observed,
    RunStateMachine,
    RunStatus,
    Stage,
    StageStarted,
    Started,
    Submitted,
    Transition,
    replay,
)

S = RunStatus
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
ERROR = {"code": "UserError", "message": "boom"}


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def driven(seconds: int, old: RunStatus, new: RunStatus, event: Event) -> Transition:
    return Transition(at(seconds), old, new, event, observed=False)


def seen(seconds: int, old: RunStatus, new: RunStatus) -> Transition:
    return Transition(at(seconds), old, new, Observed(new), observed=True)


def feed(machine: RunStateMachine, *events: Event) -> list[Transition]:
    """Handle events one second apart (starting after the machine's last entry)."""
    out: list[Transition] = []
    start = len(machine.history)
    for offset, event in enumerate(events, start=start + 1):
        out += machine.handle(event, at(offset))
    return out


@pytest.fixture
def machine() -> Iterator[RunStateMachine]:
    """A fresh machine whose invariants are checked after every test (dask's ``ws``)."""
    m = RunStateMachine("run-1")
    yield m
    m.validate()
    rebuilt = replay(m.run_id, m.history)
    assert (rebuilt.status, rebuilt.history) == (m.status, m.history)


# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------


def test_statuses_use_azure_strings() -> None:
    assert [str(s) for s in RunStatus] == [
        "NotStarted", "Queued", "Preparing", "Provisioning", "Starting", "Running",
        "CancelRequested", "Canceled", "Finalizing", "Completed", "Failed", "Unapproved",
        "NotResponding", "Pausing", "Paused"]
    assert f"{S.Running}" == "Running" and S.Running == "Running" and S("Queued") is S.Queued
    assert TERMINAL == {S.Completed, S.Failed, S.Canceled}
    assert POST_PROCESSING == {S.CancelRequested, S.Finalizing}
    assert RUNNING_STATES == set(RunStatus) - TERMINAL - POST_PROCESSING


def test_stages_and_table_are_read_only() -> None:
    assert STAGE_ORDER == (Stage.PREPARE, Stage.SCALE, Stage.EXECUTE, Stage.POSTPROCESS)
    assert [STAGE_STATUS[s] for s in STAGE_ORDER] == [S.Preparing, S.Queued, S.Running,
                                                      S.Finalizing]
    assert isinstance(TRANSITIONS, MappingProxyType)
    assert isinstance(STAGE_STATUS, MappingProxyType)
    with pytest.raises(TypeError):
        TRANSITIONS[(S.Running, Submitted)] = frozenset({S.Running})  # type: ignore[index]
    assert all(old not in TERMINAL for old, _ in TRANSITIONS)


# --------------------------------------------------------------------------------------------
# Lifecycles
# --------------------------------------------------------------------------------------------


def test_remote_lifecycle(machine: RunStateMachine) -> None:
    out = feed(machine, Submitted(), StageStarted(Stage.PREPARE), StageStarted(Stage.SCALE),
               StageStarted(Stage.EXECUTE), ExecutionEnded(True), Completed())
    assert out == [
        driven(1, S.NotStarted, S.Starting, Submitted()),
        driven(2, S.Starting, S.Preparing, StageStarted(Stage.PREPARE)),
        driven(3, S.Preparing, S.Queued, StageStarted(Stage.SCALE)),
        driven(4, S.Queued, S.Running, StageStarted(Stage.EXECUTE)),
        driven(5, S.Running, S.Finalizing, ExecutionEnded(True)),
        driven(6, S.Finalizing, S.Completed, Completed()),
    ]
    assert machine.history == tuple(out)
    assert machine.status is S.Completed and machine.is_terminal
    assert machine.execution_succeeded is True


def test_local_target_lifecycle_skips_prepare_and_scale(machine: RunStateMachine) -> None:
    out = feed(machine, Submitted(), StageStarted(Stage.EXECUTE), ExecutionEnded(True),
               Completed())
    assert out == [
        driven(1, S.NotStarted, S.Starting, Submitted()),
        driven(2, S.Starting, S.Running, StageStarted(Stage.EXECUTE)),
        driven(3, S.Running, S.Finalizing, ExecutionEnded(True)),
        driven(4, S.Finalizing, S.Completed, Completed()),
    ]


def test_prepare_without_scale(machine: RunStateMachine) -> None:
    out = feed(machine, Submitted(), StageStarted(Stage.PREPARE), StageStarted(Stage.EXECUTE))
    assert [t.new for t in out] == [S.Starting, S.Preparing, S.Running]


def test_interactive_lifecycle(machine: RunStateMachine) -> None:
    assert feed(machine, Started(), Completed()) == [
        driven(1, S.NotStarted, S.Running, Started()),
        driven(2, S.Running, S.Completed, Completed()),
    ]


def test_interactive_failure(machine: RunStateMachine) -> None:
    assert feed(machine, Started(), Failed(ERROR)) == [
        driven(1, S.NotStarted, S.Running, Started()),
        driven(2, S.Running, S.Failed, Failed(ERROR)),
    ]


# Events that bring a fresh run into each status, for the failure and cancel tables.
REACH = {
    S.NotStarted: (),
    S.Starting: (Submitted(),),
    S.Preparing: (Submitted(), StageStarted(Stage.PREPARE)),
    S.Queued: (Submitted(), StageStarted(Stage.PREPARE), StageStarted(Stage.SCALE)),
    S.Running: (Submitted(), StageStarted(Stage.EXECUTE)),
    S.Finalizing: (Submitted(), StageStarted(Stage.EXECUTE), ExecutionEnded(True)),
}


@pytest.mark.parametrize("status", list(REACH), ids=str)
def test_failure_in_each_status(machine: RunStateMachine, status: RunStatus) -> None:
    feed(machine, *REACH[status])
    assert machine.status is status
    n = len(REACH[status])
    assert feed(machine, Failed(ERROR)) == [driven(n + 1, status, S.Failed, Failed(ERROR))]
    assert machine.status is S.Failed


def test_failed_execution_must_end_failed(machine: RunStateMachine) -> None:
    error = {"code": "ScriptExecution.NonZeroExit", "exit_code": 1}
    feed(machine, Submitted(), StageStarted(Stage.EXECUTE), ExecutionEnded(False, error))
    assert machine.status is S.Finalizing and machine.execution_succeeded is False
    with pytest.raises(InvalidTransition):
        machine.handle(Completed(), at(10))
    assert machine.handle(Failed(error), at(10)) == [
        driven(10, S.Finalizing, S.Failed, Failed(error))]


@pytest.mark.parametrize("status", list(REACH), ids=str)
def test_cancel_in_each_status(machine: RunStateMachine, status: RunStatus) -> None:
    feed(machine, *REACH[status])
    n = len(REACH[status])
    assert feed(machine, CancelRequested(), Canceled()) == [
        driven(n + 1, status, S.CancelRequested, CancelRequested()),
        driven(n + 2, S.CancelRequested, S.Canceled, Canceled()),
    ]


@pytest.mark.parametrize("status", [S.NotStarted, S.Starting, S.Queued], ids=str)
def test_cancel_before_anything_runs_needs_no_request(machine: RunStateMachine,
                                                       status: RunStatus) -> None:
    feed(machine, *REACH[status])
    n = len(REACH[status])
    assert feed(machine, Canceled()) == [driven(n + 1, status, S.Canceled, Canceled())]


@pytest.mark.parametrize("status", [S.Preparing, S.Running, S.Finalizing], ids=str)
def test_cancel_once_work_started_needs_a_request(machine: RunStateMachine,
                                                  status: RunStatus) -> None:
    feed(machine, *REACH[status])
    with pytest.raises(InvalidTransition):
        machine.handle(Canceled(), at(99))
    assert machine.status is status


def test_cancel_requested_twice_is_rejected(machine: RunStateMachine) -> None:
    feed(machine, Submitted(), CancelRequested())
    with pytest.raises(InvalidTransition):
        machine.handle(CancelRequested(), at(99))
    assert machine.status is S.CancelRequested


@pytest.mark.parametrize("ending", [Completed(), Failed(ERROR), Canceled()], ids=str)
def test_cancel_of_finished_run_is_a_no_op(machine: RunStateMachine, ending: Event) -> None:
    feed(machine, *({Completed: (Started(),), Failed: (Started(),)}.get(type(ending), ())),
         ending)
    assert machine.is_terminal
    history = machine.history
    assert machine.handle(CancelRequested(), at(99)) == []
    assert machine.handle(Canceled(), at(99)) == []
    assert machine.history == history and machine.is_terminal


@pytest.mark.parametrize("event", [Submitted(), Started(), Completed(), Failed(ERROR),
                                   StageStarted(Stage.EXECUTE), ExecutionEnded(True)], ids=str)
def test_nothing_else_leaves_a_terminal_status(machine: RunStateMachine, event: Event) -> None:
    feed(machine, Started(), Completed())
    with pytest.raises(InvalidTransition):
        machine.handle(event, at(99))
    assert machine.status is S.Completed and len(machine.history) == 2


# --------------------------------------------------------------------------------------------
# Invalid driven transitions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reach, event", [
    ((), Completed()),
    ((), StageStarted(Stage.EXECUTE)),
    ((), ExecutionEnded(True)),
    ((Submitted(),), Submitted()),
    ((Submitted(),), Started()),
    ((Submitted(),), StageStarted(Stage.POSTPROCESS)),
    ((Submitted(), StageStarted(Stage.SCALE)), StageStarted(Stage.PREPARE)),
    ((Submitted(), StageStarted(Stage.SCALE)), StageStarted(Stage.SCALE)),
    ((Submitted(), StageStarted(Stage.EXECUTE)), StageStarted(Stage.POSTPROCESS)),
    ((Submitted(), StageStarted(Stage.EXECUTE), ExecutionEnded(True)), ExecutionEnded(True)),
], ids=lambda v: str(v) if isinstance(v, Event) else str(len(v)))
def test_invalid_transition_changes_nothing(machine: RunStateMachine, reach: tuple[Event, ...],
                                            event: Event) -> None:
    feed(machine, *reach)
    status, history = machine.status, machine.history
    with pytest.raises(InvalidTransition) as info:
        machine.handle(event, at(99))
    assert (machine.status, machine.history) == (status, history)
    assert (info.value.run_id, info.value.status, info.value.event) == ("run-1", str(status),
                                                                        str(event))
    assert info.value.history == history


def test_invalid_transition_explains_itself_and_pickles(machine: RunStateMachine) -> None:
    feed(machine, Submitted(), StageStarted(Stage.SCALE))
    with pytest.raises(InvalidTransition) as info:
        machine.handle(StageStarted(Stage.PREPARE), at(5))
    exc = info.value
    text = str(exc)
    assert "event StageStarted(prepare) is not allowed in status Queued" in text
    assert str(machine.history[0]) in text and str(machine.history[1]) in text
    assert "NotStarted -> Starting on Submitted" in text
    copy = pickle.loads(pickle.dumps(exc))
    assert type(copy) is InvalidTransition
    assert (copy.run_id, copy.status, copy.event, copy.history) == (
        exc.run_id, exc.status, exc.event, exc.history)
    assert str(copy) == text


def test_driven_time_may_not_go_backwards(machine: RunStateMachine) -> None:
    machine.handle(Submitted(), at(10))
    with pytest.raises(InvalidValueException):
        machine.handle(StageStarted(Stage.EXECUTE), at(9))
    assert machine.status is S.Starting and len(machine.history) == 1
    assert machine.handle(StageStarted(Stage.EXECUTE), at(10))[0].new is S.Running


# --------------------------------------------------------------------------------------------
# Observed statuses
# --------------------------------------------------------------------------------------------


def test_observed_skipped_states(machine: RunStateMachine) -> None:
    assert machine.observe(S.Running, at(1)) == [seen(1, S.NotStarted, S.Running)]
    assert machine.observe("Completed", at(2)) == [seen(2, S.Running, S.Completed)]
    assert machine.status is S.Completed


def test_observed_not_responding_and_recovery(machine: RunStateMachine) -> None:
    out = [t for s, status in enumerate([S.Starting, S.Queued, S.Running, S.NotResponding,
                                         S.Running, S.Finalizing, S.Completed], start=1)
           for t in machine.observe(status, at(s))]
    assert out == [
        seen(1, S.NotStarted, S.Starting),
        seen(2, S.Starting, S.Queued),
        seen(3, S.Queued, S.Running),
        seen(4, S.Running, S.NotResponding),
        seen(5, S.NotResponding, S.Running),
        seen(6, S.Running, S.Finalizing),
        seen(7, S.Finalizing, S.Completed),
    ]


def test_observed_out_of_order_is_recorded_but_never_moves_back(
        machine: RunStateMachine) -> None:
    machine.observe(S.Running, at(1))
    assert machine.observe(S.Queued, at(2)) == [seen(2, S.Running, S.Queued)]
    assert machine.status is S.Running
    assert machine.observe(S.Finalizing, at(3)) == [seen(3, S.Running, S.Finalizing)]
    assert machine.status is S.Finalizing


def test_observed_repeat_records_nothing(machine: RunStateMachine) -> None:
    machine.observe(S.Running, at(1))
    assert machine.observe(S.Running, at(2)) == []
    assert len(machine.history) == 1


def test_observed_after_terminal_is_recorded_only(machine: RunStateMachine) -> None:
    machine.observe(S.Failed, at(1))
    assert machine.observe(S.Running, at(2)) == [seen(2, S.Failed, S.Running)]
    assert machine.observe(S.Completed, at(3)) == [seen(3, S.Failed, S.Completed)]
    assert machine.status is S.Failed


def test_observed_event_goes_through_handle(machine: RunStateMachine) -> None:
    assert machine.handle(Observed(S.Queued), at(1)) == [seen(1, S.NotStarted, S.Queued)]


def test_driven_events_continue_from_an_observed_status(machine: RunStateMachine) -> None:
    machine.handle(Submitted(), at(5))
    machine.observe(S.Queued, at(1))  # observed times are not ordered against driven ones
    assert machine.handle(StageStarted(Stage.EXECUTE), at(6)) == [
        driven(6, S.Queued, S.Running, StageStarted(Stage.EXECUTE))]


# --------------------------------------------------------------------------------------------
# Replay and validate
# --------------------------------------------------------------------------------------------


def test_replay_rebuilds_state() -> None:
    m = RunStateMachine("run-2")
    feed(m, Submitted(), StageStarted(Stage.EXECUTE), ExecutionEnded(True))
    m.observe(S.Queued, at(9))
    rebuilt = replay("run-2", m.history)
    assert (rebuilt.status, rebuilt.history) == (S.Finalizing, m.history)
    assert rebuilt.execution_succeeded is True
    rebuilt.handle(Completed(), at(10))
    assert rebuilt.status is S.Completed
    assert replay("run-3", ()).status is S.NotStarted


def test_replay_accepts_a_creation_record() -> None:
    created = Transition(at(0), None, S.NotStarted, Observed(S.NotStarted), observed=True)
    m = replay("run-2", [created, driven(1, S.NotStarted, S.Running, Started())])
    assert m.status is S.Running
    m.validate()


@pytest.mark.parametrize("bad", [
    [driven(1, S.NotStarted, S.Running, Submitted())],                # wrong target
    [driven(1, S.NotStarted, S.Starting, Submitted()),
     driven(2, S.NotStarted, S.Starting, Submitted())],               # broken chain
    [driven(2, S.NotStarted, S.Starting, Submitted()),
     driven(1, S.Starting, S.Running, StageStarted(Stage.EXECUTE))],  # time goes backwards
    [Transition(at(1), S.NotStarted, S.Running, Started(), observed=True)],  # not an Observed
])
def test_replay_rejects_a_history_it_would_not_produce(bad: list[Transition]) -> None:
    with pytest.raises(InvalidTransition) as info:
        replay("run-2", bad)
    assert info.value.history[-1] in bad


def test_validate_catches_inconsistent_state() -> None:
    history = (driven(1, S.NotStarted, S.Starting, Submitted()),)
    with pytest.raises(AssertionError, match="history leads to Starting"):
        RunStateMachine("run-2", S.Running, history).validate()
    with pytest.raises(AssertionError, match="not allowed"):
        RunStateMachine("run-2", S.Completed,
                        (driven(1, S.NotStarted, S.Completed, Completed()),)).validate()
    RunStateMachine("run-2", S.Running).validate()  # a status without history is fine


# --------------------------------------------------------------------------------------------
# Random lifecycles
# --------------------------------------------------------------------------------------------

EVENTS = st.one_of(
    st.just(Submitted()),
    st.builds(StageStarted, st.sampled_from(Stage)),
    st.just(Started()),
    st.builds(ExecutionEnded, st.booleans(), st.none() | st.just(ERROR)),
    st.just(Completed()),
    st.just(Failed(ERROR)),
    st.just(CancelRequested()),
    st.just(Canceled()),
)
# What a real driver tends to send next; without it random runs rarely get past Starting.
LIKELY: dict[RunStatus, list[Event]] = {
    S.NotStarted: [Submitted(), Started()],
    S.Starting: [StageStarted(s) for s in Stage],
    S.Preparing: [StageStarted(s) for s in Stage],
    S.Queued: [StageStarted(s) for s in Stage],
    S.Running: [ExecutionEnded(True), ExecutionEnded(False, ERROR), Completed()],
    S.Finalizing: [Completed(), Failed(ERROR)],
    S.CancelRequested: [Canceled()],
}
LIKELY_NEXT = {status: st.sampled_from(events) for status, events in LIKELY.items()}
STEP = st.integers(min_value=0, max_value=3600)
STAGE_INDEX = {status: index for index, status in enumerate(STAGE_STATUS[s] for s in STAGE_ORDER)}


class RunLifecycle(RuleBasedStateMachine):
    """Random driven events and observed reports against one run."""

    def __init__(self) -> None:
        super().__init__()
        self.machine = RunStateMachine("run-h")
        self.now = T0
        self.path = [self.machine.status]  # every status the run actually took
        self.first_terminal: RunStatus | None = None

    def _step(self, seconds: int) -> tuple[RunStatus, tuple[Transition, ...]]:
        self.now += timedelta(seconds=seconds)
        return self.machine.status, self.machine.history

    def _moved(self, before: RunStatus) -> None:
        status = self.machine.status
        if status != before:
            self.path.append(status)
        if status in TERMINAL and self.first_terminal is None:
            self.first_terminal = status

    @rule(event=EVENTS, seconds=STEP)
    def drive(self, event: Event, seconds: int) -> None:
        self._drive(event, seconds)

    @rule(data=st.data(), seconds=STEP)
    def drive_likely(self, data: st.DataObject, seconds: int) -> None:
        self._drive(data.draw(LIKELY_NEXT.get(self.machine.status, EVENTS)), seconds)

    def _drive(self, event: Event, seconds: int) -> None:
        before, history = self._step(seconds)
        try:
            out = self.machine.handle(event, self.now)
        except InvalidTransition as exc:
            assert (self.machine.status, self.machine.history) == (before, history)
            assert exc.status == str(before) and exc.history == history
            return
        if before in TERMINAL:
            assert isinstance(event, (CancelRequested, Canceled)) and out == []
        else:
            assert out == [Transition(self.now, before, self.machine.status, event, False)]
            assert self.machine.history == history + tuple(out)
        self._moved(before)

    @rule(status=st.sampled_from(RunStatus), seconds=STEP)
    def report(self, status: RunStatus, seconds: int) -> None:
        before, history = self._step(seconds)
        out = self.machine.observe(status, self.now)
        if status == before:
            assert out == []
        else:
            assert out == [Transition(self.now, before, status, Observed(status), True)]
        assert self.machine.history == history + tuple(out)
        assert self.machine.status in (before, status)
        self._moved(before)

    @invariant()
    def terminal_is_absorbing(self) -> None:
        if self.first_terminal is not None:
            assert self.machine.status is self.first_terminal
            assert self.path[-1] is self.first_terminal
            assert self.path.index(self.first_terminal) == len(self.path) - 1

    @invariant()
    def driven_time_never_goes_backwards(self) -> None:
        times = [t.at for t in self.machine.history if not t.observed]
        assert times == sorted(times)

    @invariant()
    def stages_in_order(self) -> None:
        indices = [STAGE_INDEX[s] for s in self.path if s in STAGE_INDEX]
        assert indices == sorted(indices)

    @invariant()
    def failed_execution_never_completes(self) -> None:
        events = [t.event for t in self.machine.history if not t.observed]
        if ExecutionEnded(False) in events or ExecutionEnded(False, ERROR) in events:
            assert Completed() not in events

    @invariant()
    def valid(self) -> None:
        self.machine.validate()

    def teardown(self) -> None:
        rebuilt = replay("run-h", self.machine.history)
        assert (rebuilt.status, rebuilt.history) == (self.machine.status, self.machine.history)


RunLifecycle.TestCase.settings = settings(max_examples=100, stateful_step_count=30,
                                          deadline=None)
TestRunLifecycle = RunLifecycle.TestCase
