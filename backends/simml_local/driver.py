"""The local runner's driver: the detached runner process of a workspace.

One runner per workspace holds the ``runner`` lease (renewed every loop) and drives every
submitted run in a thread of its own; it exits after a few idle seconds, releasing the lease only
when nothing is pending, and the next submit starts a new one. Each run's thread drives the run through the stage hooks and the pure state machine:
NotStarted -> Starting -> Preparing -> Queued -> Running -> Finalizing -> Completed / Failed,
or CancelRequested -> Canceled when a client asks (a flag in ``run_exec`` plus SIGUSR1). It is the
only writer of the run's statuses while it lives; statuses carry the workspace clock's time.
(``simml_local.runner`` is the tiny launcher that starts it detached.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from typing import Any

from simml.entities import HYPERDRIVE_RUN_TYPE, ExecutionResult, StageContext, WorkspaceRef
from simml.exceptions import AzureMLException
from simml.plugins import Backend
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
from simml_local.execution import RunCanceled, process_identity
from simml_local.plugin import LocalBackend


IDLE_EXIT_SECONDS = 60.0
"""An idle runner lingers this long so the next submission starts at once (like a warm node)."""
LOOP_SECONDS = 0.05
RENEW_SECONDS = 1.0
"""Renew the runner lease this often (it lasts ``LEASE_SECONDS``)."""


class Runner:
    def __init__(self, backend: Backend, local: LocalBackend, workspace: Any, run_id: str,
                 info: Any = None) -> None:
        self.backend = backend
        self.local = local
        self.workspace = workspace
        self.run_id = run_id
        self.store = local.store(self.workspace)
        info = info if info is not None else self.store.get_run(self.run_id)
        self.machine = RunStateMachine(self.run_id, RunStatus(info.status))
        self.context = StageContext(
            workspace=self.workspace, run_id=self.run_id, experiment_name=info.experiment_name,
            target=info.target, definition=info.definition or {},
            snapshot_id=(info.definition or {}).get("snapshotId"))
        self.log_path = local.driver_log_path(self.workspace, self.run_id)

    def log(self, line: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")

    def transition(self, event: Any, error: dict[str, Any] | None = None,
                   stage: str | None = None) -> None:
        """Apply ``event``; write each status it makes, and ``stage`` (the runner's own
        bookkeeping of where the run is) in the same transaction as the first."""
        changes = list(self.machine.handle(event, self.local.now(self.workspace)))
        for change in changes:
            self.store.record_run_status(self.run_id, change.new.value, change.at, error,
                                         exec_stage=stage)
            stage = None
        if stage is not None:
            self.stage(stage)

    def stage(self, name: str) -> None:
        self.local.exec_update(self.workspace, self.run_id, stage=name)

    def canceled(self) -> bool:
        return self.local.cancel_requested(self.workspace, self.run_id)

    def cancel(self) -> None:
        if self.machine.status not in (RunStatus.CancelRequested, *TERMINAL):
            self.transition(CancelRequested())
        # why, when the canceller said (a sweep's early-termination policy)
        self.transition(Canceled(), self.local.cancel_error(self.workspace, self.run_id))
        self.log("Run canceled.")

    def run(self) -> None:
        self.transition(Submitted())
        if self.canceled():
            return self.cancel()
        self.transition(StageStarted(Stage.PREPARE), stage="prepare")
        environment = self.backend.stage_prepare(self.context, self.log)
        if self.canceled():
            return self.cancel()
        if self.context.target != "local":
            self.transition(StageStarted(Stage.SCALE), stage="scale")
        else:
            self.stage("scale")
        try:
            allocation = self.backend.stage_scale(self.context, self.log)
        except RunCanceled:
            return self.cancel()
        self.transition(StageStarted(Stage.EXECUTE), stage="execute")
        result = self.backend.stage_execute(self.context, environment, allocation, self.log)
        if result.canceled:
            self.transition(CancelRequested(), stage="postprocess")
        else:
            self.transition(ExecutionEnded(success=result.succeeded, error=result.error),
                            stage="postprocess")
        self.backend.stage_postprocess(self.context, result, self.log)
        self.stage("done")
        if result.canceled:
            return self.cancel()
        if result.succeeded:
            self.log("The activity completed successfully. Finalizing run...")
            self.transition(Completed())
        else:
            self.fail(result)

    def fail(self, result: ExecutionResult) -> None:
        error = result.error or {"code": "UserError", "message": "The run failed."}
        self.log(f"Run failed: {error.get('message', '').splitlines()[0] if error else ''}")
        self.transition(Failed(error), {"error": error})


def drive(backend: Backend, local: LocalBackend, workspace: Any, run_id: str) -> None:
    """Run one submitted run to a terminal status; a stage that blows up fails the run."""
    info = local.store(workspace).get_run(run_id)
    if info.run_type == HYPERDRIVE_RUN_TYPE:  # a sweep's parent: the sweep loop (imported only
        from simml_local.sweep import drive_sweep  # then: it brings simml.train.hyperdrive)
        return drive_sweep(backend, local, workspace, run_id)
    runner = Runner(backend, local, workspace, run_id, info)
    try:
        runner.run()
    except Exception as exc:
        detail = traceback.format_exc()
        if isinstance(exc, AzureMLException):  # an expected failure (a build, a bad reference)
            error = {"code": "UserError", "message": f"{type(exc).__name__}: {exc.message}"}
            runner.log(error["message"])
        else:  # a bug: keep the traceback
            error = {"code": "SystemError", "message": f"{type(exc).__name__}: {exc}\n{detail}"}
            runner.log(detail)
        if runner.machine.status not in TERMINAL:
            runner.transition(Failed(error), {"error": error})
    finally:
        local.notify_run_ended()  # a sweep loop in this runner submits its next trial at once


def serve(spec: dict[str, Any]) -> int:
    """Hold the workspace's runner lease and drive submitted runs until idle."""
    local = LocalBackend(home=spec["home"])
    backend = Backend.from_plugin(local, "local")
    workspace = backend.workspace_get(WorkspaceRef(
        name=spec["workspace"], subscription_id=spec["subscription_id"],
        resource_group=spec["resource_group"]))
    identity = process_identity(os.getpid())
    if identity is None or not local.runner_lease(workspace, identity):
        return 0  # another runner serves this workspace; it picks the run up
    wake = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: wake.set())  # a submit or a cancel
    threads: dict[str, threading.Thread] = {}
    idle_since = renewed = time.monotonic()
    while True:
        for run_id in local.runner_claim(workspace, identity):
            thread = threading.Thread(target=drive, args=(backend, local, workspace, run_id),
                                      name=f"run-{run_id}")
            thread.start()
            threads[run_id] = thread
        threads = {run_id: t for run_id, t in threads.items() if t.is_alive()}
        if threads:
            idle_since = time.monotonic()
        elif (time.monotonic() - idle_since > IDLE_EXIT_SECONDS
              and local.runner_release(workspace, identity)):
            return 0
        if time.monotonic() - renewed > RENEW_SECONDS:  # a write: not every loop
            local.runner_lease(workspace, identity)
            renewed = time.monotonic()
        wake.wait(LOOP_SECONDS)
        wake.clear()
