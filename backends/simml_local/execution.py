"""Execution on the local backend: snapshots, submit/observe/cancel, and the stage hooks.

``simml_run_submit`` starts a detached runner process (``simml_local.runner``) that outlives the
client; the runner drives the stage hooks below through the plugin manager, so another plug-in can
take over a stage (the Docker runtime takes ``execute``). Only the runner writes a submitted run's
statuses; a client asks for cancellation through a flag in ``run_exec``, and ``observe`` marks a run
Failed when its runner died (so nothing stays Running forever).

Per run, ``<workspace>/runs/<run id>/`` holds the job's working directory (``wd/``, a copy of the
snapshot), its journal (``journal.jsonl``, what the job logs through ``simml.job``) and the
runner's own log; the driver log streamed to clients is the run file
``azureml-logs/70_driver_log.txt``, appended live.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from simml.clock import clock_now
from simml.entities import (
    Allocation,
    ExecutionResult,
    PreparedEnvironment,
    RunHandle,
    RunObservation,
    RunSubmission,
    StageContext,
    UploadItem,
    WorkspaceInfo,
)
from simml.exceptions import NotFoundException, UserErrorException
from simml.plugins import hookimpl
from simml_local.files import list_tree, upload_tree
from simml_local.store import write_transaction

DRIVER_LOG = "azureml-logs/70_driver_log.txt"
STD_LOG = "user_logs/std_log.txt"
TERMINAL = ("Completed", "Failed", "Canceled")
HEARTBEAT_SECONDS = 1.0
MAX_WAIT_SECONDS = 0.5
LEASE_SECONDS = 10.0
LAUNCHING = "launching"
LAUNCH_SECONDS = 15.0
"""How long a runner being launched holds the lease for itself before another is started."""
"""A runner renews its workspace lease well within this; a dead runner's lease lapses."""
DEAD_AFTER_SECONDS = 10.0
POLL_SECONDS = 0.05


