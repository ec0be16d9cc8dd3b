"""Warm starts: jobs forked from an interpreter that has already started, instead of a new one.

A job of the process runtime used to be ``python script.py`` started from nothing. On this kind of
machine half of a short job's CPU went into that start (interpreter, ``site``, ``.pth`` files:
about 55 ms here) before the script's first line ran, and on a busy 2-core cluster that CPU is
taken from the other node's job. A *warm interpreter* is one such start done once per runner and
interpreter: a small standard-library loop (this file, run as a script by the job's own
interpreter) that waits on a unix socket; for each job it ``fork``s, and the child becomes the job:

- new session (the runner stops the job's whole process group, as before), the job's cgroups /
  ``RLIMIT_DATA`` / CPU affinity (``apply_job_limits``, shared with the exec path's ``preexec``);
- the job's stdin (``/dev/null``) and output pipe on fds 0-2, every other inherited fd closed;
- working directory, the job's whole environment, ``sys.argv``, ``sys.orig_argv``,
  ``sys.path[0]`` (the script's real directory) and a fresh ``__main__`` as ``python script.py``
  sets them; the script runs as ``__main__``; an uncaught exception goes through
  ``sys.excepthook`` (the traceback starts at the script's frame) and exits 1, ``SystemExit`` and
  ``KeyboardInterrupt`` end it as the interpreter would; the interpreter then shuts down normally
  (``atexit``, non-daemon threads).

Only what the interpreter reads while starting is shared, so a warm interpreter is kept per
*identity*: the interpreter's path plus the job's environment without simml's per-run variables
(``AZUREML_*``, ``SIMML_RUN_*``, ``SIMML_JOB_*``), which nothing reads at start-up. A job whose
identity differs (another interpreter, a changed ``PYTHONPATH``, ``PYTHONHASHSEED`` or any other
variable) gets its own warm interpreter. What is not the same as a cold start: jobs forked from one
warm interpreter share its hash seed (``PYTHONHASHSEED``: set it to choose one), and the modules
``site`` imported are already loaded. ``SIMML_JOB_START=exec`` turns warm starts off.

The child's exit status reaches the runner through a pipe per job (the warm interpreter reaps its
children and writes the status), so ``WarmJob`` answers ``poll``/``wait`` as ``Popen`` does and
``ExitWatch`` wakes on that pipe the moment the job ends.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import socket
import sys

ENV_VAR = "SIMML_JOB_START"
"""``warm`` (default where ``fork`` exists) or ``exec`` (a new interpreter per job)."""
PER_RUN_PREFIXES = ("AZUREML_", "SIMML_RUN_", "SIMML_JOB_")
"""Variables simml sets per run; they are applied in the child, after the warm start."""
READY = b"simml-warm-ready"
MAX_SPEC = 1 << 20


# --- shared with the exec path (limits.JobLimits.preexec) -----------------------------------------

def _write_pid(path: bytes, pid: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, pid)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def apply_job_limits(memory_procs: bytes | None, cpu_procs: bytes | None, rlimit: int | None,
                     fallback: int, affinity: frozenset[int] | None) -> None:
    """Join the job's groups and set its rlimit / affinity, in the job's own process before its
    code runs. A memory group that cannot be joined falls back to ``RLIMIT_DATA`` of
    ``fallback`` bytes, so a job never runs without the memory limit it was meant to have.
    Runs between fork and exec too (``preexec_fn``): it imports nothing."""
    pid = str(os.getpid()).encode()
    if memory_procs is not None and not _write_pid(memory_procs, pid):
        rlimit = fallback
    if cpu_procs is not None:
        _write_pid(cpu_procs, pid)
    if rlimit is not None:
        try:
            hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
            value = rlimit if hard == resource.RLIM_INFINITY else min(rlimit, hard)
            resource.setrlimit(resource.RLIMIT_DATA, (value, value))  # the job cannot undo it
        except (ValueError, OSError):
            pass
    if affinity is not None:
        try:
            os.sched_setaffinity(0, affinity)
        except OSError:
            pass


def identity(python: str, env: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a warm interpreter must share with a job: the interpreter and every variable it
    could read while starting (all but simml's per-run ones)."""
    return python, tuple(sorted((k, v) for k, v in env.items()
                                if not k.startswith(PER_RUN_PREFIXES)))


def enabled() -> bool:
    choice = os.environ.get(ENV_VAR, "warm").strip().lower() or "warm"
    if choice not in ("warm", "exec"):
        raise ValueError(f"{ENV_VAR}={choice!r}: expected 'warm' or 'exec'.")
    return choice == "warm" and hasattr(os, "fork") and hasattr(socket, "send_fds")


