"""The HyperDrive sweep loop, run by the workspace's runner for a parent run of type ``hyperdrive``.

``driver.drive`` hands such a run here instead of to the stage hooks. The loop lives in a runner
thread (not in the client, which may exit) and does four things until the sweep is over:

* **samples** trial ``n`` (``TrialSampler``: a function of the seed and ``n``, plus the results of
  earlier Bayesian batches) and submits it as an ordinary child run ``<parent>_<n>`` through
  ``simml_run_submit``, so children queue on the compute target like any run; at most
  ``max_concurrent_runs`` are active, and the cluster's nodes bound them further;
* **judges** active children under the early-termination policy: each child's primary-metric
  values come from the store (the job journal is ingested by the child's own runner thread); at
  each evaluation point the child waits (``simml.job.sweep``) until ``policy.decide`` has judged
  it against the trials numbered below it only. ``continue`` writes the child's gate file;
  ``stop`` cancels the child through the cancel path with an error naming the policy, so the job
  process is stopped while it runs and the child ends Canceled;
* **enforces** ``max_duration_minutes`` on the workspace clock and ``cancel()`` of the parent
  (every active child is canceled, nothing new is sampled);
* **finishes**: Completed (failed children are counted and reported, the sweep goes on), Failed
  when every trial failed, Canceled when canceled or out of time.

Everything the loop decides is logged to the parent's driver log (``[hyperdrive] ...``).
"""

from __future__ import annotations

import json
import os
import threading
import traceback
from dataclasses import dataclass
from typing import Any

from simml.entities import RunCreate, RunSubmission
from simml.runstate import (
    TERMINAL,
    CancelRequested,
    Canceled,
    Completed,
    ExecutionEnded,
    Failed,
    RunStateMachine,
    RunStatus,
    Stage,
    StageStarted,
    Submitted,
)
from simml.train.hyperdrive.policy import (
    STOP,
    WAIT,
    TrialHistory,
    decide,
    numeric,
)
from simml.train.hyperdrive.policy import from_json as policy_from_json
from simml.train.hyperdrive.run import STOPPED_PROPERTY, TRIAL_PROPERTY
from simml.train.hyperdrive.runconfig import child_arguments
from simml.train.hyperdrive.sampling import FinishedTrial, TrialSampler

POLL_SECONDS = 0.01
"""How often the loop looks while a policy judges trials (they wait for it at evaluation points)."""
IDLE_POLL_SECONDS = 0.25
"""Without a policy: the loop wakes when a trial ends in this runner (``notify_run_ended``), else
this often (the clock's deadline, a cancel, a trial run by another process)."""


@dataclass(frozen=True)
class Child:
    id: str
    status: str

GATE_FILE = "sweep_gate"
_TERMINAL = {s.value for s in TERMINAL}


def drive_sweep(backend: Any, local: Any, workspace: Any, run_id: str) -> None:
    """Run a sweep to its end; a bug in the loop fails the parent and cancels its children."""
    sweep = Sweep(backend, local, workspace, run_id)
    local.run_end_listeners.add(sweep.wake)
    try:
        sweep.run()
    except Exception as exc:
        detail = traceback.format_exc()
        sweep.log(detail)
        error = {"code": "SystemError", "message": f"{type(exc).__name__}: {exc}\n{detail}"}
        sweep.cancel_active({"code": "ParentFailed", "message": (
            f"The HyperDrive run {run_id} failed: {type(exc).__name__}: {exc}")})
        if sweep.machine.status not in TERMINAL:
            sweep.transition(Failed(error), {"error": error})
    finally:
        local.run_end_listeners.discard(sweep.wake)