def process_identity(pid: int) -> str | None:
    """``pid:start time`` from /proc, so a reused pid is not mistaken for our process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == b"Z":  # a zombie is dead
        return None
    return f"{pid}:{fields[19].decode()}"


class LocalExecution:
    """Mixin of ``LocalBackend``: submission, observation, cancellation and the stages."""

    root: Any
    store: Any

    # --- paths ---------------------------------------------------------------------------------
    def run_dir(self, workspace: WorkspaceInfo, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id in (".", ".."):
            raise UserErrorException(f"Invalid run id {run_id!r}.")
        return self.root(workspace) / "runs" / run_id

    def snapshot_dir(self, workspace: WorkspaceInfo, snapshot_id: str) -> Path:
        return self.root(workspace) / "snapshots" / snapshot_id

    def driver_log_path(self, workspace: WorkspaceInfo, run_id: str) -> Path:
        return self.root(workspace) / "artifacts" / run_id / DRIVER_LOG

    def now(self, workspace: WorkspaceInfo) -> datetime:
        return clock_now(self.simml_clock_get(workspace), datetime.now(timezone.utc))

    # --- run_exec bookkeeping ------------------------------------------------------------------
    def exec_row(self, workspace: WorkspaceInfo, run_id: str) -> dict[str, Any] | None:
        row = self.store(workspace).connection().execute(
            "SELECT runner_pid, job_pid, heartbeat, stage, cancel_requested, detail FROM run_exec "
            "WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        keys = ("runner_pid", "job_pid", "heartbeat", "stage", "cancel_requested", "detail")
        return dict(zip(keys, row))

    def exec_update(self, workspace: WorkspaceInfo, run_id: str, **values: Any) -> None:
        columns = ", ".join(f"{k} = ?" for k in values)
        con = self.store(workspace).connection()
        with write_transaction(con):
            con.execute(f"UPDATE run_exec SET {columns} WHERE run_id = ?",
                        (*values.values(), run_id))

    # --- hooks: snapshot, submit, observe, cancel ----------------------------------------------
    @hookimpl
    def simml_snapshot_create(self, workspace: WorkspaceInfo, items: tuple[UploadItem, ...]
                              ) -> str:
        import uuid
        snapshot_id = str(uuid.uuid4())
        folder = self.snapshot_dir(workspace, snapshot_id)
        if items:
            upload_tree(folder, items, overwrite=True)
        else:
            folder.mkdir(parents=True, exist_ok=True)
        return snapshot_id

    @hookimpl
    def simml_run_submit(self, workspace: WorkspaceInfo, submission: RunSubmission) -> RunHandle:
        run_dir = self.run_dir(workspace, submission.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.driver_log_path(workspace, submission.run_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        store = self.store(workspace)
        store.register_file(submission.run_id, DRIVER_LOG)
        if submission.target != "local" and "hyperdrive" not in submission.definition:
            # (a sweep's parent takes no node: its loop runs in the runner, its children
            # queue.) The queue position is taken at submit, so runs start in submission order whatever
            # order their runners come up in.
            self.compute_queue_job(workspace, submission.target, submission.run_id)
        con = store.connection()
        with write_transaction(con):  # the runner releases its lease only with nothing pending
            con.execute("INSERT INTO run_exec (run_id, stage, heartbeat) "
                        "VALUES (?, 'submitted', ?)", (submission.run_id, time.time()))
            action = self._runner_action(con)
        self._act_on_runner(workspace, action)
        return RunHandle(submission.run_id, "local")

    def _runner_action(self, con: Any) -> tuple[str, str | None]:
        """Inside a write transaction: wake the live runner, wait for one being launched, or
        mark one as launching (so that a burst of submissions starts a single runner)."""
        holder = self.runner_holder(con)
        if holder is not None:
            return "wake", holder
        row = con.execute("SELECT holder, expires FROM leases WHERE name = 'runner'").fetchone()
        if row is not None and row[0] == LAUNCHING and row[1] >= time.time():
            return "wait", None
        con.execute("INSERT OR REPLACE INTO leases VALUES ('runner', ?, ?)",
                    (LAUNCHING, time.time() + LAUNCH_SECONDS))
        return "launch", None

    def _act_on_runner(self, workspace: WorkspaceInfo, action: tuple[str, str | None]) -> None:
        what, holder = action
        if what == "wake" and holder is not None:
            try:
                os.kill(int(holder.split(":")[0]), signal.SIGUSR1)
                return
            except ProcessLookupError:
                what = "launch"
        if what != "launch":
            return
        spec = json.dumps({"home": str(self.home), "subscription_id": workspace.subscription_id,
                           "resource_group": workspace.resource_group,
                           "workspace": workspace.name})
        runners = self.root(workspace) / "runs"
        runners.mkdir(parents=True, exist_ok=True)
        with open(runners / "runner.log", "ab") as runner_log:
            # The launcher forks the runner and exits at once; the runner is nobody's child (the
            # client may exit). A daemon thread reaps the launcher, so submit does not wait.
            launcher = subprocess.Popen(
                [sys.executable, "-m", "simml_local.runner", spec], stdin=subprocess.DEVNULL,
                stdout=runner_log, stderr=runner_log, start_new_session=True, close_fds=True)
        threading.Thread(target=launcher.wait, daemon=True).start()

    @hookimpl
    def simml_run_observe(self, workspace: WorkspaceInfo, run_id: str, cursor: int
                          ) -> RunObservation:
        store = self.store(workspace)
        status, target, error = store.run_state(run_id)  # polled: the light read
        row = self.exec_row(workspace, run_id)
        if row is not None and row["stage"] == "submitted":
            # Waiting for a runner: start one if none lives or is on its way (a failed launch).
            con = store.connection()
            with write_transaction(con):
                action = self._runner_action(con)
            if action[0] == "launch":
                self._act_on_runner(workspace, action)
        if row is not None and status not in TERMINAL:
            died = self._fail_if_runner_died(workspace, run_id, row)
            if died is not None:
                status, error = died.status, died.error
        lines, cursor = self._read_log(workspace, run_id, cursor)
        compute = None
        if target != "local" and row is not None:
            try:
                compute = self.simml_compute_status(workspace, target)
            except Exception:  # the cluster may have been deleted since
                compute = None
        return RunObservation(status=status, stage=row["stage"] if row else None,
                              log_lines=tuple(lines), cursor=cursor, compute=compute,
                              error=error)

    def _read_log(self, workspace: WorkspaceInfo, run_id: str, cursor: int
                  ) -> tuple[list[str], int]:
        path = self.driver_log_path(workspace, run_id)
        try:
            with open(path, "rb") as handle:
                handle.seek(cursor)
                data = handle.read()
        except FileNotFoundError:
            return [], cursor
        end = data.rfind(b"\n")
        if end < 0:
            return [], cursor
        chunk = data[: end + 1]
        return chunk.decode("utf-8", "replace").splitlines(), cursor + len(chunk)

    def _fail_if_runner_died(self, workspace: WorkspaceInfo, run_id: str,
                             row: dict[str, Any]) -> Any:
        identity = (json.loads(row["detail"]) if row["detail"] else {}).get("runner")
        heartbeat = row["heartbeat"]
        if identity is None:
            # Not started yet (heartbeat holds the real submit time): give it time to come up.
            if heartbeat is None or time.time() - heartbeat < DEAD_AFTER_SECONDS * 3:
                return None
        elif process_identity(int(identity.split(":")[0])) == identity:
            return None
        from simml.runstate import Failed, RunStateMachine, RunStatus
        store = self.store(workspace)
        info = store.get_run(run_id)
        if info.status in TERMINAL:
            return info
        error = {"error": {"code": "RunnerDied", "message": (
            f"The simml runner process of this run ({identity or 'never started'}) is gone; "
            "the run cannot finish. It was probably killed (SIGKILL, machine restart).")}}
        machine = RunStateMachine(run_id, RunStatus(info.status))
        for transition in machine.handle(Failed(error["error"]), self.now(workspace)):
            info = store.set_run_status(run_id, transition.new.value, transition.at, error)
        self.exec_update(workspace, run_id, stage="dead")
        return info

    @hookimpl
    def simml_run_cancel(self, workspace: WorkspaceInfo, run_id: str) -> bool | None:
        row = self.exec_row(workspace, run_id)
        if row is None:
            return None  # an interactive run: the client records its own statuses
        info = self.store(workspace).get_run(run_id)
        if info.status in TERMINAL:
            raise UserErrorException(
                f"Run {run_id} is already {info.status}; only an active run can be canceled.")
        self.exec_update(workspace, run_id, cancel_requested=1)
        runner = (json.loads(row["detail"]) if row["detail"] else {}).get("runner")
        if runner and process_identity(int(runner.split(":")[0])) == runner:
            try:
                os.kill(int(runner.split(":")[0]), signal.SIGUSR1)
            except ProcessLookupError:
                pass
        return True

    def cancel_requested(self, workspace: WorkspaceInfo, run_id: str) -> bool:
        row = self.exec_row(workspace, run_id)
        return bool(row and row["cancel_requested"])

    def cancel_with_error(self, workspace: WorkspaceInfo, run_id: str,
                          error: dict[str, Any]) -> bool:
        """Cancel a submitted run recording why: it ends Canceled with ``error`` (``{"error":
        {...}}``), e.g. a sweep's early-termination policy. False if it had already ended."""
        con = self.store(workspace).connection()
        with write_transaction(con):
            row = con.execute("SELECT detail FROM run_exec WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return False
            detail = json.loads(row[0]) if row[0] else {}
            detail["cancelError"] = error
            con.execute("UPDATE run_exec SET detail = ? WHERE run_id = ?",
                        (json.dumps(detail), run_id))
        try:
            return bool(self.simml_run_cancel(workspace, run_id))
        except UserErrorException:  # it ended meanwhile
            return False

    def cancel_error(self, workspace: WorkspaceInfo, run_id: str) -> dict[str, Any] | None:
        """The error a cancel request recorded (``cancel_with_error``), if any."""
        row = self.exec_row(workspace, run_id)
        detail = json.loads(row["detail"]) if row and row["detail"] else {}
        return detail.get("cancelError")

    # --- stages --------------------------------------------------------------------------------
    @hookimpl(trylast=True)
    def simml_stage_prepare(self, context: StageContext, log: Callable[[str], None]
                            ) -> PreparedEnvironment:
        environment = context.definition.get("environment") or {}
        runtime, why = self.run_runtime(context)  # type: ignore[attr-defined] # runtimes.py
        self.store(context.workspace).add_properties(context.run_id, {"simml.runtime": runtime})
        if runtime == "docker":
            return self.prepare_docker(context, log, why)  # type: ignore[attr-defined]
        if (environment.get("python") or {}).get("userManagedDependencies") is False:
            from simml_local.environments import EnvironmentBuilder
            return EnvironmentBuilder(self.home).prepare(  # type: ignore[attr-defined]
                environment, log,
                source_dir=self.snapshot_dir(context.workspace, context.snapshot_id or ""),
                should_cancel=lambda: self.cancel_requested(context.workspace, context.run_id))
        log(f"[preparing] environment {environment.get('name', 'default-environment')}: "
            "user-managed, the current interpreter")
        return PreparedEnvironment(runtime="process", environment_key="current-interpreter",
                                   cached=True, details={"python": sys.executable})

    @hookimpl(trylast=True)
    def simml_stage_scale(self, context: StageContext, log: Callable[[str], None]) -> Allocation:
        workspace, name, run_id = context.workspace, context.target, context.run_id
        if name == "local":
            return Allocation("local", "localhost", os.cpu_count() or 1, _host_memory_gb())
        self.compute_queue_job(workspace, name, run_id)
        seen_log = 0
        woken = self.scale_waiters.setdefault(run_id, threading.Event())
        try:
            while True:
                woken.clear()
                state, assignment, upcoming, now = self.compute_job_view(workspace, name, run_id)
                for line in state.log[seen_log:]:
                    log(line)
                seen_log = len(state.log)
                if assignment is not None:
                    cores, memory = self.compute_effective_resources(workspace, name)
                    log(f"[scaling] {run_id} got node {assignment.node_id}")
                    return Allocation(name, assignment.node_id, cores, memory)
                if self.cancel_requested(workspace, run_id):
                    self._release_nodes(workspace, name, run_id, canceled=True)
                    raise RunCanceled()
                self.heartbeat(workspace, run_id)
                woken.wait(self._wait_seconds(workspace, upcoming, now))
        finally:
            self.scale_waiters.pop(run_id, None)

    @property
    def run_end_listeners(self) -> set[threading.Event]:
        """Events set whenever a run driven by this runner ends (a sweep loop waits on one)."""
        return self.__dict__.setdefault("_run_end_listeners", set())

    def notify_run_ended(self) -> None:
        for listener in list(self.run_end_listeners):
            listener.set()

    @property
    def scale_waiters(self) -> dict[str, threading.Event]:
        """The queued runs of this runner, each woken when a node it was given is freed here, so
        it starts at once instead of polling, and the others do not all wake to read the cluster
        (nodes are freed by the one runner of the workspace; other processes' changes and the
        clock are caught by the bounded wait)."""
        return self.__dict__.setdefault("_scale_waiters", {})

    @property
    def released_runs(self) -> set[str]:
        """Runs whose nodes were freed when their job ended (postprocess need not free them)."""
        return self.__dict__.setdefault("_released_runs", set())

    def _release_nodes(self, workspace: WorkspaceInfo, name: str, run_id: str,
                       canceled: bool = False) -> None:
        if not canceled:
            self.released_runs.add(run_id)
        if canceled:
            self.compute_cancel_job(workspace, name, run_id)
        else:
            self.compute_finish_job(workspace, name, run_id)
        waiters = self.scale_waiters
        if waiters:
            assigned = self.compute_state(workspace, name).assignments
            for waiting_run, woken in list(waiters.items()):
                if waiting_run in assigned:
                    woken.set()

    def _wait_seconds(self, workspace: WorkspaceInfo, upcoming: datetime | None,
                      now: datetime) -> float:
        """Real seconds to wait before the cluster can change on its own (bounded), given the
        next simulated change and the simulated now read with it."""
        state = self.simml_clock_get(workspace)
        if state.kind == "manual":
            return POLL_SECONDS  # a manual clock moves when a test says so: look often
        if upcoming is None:
            return MAX_WAIT_SECONDS
        delta = (upcoming - now).total_seconds() / state.factor
        return min(max(delta, 0.005), MAX_WAIT_SECONDS)

    @hookimpl(trylast=True)
    def simml_stage_execute(self, context: StageContext, environment: PreparedEnvironment,
                            allocation: Allocation, log: Callable[[str], None]
                            ) -> ExecutionResult:
        from simml_local.limits import JobLimits
        workspace, run_id = context.workspace, context.run_id
        run_dir = self.run_dir(workspace, run_id)
        wd = run_dir / "wd"
        if wd.exists():
            shutil.rmtree(wd)
        snapshot = self.snapshot_dir(workspace, context.snapshot_id or "")
        shutil.copytree(snapshot, wd, symlinks=True)
        journal = run_dir / "journal.jsonl"
        try:  # data references: a mount is the datastore folder, a download a private copy
            references = self.resolve_data_references(workspace, context.definition, run_dir)
        except NotFoundException as exc:
            log(f"[running] {exc}")
            return ExecutionResult(exit_code=None, error={
                "code": "DataReferenceNotFound", "message": f"{exc} The script was not started."})
        if environment.runtime == "docker":  # the job runs in a container: docker_runtime.py
            from simml_local.docker_runtime import execute_in_container
            return execute_in_container(self, context, environment, allocation, log, references)
        arguments = [references.argument(a) for a in context.definition.get("arguments", [])]
        command = [environment.details.get("python", sys.executable),
                   context.definition["script"], *arguments]
        env = self.job_environment(context, journal)
        env.update(environment.details.get("environment_variables") or {})
        python = Path(environment.details.get("python", sys.executable))
        if environment.runtime == "process" and (python.parent.parent / "pyvenv.cfg").exists():
            env["VIRTUAL_ENV"] = str(python.parent.parent)  # the job's PATH finds the venv first
            env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
        env.update(references.environment)
        log(f"[running] on {allocation.node_id} ({allocation.v_cpus} cores, "
            f"{allocation.memory_gb:g} GB): {' '.join(command[1:])}")
        std_log = self.open_std_log(workspace, run_id)
        limits = JobLimits.for_job(run_id, allocation.v_cpus, int(allocation.memory_gb * 2**30),
                                   **self.limits_options())
        log(f"[running] {limits.describe()}")
        try:
            process = self._start_job(command, wd, env, limits, environment.runtime, log)
        except BaseException:
            limits.cleanup()
            raise
        self.exec_update(workspace, run_id, job_pid=process.pid)
        tail: list[str] = []

        def pump() -> None:
            assert process.stdout is not None
            with open(std_log, "ab") as user_log:
                for raw in process.stdout:
                    user_log.write(raw)
                    user_log.flush()
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    log(line)
                    tail.append(line)
                    del tail[:-50]

        reader_thread = threading.Thread(target=pump, daemon=True)
        reader_thread.start()
        watch = JobWatch(self, context, journal, run_dir, log, "job")
        ended = ExitWatch(process)
        while True:
            if ended.wait(POLL_SECONDS):  # wakes the moment the job ends
                break
            if watch.tick():
                _stop_group(process)
        ended.close()
        if context.target != "local":  # the node is free once the job has ended: the next queued
            self._release_nodes(workspace, context.target, run_id)  # run starts meanwhile
        reader_thread.join(timeout=5)
        watch.ingest()
        canceled, timed_out, max_seconds = watch.canceled, watch.timed_out, watch.max_seconds
        code = process.returncode
        signal_number = -code if code is not None and code < 0 else None
        try:
            out_of_memory = limits.out_of_memory(code, tail)
        finally:
            limits.cleanup()  # the job has ended: its groups go (a leftover child moves out)
        how = f"{limits.oom_reason}" if out_of_memory else ""
        return references.check_mounts(log, job_outcome(
            code, signal_number, canceled=canceled, timed_out=timed_out, max_seconds=max_seconds,
            out_of_memory=how, allocation=allocation, tail=tail))

    def _start_job(self, command: list[str], wd: Path, env: dict[str, str], limits: Any,
                   runtime: str, log: Callable[[str], None]) -> Any:
        """The job's process: forked by a warm interpreter (``warmstart``: no interpreter
        start-up per job) unless ``SIMML_JOB_START=exec``; else, or when the job's interpreter
        cannot host a warm one (older than 3.9, say), ``python script ...`` spawned with vfork
        behind the limits' ``/bin/sh`` prefix."""
        from simml_local import warmstart
        if runtime == "process" and warmstart.enabled():
            starts = self.__dict__.get("_warm_starts")
            if starts is None:
                starts = self.__dict__.setdefault("_warm_starts", warmstart.WarmStarts())
            try:
                return starts.spawn(command[0], env, command[1], command[2:], str(wd),
                                    limits.warm_limits())
            except OSError as exc:
                log(f"[running] no warm start ({' '.join(str(exc).split())[:300]}); "
                    "starting a new interpreter")
        limited, preexec = limits.spawn(command)
        return subprocess.Popen(
            limited, cwd=wd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)

    def open_std_log(self, workspace: WorkspaceInfo, run_id: str) -> Path:
        """The job's own output file (``user_logs/std_log.txt``), listed among the run's files
        from the moment the job starts, as on Azure: clients that stream the highest-priority
        log (the real azureml client does) follow it from the job's first line, instead of
        switching to it at the end and printing the output a second time."""
        std_log = self.root(workspace) / "artifacts" / run_id / STD_LOG
        std_log.parent.mkdir(parents=True, exist_ok=True)
        std_log.touch()
        self.store(workspace).register_file(run_id, STD_LOG)
        return std_log

    def resolve_data_references(self, workspace: WorkspaceInfo, definition: dict[str, Any],
                                run_dir: Path) -> "ResolvedReferences":
        """Every data reference of a run (its arguments and ``dataReferences``) as local paths,
        with a snapshot of each mounted path so that writes to it are detected afterwards."""
        configs = dict(definition.get("dataReferences") or {})
        for value in definition.get("arguments") or []:
            if isinstance(value, dict) and "dataReference" in value:
                configs.setdefault(value["dataReference"]["name"], value["dataReference"])
        resolved = ResolvedReferences()
        for name, config in configs.items():
            path = self.resolve_data_reference(workspace, config, run_dir)
            resolved.paths[name] = path
            if config.get("mode", "mount") == "mount":
                label = f"{config['dataStoreName']}/{config.get('pathOnDataStore') or ''}"
                resolved.mounts.append(MountGuard(label, Path(path)))
        return resolved

    def resolve_data_reference(self, workspace: WorkspaceInfo, reference: dict[str, Any],
                               run_dir: Path) -> str:
        """A data reference as a local path: the datastore folder (mount) or a private copy."""
        from simml_local.files import download_tree, safe_join
        root = self.datastore_root(workspace, reference["dataStoreName"])
        path = reference.get("pathOnDataStore") or ""
        source = safe_join(root, path)
        if not source.exists():
            raise NotFoundException(
                f"Data reference {reference['dataStoreName']}/{path}: no such file or folder.")
        if reference.get("mode") == "download":
            target = run_dir / "data" / reference["name"]
            download_tree(root, path or None, target, overwrite=True, blob_prefix=False)
            return str(target / path) if path else str(target)
        return str(source)

    def job_environment(self, context: StageContext, journal: Path) -> dict[str, str]:
        workspace = context.workspace
        env = dict(os.environ)
        for key in [k for k in env if k.startswith(("AZUREML_", "SIMML_RUN_"))]:
            del env[key]
        offset = (self.now(workspace) - datetime.now(timezone.utc)).total_seconds()
        env.update({
            "AZUREML_RUN_ID": context.run_id,
            "AZUREML_EXPERIMENT_NAME": context.experiment_name,
            "AZUREML_ARM_SUBSCRIPTION": workspace.subscription_id,
            "AZUREML_ARM_RESOURCEGROUP": workspace.resource_group,
            "AZUREML_ARM_WORKSPACE_NAME": workspace.name,
            "AZUREML_ARM_PROJECT_NAME": context.experiment_name,
            "AZUREML_WORKSPACE_ID": workspace.workspace_id,
            "AZUREML_SERVICE_ENDPOINT": "simml://local",
            "AZUREML_RUN_TOKEN": "simml-local",
            "AZUREML_COMPUTE_NAME": context.target,
            "SIMML_RUN_JOURNAL": str(journal),
            "SIMML_JOB_CLOCK_OFFSET": repr(offset),
            "PYTHONUNBUFFERED": "1",
        })
        env.update({str(k): str(v) for k, v in
                    (context.definition.get("environmentVariables") or {}).items()})
        return env

    def limits_options(self) -> dict[str, Any]:
        """This process's cgroup layout, read once (it cannot change under a running process),
        and whether to sweep stale groups of killed runners: for the first job only."""
        from simml_local.limits import CgroupLayout
        cached = self.__dict__.get("_cgroup_layout")
        if cached is None:
            self.__dict__["_cgroup_layout"] = CgroupLayout.current()
            return {"layout": self.__dict__["_cgroup_layout"], "sweep_stale": True}
        return {"layout": cached, "sweep_stale": False}

    def heartbeat(self, workspace: WorkspaceInfo, run_id: str) -> None:
        beats = self.__dict__.setdefault("_heartbeats", {})  # one runner drives many runs
        now = time.time()
        if now - beats.get(run_id, 0.0) >= HEARTBEAT_SECONDS:
            self.exec_update(workspace, run_id, heartbeat=now)
            beats[run_id] = now

    # --- the runner lease: one runner process per workspace drives every submitted run ---------
    def runner_holder(self, con: Any) -> str | None:
        """The identity of the live runner holding the workspace's lease, if any."""
        row = con.execute("SELECT holder, expires FROM leases WHERE name = 'runner'").fetchone()
        if row is None or row[1] < time.time() or row[0] == LAUNCHING:
            return None
        holder = row[0]
        return holder if process_identity(int(holder.split(":")[0])) == holder else None

    def runner_lease(self, workspace: WorkspaceInfo, identity: str) -> bool:
        """Take or renew the lease; False when another live runner holds it."""
        con = self.store(workspace).connection()
        with write_transaction(con):
            holder = self.runner_holder(con)
            if holder not in (None, identity):
                return False
            con.execute("INSERT OR REPLACE INTO leases VALUES ('runner', ?, ?)",
                        (identity, time.time() + LEASE_SECONDS))
        return True

    def runner_claim(self, workspace: WorkspaceInfo, identity: str) -> list[str]:
        """Submitted runs this runner now owns, in submission order."""
        con = self.store(workspace).connection()
        if con.execute("SELECT 1 FROM run_exec WHERE stage = 'submitted' LIMIT 1").fetchone() \
                is None:
            return []  # the common case: a read, no write transaction
        with write_transaction(con):
            # heartbeat holds the submit time until a runner claims the run
            run_ids = [r[0] for r in con.execute(
                "SELECT run_id FROM run_exec WHERE stage = 'submitted' ORDER BY heartbeat, run_id")]
            # json_set keeps what the detail already holds (a cancel's reason, recorded before
            # a runner claimed the run).
            con.executemany(
                "UPDATE run_exec SET stage = 'claimed', runner_pid = ?, heartbeat = ?, "
                "detail = json_set(COALESCE(detail, '{}'), '$.runner', ?) WHERE run_id = ?",
                [(int(identity.split(":")[0]), time.time(), identity, run_id)
                 for run_id in run_ids])
        return run_ids

    def runner_release(self, workspace: WorkspaceInfo, identity: str) -> bool:
        """Give the lease up, unless a run was submitted meanwhile (then keep serving)."""
        con = self.store(workspace).connection()
        with write_transaction(con):
            if con.execute("SELECT 1 FROM run_exec WHERE stage = 'submitted' LIMIT 1").fetchone():
                return False
            con.execute("DELETE FROM leases WHERE name = 'runner' AND holder = ?", (identity,))
        return True

    @hookimpl(trylast=True)
    def simml_stage_postprocess(self, context: StageContext, result: ExecutionResult,
                                log: Callable[[str], None]) -> bool:
        workspace, run_id = context.workspace, context.run_id
        wd = self.run_dir(workspace, run_id) / "wd"
        store = self.store(workspace)
        count = 0
        for folder in ("outputs", "logs"):
            base = wd / folder
            if not base.is_dir():
                continue
            for relative in list_tree(base):
                with open(base / relative, "rb") as source:
                    store.upload_file(run_id, f"{folder}/{relative}", source)
                count += 1
        log(f"[finalizing] {count} files from ./outputs and ./logs copied to run history")
        if (self.root(workspace) / "artifacts" / run_id / STD_LOG).exists():
            store.register_file(run_id, STD_LOG)
        if context.target != "local" and run_id not in self.released_runs:
            self._release_nodes(workspace, context.target, run_id)  # a runtime that did not
        self.released_runs.discard(run_id)
        return True


class RunCanceled(Exception):
    """Raised inside the runner when a cancel request stops a stage."""


class MountGuard:
    """A mounted path the job must not change.

    The process runtime cannot bind-mount a folder read-only (and the job runs as whoever runs
    simml, root included), so writes are detected rather than prevented: every file and folder
    under the path is recorded (size, mtime_ns) before the job starts and compared after it ends.
    Any modified, added or removed entry fails the run. Limits: the datastore has already been
    changed by then, and a concurrent upload into the same path is reported too (the runtime
    cannot tell who wrote). See docs/seed.md.
    """

    def __init__(self, label: str, path: Path) -> None:
        self.label = label
        self.path = path
        self.before = self.scan()

    def scan(self) -> dict[str, tuple[int, int]]:
        from simml._paths import TMP_PREFIX
        entries: dict[str, tuple[int, int]] = {}
        try:
            top = os.lstat(self.path)
        except FileNotFoundError:
            return entries
        if not os.path.isdir(self.path):
            return {self.path.name: (top.st_size, top.st_mtime_ns)}
        for folder, dirs, files in os.walk(self.path):
            rel_dir = os.path.relpath(folder, self.path)
            prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
            for name in dirs:
                entries[f"{prefix}{name}/"] = (0, 0)  # a folder: only its existence counts
            for name in files:
                if name.startswith(TMP_PREFIX):
                    continue
                try:
                    info = os.lstat(os.path.join(folder, name))
                except FileNotFoundError:
                    continue
                entries[prefix + name] = (info.st_size, info.st_mtime_ns)
        return entries

    def changes(self) -> list[str]:
        after = self.scan()
        changed = [f"{name} (modified)" for name, stat in after.items()
                   if name in self.before and self.before[name] != stat]
        changed += [f"{name} (added)" for name in after if name not in self.before]
        changed += [f"{name} (removed)" for name in self.before if name not in after]
        return sorted(changed)


class ResolvedReferences:
    """The data references of one job: local paths by name, their environment variables
    (Azure's ``AZUREML_DATAREFERENCE_<name>``), and the guards of the mounted ones."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.mounts: list[MountGuard] = []

    @property
    def environment(self) -> dict[str, str]:
        return {f"AZUREML_DATAREFERENCE_{name}": path for name, path in self.paths.items()}

    def argument(self, value: Any) -> str:
        if isinstance(value, dict) and "dataReference" in value:
            return self.paths[value["dataReference"]["name"]]
        text = str(value)
        if "$AZUREML_DATAREFERENCE_" in text:  # str(reference) inside an argument, as Azure
            for name, path in self.paths.items():
                text = text.replace(f"$AZUREML_DATAREFERENCE_{name}", path)
        return text

    def check_mounts(self, log: Callable[[str], None], result: ExecutionResult
                     ) -> ExecutionResult:
        """Fail a run whose job changed a read-only mount (unless it was canceled)."""
        import dataclasses
        problems = []
        for guard in self.mounts:
            changed = guard.changes()
            if changed:
                shown = ", ".join(changed[:10]) + (
                    f" and {len(changed) - 10} more" if len(changed) > 10 else "")
                problems.append(f"the job wrote to read-only mount {guard.label}: {shown}")
        if not problems or result.canceled:
            return result
        message = ("; ".join(problems) + ". A mounted data reference is read-only: write to "
                   "./outputs, or use as_download() for a private copy.")
        log(f"[running] {message}")
        if result.error:
            message += f"\n{result.error.get('message', '')}"
        # The script's own exit code no longer decides the outcome: exit_code None marks a run
        # that failed outside the script (ExecutionResult.succeeded needs exit code 0).
        return dataclasses.replace(result, exit_code=None, error={
            "code": "ReadOnlyMountWritten", "message": message})


def job_outcome(code: int | None, signal_number: int | None, *, canceled: bool,
                timed_out: bool, max_seconds: Any, out_of_memory: str, allocation: Allocation,
                tail: list[str]) -> ExecutionResult:
    """How a job ended, as a run's result: one wording for the process and Docker runtimes.
    ``out_of_memory`` says how the overrun was recognised ("" when it was not)."""
    error = None
    if canceled:
        error = None
    elif timed_out:
        error = {"code": "RunTimeout", "message": (
            f"The run exceeded max_run_duration_seconds={max_seconds} and was stopped.")}
    elif out_of_memory:
        error = {"code": "OutOfMemory", "message": (
            f"The job ran out of memory: it may use {allocation.memory_gb:g} GB on a "
            f"node of this compute target ({allocation.compute}), and {out_of_memory}.\n"
            + "\n".join(tail[-20:]))}
    elif signal_number is not None:
        name = signal.Signals(signal_number).name if signal_number in signal.valid_signals() \
            else str(signal_number)
        error = {"code": "KilledBySignal", "message": (
            f"The script was killed by signal {name}.\n" + "\n".join(tail[-20:]))}
    elif code != 0:
        error = {"code": "UserError", "message": (
            f"The script exited with code {code}.\n" + "\n".join(tail[-30:]))}
    return ExecutionResult(exit_code=code, signal=signal_number, out_of_memory=bool(out_of_memory),
                           canceled=canceled, timed_out=timed_out, error=error)


class JobWatch:
    """What both runtimes do while a job runs, each tick: ingest the job's new journal lines,
    beat the run's heartbeat, and say when to stop the job (a cancel request, or
    ``max_run_duration_seconds`` passed on the workspace clock), logging why, once."""

    def __init__(self, local: "LocalExecution", context: StageContext, journal: Path,
                 run_dir: Path, log: Callable[[str], None], what: str) -> None:
        from simml_local.journal import JournalReader
        self.local, self.context, self.run_dir, self.log, self.what = (
            local, context, run_dir, log, what)
        self.reader = JournalReader(journal)
        self.store = local.store(context.workspace)
        self.canceled = self.timed_out = False
        self.max_seconds = context.definition.get("maxRunDurationSeconds")
        self.started = local.now(context.workspace)

    def ingest(self) -> None:
        from simml_local.journal import ingest
        ingest(self.reader.read_new(), self.store, self.context.run_id, files_root=self.run_dir)

    def tick(self) -> bool:
        """Ingest and beat; True when the job must be stopped now (once per reason)."""
        workspace, run_id = self.context.workspace, self.context.run_id
        self.ingest()
        self.local.heartbeat(workspace, run_id)
        if not self.canceled and self.local.cancel_requested(workspace, run_id):
            self.canceled = True
            self.log(f"[running] cancel requested: stopping the {self.what}")
            return True
        if (not self.timed_out and not self.canceled and self.max_seconds and
                (self.local.now(workspace) - self.started).total_seconds() > self.max_seconds):
            self.timed_out = True
            self.log(f"[running] the run exceeded max_run_duration_seconds={self.max_seconds}")
            return True
        return False


class ExitWatch:
    """Waits for a job process to end and wakes the moment it does: on a pidfd where the kernel
    has them (Linux 5.3+), since ``Popen.wait(timeout)`` sleeps in steps of up to 50 ms and every
    run on a busy node would pay that delay before the next one starts."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.poller: select.poll | None = None
        self.fd: int | None = None
        self.poller = select.poll()
        exit_fd = getattr(process, "exit_fd", None)  # a warm-started job: its exit pipe
        if exit_fd is not None:
            self.poller.register(exit_fd, select.POLLIN)
            return
        try:
            self.fd = os.pidfd_open(process.pid)
        except (AttributeError, OSError):  # no pidfd here (or the process is already reaped)
            self.poller = None
            return
        self.poller.register(self.fd, select.POLLIN)

    def wait(self, timeout: float) -> bool:
        """True once the process has ended (and been reaped), after at most ``timeout``."""
        if self.poller is None:
            try:
                self.process.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        self.poller.poll(timeout * 1000)
        return self.process.poll() is not None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = self.poller = None


def _stop_group(process: Any) -> None:
    """Stop the job's whole process tree: SIGTERM, then SIGKILL after a grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _host_memory_gb() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 4.0