# --- the runner's side --------------------------------------------------------------------------

class WarmJob:
    """A job forked by a warm interpreter, with the part of ``Popen``'s interface the runner
    uses: ``pid``, ``stdout``, ``returncode``, ``poll()``, ``wait(timeout)``, ``exit_fd``."""

    def __init__(self, pid: int, stdout_fd: int, exit_fd: int) -> None:
        self.pid = pid
        self.stdout = os.fdopen(stdout_fd, "rb")
        self.exit_fd = exit_fd
        self.returncode: int | None = None
        self._report = b""

    def poll(self) -> int | None:
        if self.returncode is None and self.exit_fd >= 0 and _readable(self.exit_fd, 0):
            self._read_report()
        return self.returncode

    def _read_report(self) -> None:
        chunk = os.read(self.exit_fd, 64)
        if chunk:
            self._report += chunk
            if not self._report.endswith(b"\n"):
                return
        os.close(self.exit_fd)
        self.exit_fd = -1
        if self._report.strip():
            self.returncode = os.waitstatus_to_exitcode(int(self._report))
        else:  # the warm interpreter went away before the job ended: wait for the job itself
            self.returncode = _wait_foreign(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        import subprocess
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            if self.exit_fd >= 0:
                _readable(self.exit_fd, left)
        return self.returncode  # type: ignore[return-value]


def _readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` is readable (or closed) within ``timeout`` seconds (None: wait); ``poll``,
    not ``select``, so a runner with more than 1,024 open files still works."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, timeout) * 1000))


def _wait_foreign(pid: int) -> int:
    """The end of a process that is not our child (its warm interpreter died first): wait on a
    pidfd; its exit status is lost, so it reads as killed (-SIGKILL)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return -signal.SIGKILL
    try:
        _readable(fd, None)
    finally:
        os.close(fd)
    return -signal.SIGKILL


class WarmInterpreter:
    """One warm interpreter (a child of the runner) and its control socket."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        import subprocess
        import threading
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        start_env = {k: v for k, v in env.items() if not k.startswith(PER_RUN_PREFIXES)}
        start_env["SIMML_WARM_FD"] = str(theirs.fileno())
        try:
            self.process = subprocess.Popen(
                [python, os.path.abspath(__file__)], env=start_env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=[theirs.fileno()],
                cwd="/")
        finally:
            theirs.close()
        ready = self.sock.recv(64)
        if ready != READY:
            error = self.process.stderr.read().decode("utf-8", "replace") if \
                self.process.stderr else ""
            self.close()
            raise OSError(f"the warm interpreter {python} did not start: {error[-2000:]}")
        assert self.process.stderr is not None
        self.process.stderr.close()

    def spawn(self, spec: dict[str, object]) -> WarmJob:
        """Fork one job; its output pipe and exit pipe are made here and passed over."""
        out_read, out_write = os.pipe()
        exit_read, exit_write = os.pipe()
        stdin = os.open(os.devnull, os.O_RDONLY)
        try:
            payload = json.dumps(spec).encode()
            with self.lock:
                socket.send_fds(self.sock, [payload], [stdin, out_write, exit_write])
                answer = self.sock.recv(MAX_SPEC)
        except BaseException:
            os.close(out_read)
            os.close(exit_read)
            raise
        finally:
            for fd in (stdin, out_write, exit_write):
                os.close(fd)
        reply = json.loads(answer or b'{"error": "the warm interpreter exited"}')
        if "pid" not in reply:
            os.close(out_read)
            os.close(exit_read)
            raise OSError(f"warm start failed: {reply.get('error')}")
        return WarmJob(int(reply["pid"]), out_read, exit_read)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Stop taking jobs: the warm interpreter exits once its running jobs have ended."""
        try:
            self.sock.close()
        except OSError:
            pass


class WarmStarts:
    """The runner's warm interpreters, one per identity (at most ``limit``, least recently used
    closed first; a closed one lingers only until its running jobs end)."""

    def __init__(self, limit: int = 4) -> None:
        import threading
        self.limit = limit
        self.lock = threading.Lock()
        self.interpreters: dict[object, WarmInterpreter] = {}

    def spawn(self, python: str, env: dict[str, str], script: str, arguments: list[str],
              cwd: str, limits: dict[str, object]) -> WarmJob:
        key = identity(python, env)
        with self.lock:
            warm = self.interpreters.pop(key, None)
            if warm is not None and not warm.alive():
                warm.close()
                warm = None
            if warm is None:
                warm = WarmInterpreter(python, env)
            self.interpreters[key] = warm  # most recently used last
            while len(self.interpreters) > self.limit:
                self.interpreters.pop(next(iter(self.interpreters))).close()
        return warm.spawn({"python": python, "env": env, "script": script, "args": arguments,
                           "cwd": cwd, "limits": limits})

    def close(self) -> None:
        with self.lock:
            for warm in self.interpreters.values():
                warm.close()
            self.interpreters.clear()


# --- the warm interpreter (this file run as a script, standard library only) ----------------------

def _serve(control: socket.socket) -> tuple[dict, list[int]] | None:
    """Fork a child per request; in the parent, reap children and report their exit status.
    Returns only in a child: its spec and fds. Ends (None) when the runner closes the socket and
    the last child has been reported."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd is written
    reports: dict[int, int] = {}
    open_control = True
    control.send(READY)
    while open_control or reports:
        watched = [wake_read] + ([control] if open_control else [])
        ready, _, _ = select.select(watched, [], [])
        if wake_read in ready:
            try:
                while os.read(wake_read, 512):
                    pass
            except BlockingIOError:
                pass
            _reap(reports)
        if control not in ready:
            continue
        try:
            payload, fds, _, _ = socket.recv_fds(control, MAX_SPEC, 3)
        except OSError:
            payload, fds = b"", []
        if not payload:
            open_control = False
            control.close()
            continue
        try:
            spec = json.loads(payload)
            stdin, out, exit_write = fds
        except (ValueError, TypeError) as exc:
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"error": f"bad request: {exc}"}).encode())
            continue
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"error": f"fork failed: {exc}"}).encode())
            continue
        if pid == 0:  # the job: leave the loop with a clean stack
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return spec, [stdin, out]
        reports[pid] = exit_write
        os.close(stdin)
        os.close(out)
        control.send(json.dumps({"pid": pid}).encode())
        _reap(reports)
    return None


def _reap(reports: dict[int, int]) -> None:
    while reports:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = reports.pop(pid, None)
        if fd is not None:
            try:
                os.write(fd, f"{status}\n".encode())
            except OSError:
                pass
            os.close(fd)


def _become_job(spec: dict, fds: list[int]) -> None:
    """In the forked child: the job's process state, then its script as ``__main__``."""
    os.setsid()
    limits = spec.get("limits") or {}
    affinity = limits.get("affinity")
    apply_job_limits(
        os.fsencode(limits["memory_procs"]) if limits.get("memory_procs") else None,
        os.fsencode(limits["cpu_procs"]) if limits.get("cpu_procs") else None,
        limits.get("rlimit"), int(limits.get("fallback") or 0),
        frozenset(affinity) if affinity is not None else None)
    stdin, out = fds
    os.dup2(stdin, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.closerange(3, 1 << 16)  # the control socket, other jobs' pipes, the passed fds
    os.chdir(spec["cwd"])
    os.environ.clear()
    os.environ.update(spec["env"])
    script = spec["script"]
    sys.argv = [script, *spec["args"]]
    sys.orig_argv = [spec["python"], script, *spec["args"]]
    path = os.path.abspath(script)
    sys.path.insert(0, os.path.dirname(os.path.realpath(path)))
    _run_main(path)


def _run_main(path: str) -> None:
    import builtins
    import importlib.machinery
    import types
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__cached__ = None
    main.__builtins__ = builtins
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    main.__spec__ = None
    sys.modules["__main__"] = main
    try:
        with open(path, "rb") as handle:
            code = compile(handle.read(), path, "exec", dont_inherit=True)
    except OSError as exc:
        sys.stderr.write(f"{sys.orig_argv[0]}: can't open file {path!r}: [Errno {exc.errno}] "
                         f"{exc.strerror}\n")
        raise SystemExit(2) from None
    try:
        exec(code, main.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:  # what the interpreter does with an uncaught exception
        traceback = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        sys.excepthook(type(exc), exc.with_traceback(traceback), traceback)
        if isinstance(exc, KeyboardInterrupt):
            sys.stdout.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        raise SystemExit(1) from None


if __name__ == "__main__":
    _control = socket.socket(fileno=int(os.environ.pop("SIMML_WARM_FD")))
    del sys.path[0]  # this file's folder; the job's script folder takes its place
    _job = _serve(_control)
    if _job is not None:
        _become_job(*_job)