class Sweep:
    def __init__(self, backend: Any, local: Any, workspace: Any, run_id: str) -> None:
        self.backend, self.local, self.workspace, self.run_id = backend, local, workspace, run_id
        self.store = local.store(workspace)
        info = self.store.get_run(run_id)
        self.info = info
        definition = info.definition or {}
        settings = definition["hyperdrive"]
        self.child_definition = definition["child"]
        self.metric = settings["primaryMetricName"]
        self.maximize = settings.get("primaryMetricGoal", "maximize") == "maximize"
        self.sampler = TrialSampler(settings["generator"], self.maximize)
        self.space = self.sampler.space
        self.policy = policy_from_json(settings.get("policy"))
        self.total = self.sampler.total(int(settings["maxTotalRuns"]))
        self.concurrency = int(settings["maxConcurrentRuns"])
        self.max_seconds = float(settings["maxDurationMinutes"]) * 60
        self.machine = RunStateMachine(run_id, RunStatus(info.status))
        self.log_path = local.driver_log_path(workspace, run_id)
        self.trials: dict[int, str] = {}        # trial number -> child run id
        self.parameters: dict[int, dict[str, Any]] = {}
        self.judged: dict[int, int] = {}        # trial -> last interval judged "continue"
        self.stopped: dict[int, int] = {}       # trial -> interval the policy stopped it at
        self.final: dict[int, tuple[float | None, ...]] = {}  # ended trials' values (cached)
        self.waiting: dict[int, tuple[int, tuple[int, ...]]] = {}
        self.wake = threading.Event()

    # --- plumbing ------------------------------------------------------------------------------
    def log(self, line: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")

    def transition(self, event: Any, error: dict[str, Any] | None = None) -> None:
        for change in self.machine.handle(event, self.local.now(self.workspace)):
            self.store.set_run_status(self.run_id, change.new.value, change.at, error)

    def children(self) -> dict[int, Child]:
        """Every trial's id and status: one indexed read (the loop looks often)."""
        rows = self.store.connection().execute(
            "SELECT id, status FROM runs WHERE parent_id = ?", (self.run_id,)).fetchall()
        prefix = f"{self.run_id}_"
        return {int(run_id[len(prefix):]): Child(run_id, status) for run_id, status in rows
                if run_id.startswith(prefix) and run_id[len(prefix):].isdigit()}

    def values(self, number: int, info: Any) -> tuple[float | None, ...]:
        """The trial's primary-metric values (None for non-numbers), cut where it was stopped."""
        cached = self.final.get(number)
        if cached is not None:
            return cached
        raw: list[Any] = []
        for series in self.store.get_metrics(info.id, self.metric):
            if series.kind == "scalar":
                raw += series.values
        values = numeric(raw)
        if number in self.stopped:
            values = values[:self.stopped[number]]
        if info.status in _TERMINAL:
            self.final[number] = values
        return values

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        ws = self.workspace
        self.transition(Submitted())
        self.transition(StageStarted(Stage.EXECUTE))
        self.local.exec_update(ws, self.run_id, stage="execute")
        started = self.local.now(ws)
        self.log(f"[hyperdrive] {self.run_id}: {self.total} trial(s) of {self.sampler.name} "
                 f"sampling, at most {self.concurrency} at a time on {self.info.target}; "
                 f"primary metric {self.metric!r} ({'max' if self.maximize else 'min'}imize); "
                 f"policy {self.policy.describe()}; seed {self.sampler.seed}")
        ended_by: str | None = None
        next_trial = 0
        while True:
            self.wake.clear()  # before reading: a trial ending after this read wakes the wait
            children = self.children()
            active = [n for n, info in children.items() if info.status not in _TERMINAL]
            if ended_by is None:
                if self.local.cancel_requested(ws, self.run_id):
                    ended_by = "canceled"
                    self.log("[hyperdrive] cancel requested: canceling every active trial")
                    self.cancel_active({"code": "ParentCanceled", "message": (
                        f"The HyperDrive run {self.run_id} was canceled.")}, children)
                elif (self.local.now(ws) - started).total_seconds() > self.max_seconds:
                    ended_by = "timeout"
                    minutes = self.max_seconds / 60
                    self.log(f"[hyperdrive] max_duration_minutes={minutes:g} reached: canceling "
                             "every active trial")
                    self.cancel_active({"code": "MaxDurationExceeded", "message": (
                        f"The HyperDrive run {self.run_id} reached max_duration_minutes="
                        f"{minutes:g} (workspace clock).")}, children)
            if ended_by is None and self.policy.is_active:
                self.judge(children)
            while ended_by is None and next_trial < self.total and len(active) < self.concurrency:
                parameters = self.sample(next_trial, children)
                if parameters is None:
                    break  # a Bayesian batch waits for the earlier batches to end
                self.submit(next_trial, parameters)
                active.append(next_trial)
                next_trial += 1
            if not active and (ended_by is not None or next_trial >= self.total):
                break
            self.wake.wait(POLL_SECONDS if self.policy.is_active else IDLE_POLL_SECONDS)
        self.finish(self.children(), ended_by)

    def sample(self, n: int, children: dict[int, Any]) -> dict[str, Any] | None:
        needed = self.sampler.depends_on(n)
        if any(m not in children or children[m].status not in _TERMINAL for m in needed):
            return None
        finished = []
        for m in needed:
            values = [v for v in self.values(m, children[m]) if v is not None]
            best = (max(values) if self.maximize else min(values)) if values else None
            finished.append(FinishedTrial(m, self.parameters[m], best))
        return self.sampler.parameters(n, finished)

    def submit(self, n: int, parameters: dict[str, Any]) -> None:
        child_id = f"{self.run_id}_{n}"
        definition = json.loads(json.dumps(self.child_definition))
        definition["arguments"] = child_arguments(definition.get("arguments") or [], parameters,
                                                  self.space)
        environment = dict(definition.get("environmentVariables") or {})
        environment["SIMML_PARENT_RUN_ID"] = self.run_id
        if self.policy.is_active:
            gate = self.local.run_dir(self.workspace, child_id) / GATE_FILE
            environment.update({
                "SIMML_SWEEP_GATE": str(gate), "SIMML_SWEEP_METRIC": self.metric,
                "SIMML_SWEEP_POINTS": f"{self.policy.evaluation_interval},"
                                      f"{self.policy.delay_evaluation}"})
        definition["environmentVariables"] = environment
        definition["hyperparameters"] = parameters
        text = json.dumps(parameters)
        now = self.local.now(self.workspace)
        self.store.create_run(RunCreate(
            run_id=child_id, experiment_name=self.info.experiment_name,
            run_type="azureml.scriptrun", status="NotStarted", parent_id=self.run_id,
            target=definition["target"], created_time=now, definition=definition,
            tags={"hyperparameters": text},
            properties={"ContentSnapshotId": definition.get("snapshotId") or "",
                        "hyperparameters": text, TRIAL_PROPERTY: str(n)},
            submitted_by=self.info.submitted_by))
        self.trials[n] = child_id
        self.parameters[n] = parameters
        self.backend.run_submit(self.workspace, RunSubmission(
            run_id=child_id, experiment_name=self.info.experiment_name,
            target=definition["target"], definition=definition,
            snapshot_id=definition.get("snapshotId")))
        self.log(f"[hyperdrive] trial {n} ({child_id}) submitted: {text}")

    # --- early termination ---------------------------------------------------------------------
    def judge(self, children: dict[int, Any]) -> None:
        histories = {n: TrialHistory(n, self.values(n, info),
                                     info.status in _TERMINAL or n in self.stopped)
                     for n, info in children.items()}
        for n in sorted(children):
            history = histories[n]
            if history.final:
                continue
            earlier = [histories[m] for m in sorted(histories) if m < n]
            k = self.judged.get(n, 0)
            for point in range(k + 1, len(history.values) + 1):
                if not self.policy.is_evaluation_point(point):
                    continue
                decision = decide(self.policy, self.maximize, n, point, history.values, earlier)
                if decision.action == WAIT:
                    if self.waiting.get(n) != (point, decision.waiting_for):
                        self.waiting[n] = (point, decision.waiting_for)
                        self.log(f"[hyperdrive] trial {n} at interval {point} waits for trial(s) "
                                 f"{list(decision.waiting_for)} to reach it")
                    break
                if decision.action == STOP:
                    self.stop(n, point, decision.reason)
                    histories[n] = TrialHistory(n, history.values[:point], True)
                    break
                self.judged[n] = point
                self.open_gate(n, point)

    def open_gate(self, n: int, point: int) -> None:
        gate = self.local.run_dir(self.workspace, self.trials.get(n, f"{self.run_id}_{n}"))
        path = gate / GATE_FILE
        tmp = gate / f".{GATE_FILE}.tmp"
        tmp.write_text(str(point))
        os.replace(tmp, path)

    def stop(self, n: int, point: int, reason: str) -> None:
        self.stopped[n] = point
        child_id = self.trials.get(n, f"{self.run_id}_{n}")
        self.store.add_properties(child_id, {STOPPED_PROPERTY: str(point)})
        self.log(f"[hyperdrive] {reason}")
        if not self.local.cancel_with_error(self.workspace, child_id, {"error": {
                "code": "EarlyTerminated", "message": reason}}):
            self.log(f"[hyperdrive] trial {n} had already ended when it was stopped")

    def cancel_active(self, error: dict[str, Any], children: dict[int, Any] | None = None
                      ) -> None:
        for n, info in sorted((children if children is not None else self.children()).items()):
            if info.status not in _TERMINAL:
                self.local.cancel_with_error(self.workspace, info.id, {"error": error})

    # --- the end -------------------------------------------------------------------------------
    def finish(self, children: dict[int, Any], ended_by: str | None) -> None:
        statuses = {n: info.status for n, info in children.items()}
        failed = sorted(n for n, s in statuses.items() if s == "Failed")
        stopped = sorted(n for n in self.stopped if statuses.get(n) == "Canceled")
        completed = sorted(n for n, s in statuses.items() if s == "Completed")
        canceled = sorted(n for n, s in statuses.items() if s == "Canceled" and n not in stopped)
        best = None
        for n, info in sorted(children.items()):
            values = [v for v in self.values(n, info) if v is not None]
            if values:
                value = max(values) if self.maximize else min(values)
                if best is None or (value > best[0] if self.maximize else value < best[0]):
                    best = (value, n, info.id)
        summary = {"simml.trials": str(len(children)), "simml.completedTrials": str(len(completed)),
                   "simml.failedTrials": str(len(failed)),
                   "simml.stoppedTrials": str(len(stopped)),
                   "simml.canceledTrials": str(len(canceled))}
        if best is not None:
            summary["simml.bestChildRunId"] = best[2]
        self.store.add_properties(self.run_id, summary)
        self.log(f"[hyperdrive] {len(children)} trial(s): {len(completed)} completed, "
                 f"{len(stopped)} stopped by the policy, {len(failed)} failed"
                 + (f" (trials {failed})" if failed else "")
                 + f", {len(canceled)} canceled")
        if best is not None:
            self.log(f"[hyperdrive] best trial: {best[1]} ({best[2]}), {self.metric} = {best[0]:g}")
        else:
            self.log(f"[hyperdrive] no trial logged the primary metric {self.metric!r}")
        if ended_by == "canceled":
            self.transition(CancelRequested())
            self.transition(Canceled())
            self.log("Run canceled.")
        elif ended_by == "timeout":
            error = {"code": "MaxDurationExceeded", "message": (
                f"The sweep reached max_duration_minutes={self.max_seconds / 60:g}; "
                f"{len(children)} of {self.total} trial(s) were started.")}
            self.transition(CancelRequested())
            self.transition(Canceled(), {"error": error})
        elif children and len(failed) == len(children):
            error = {"code": "AllTrialsFailed", "message": (
                f"Every trial of the sweep failed ({len(failed)}); see the children's errors, "
                f"e.g. {children[failed[0]].id}.")}
            self.transition(ExecutionEnded(success=False, error=error))
            self.transition(Failed(error), {"error": error})
        else:
            self.transition(ExecutionEnded(success=True))
            self.log("The activity completed successfully. Finalizing run...")
            self.transition(Completed())
        self.local.exec_update(self.workspace, self.run_id, stage="done")
