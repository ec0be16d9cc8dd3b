"""A node's cores and memory, enforced on the job process (``simml_stage_execute``).

One ``JobLimits`` per run::

    limits = JobLimits.for_job(run_id, v_cpus, memory_bytes)    # groups created
    command, preexec = limits.spawn(command)                    # a sh prefix joins them
    process = subprocess.Popen(command, ..., preexec_fn=preexec)
    ...
    oom = limits.out_of_memory(process.returncode, tail)        # read the counters
    limits.cleanup()                                            # remove the groups

The mode comes from the argument, else ``SIMML_RESOURCE_LIMITS``:

``auto`` (default)
    cgroups when the memory controller can be used here, otherwise ``rlimit``.
``cgroup``
    cgroups; if they cannot be created the run still goes ahead under ``rlimit`` and
    ``describe()`` says why (creating cgroups never breaks a run).
``rlimit``
    ``RLIMIT_DATA`` = the node's memory, cores by CPU affinity.
``none``
    nothing is enforced.

cgroups
    The job's groups are created *inside the cgroup the runner itself is in* (``<own
    group>/simml/<run id>``), never at the root of the hierarchy: the job stays under every limit
    that already applies to the runner (a container, a systemd slice, a CI job) and its memory is
    still accounted there. cgroup v1 (``kind='cgroup-v1'``): a memory group with
    ``memory.limit_in_bytes`` and, when swap accounting exists, ``memory.memsw.limit_in_bytes``
    equal to it (so swap cannot hide an overrun), plus a cpu group with ``cpu.cfs_quota_us =
    v_cpus * cpu.cfs_period_us``. cgroup v2 (``kind='cgroup-v2'``): one group with ``memory.max``,
    ``memory.swap.max = 0`` and ``cpu.max``; usable only when the runner's own cgroup delegates the
    memory controller (``memory`` in its ``cgroup.subtree_control``) — a non-root v2 group that
    holds processes cannot do that (the "no internal processes" rule), so a runner started in an
    ordinary service or session group uses v1 or ``rlimit``. Over the limit the kernel's OOM killer
    SIGKILLs the job; ``out_of_memory`` reads the group's ``oom_kill`` counter.

rlimit
    ``RLIMIT_DATA`` (heap, ``brk`` and, since Linux 4.7, private writable mappings: what
    ``malloc``, numpy and ``bytearray`` use), so an allocation over the limit fails with
    ``MemoryError`` / ``std::bad_alloc`` instead of the process being killed. Not
    ``RLIMIT_AS``: that caps *virtual* address space, and Python with numpy/OpenBLAS maps far more
    than it uses (thread stacks, arenas, BLAS buffers, shared libraries), so a 1 GB
    ``RLIMIT_AS`` breaks ``import sklearn`` long before the job uses 1 GB. Memory that is only
    reserved, not written, still counts against ``RLIMIT_DATA`` (it is a limit on commitments,
    not on resident pages), which is the safe side. Cores: the job is pinned to ``v_cpus`` of
    the CPUs this process may use (chosen by run id, so concurrent jobs spread out).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from simml_local.warmstart import apply_job_limits

__all__ = ["JobLimits", "CgroupLayout", "cgroup_support", "MODES", "ENV_VAR"]

logger = logging.getLogger(__name__)

ENV_VAR = "SIMML_RESOURCE_LIMITS"
MODES = ("auto", "cgroup", "rlimit", "none")
KINDS = ("cgroup-v1", "cgroup-v2", "rlimit", "none")
BASE = "simml"
"""Name of the folder of job groups inside the runner's own cgroup."""
STALE_SECONDS = 60.0
"""An empty job group this old was left by a runner that died (SIGKILL): removed by later runs."""
RMDIR_TRIES = 40
RMDIR_PAUSE = 0.05
OOM_MARKERS = ("MemoryError", "Cannot allocate memory", "std::bad_alloc")


# --- where the cgroups are ------------------------------------------------------------------------
def _unescape(field: str) -> str:
    """A mountinfo path field (spaces and the like are octal escapes: ``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _join(mount: Path, mount_root: str, own: str) -> Path | None:
    """``own`` (a path from /proc/self/cgroup) as a folder under a mount of its hierarchy."""
    if mount_root in ("", "/"):
        relative = own
    elif own == mount_root or own.startswith(mount_root.rstrip("/") + "/"):
        relative = own[len(mount_root.rstrip("/")):]
    else:
        return None  # this mount shows another part of the hierarchy
    return mount / relative.lstrip("/")


@dataclass(frozen=True)
class CgroupLayout:
    """The runner's own cgroup folders: v1 memory, v1 cpu, and the v2 (unified) one."""

    v1_memory: Path | None = None
    v1_cpu: Path | None = None
    v2: Path | None = None

    @classmethod
    def current(cls) -> "CgroupLayout":
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
                mountinfo = handle.read()
            with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as handle:
                membership = handle.read()
        except OSError:
            return cls()
        return cls.parse(mountinfo, membership)

    @classmethod
    def parse(cls, mountinfo: str, membership: str) -> "CgroupLayout":
        """From the texts of /proc/self/mountinfo and /proc/self/cgroup."""
        own_v1: dict[str, str] = {}
        own_v2: str | None = None
        for line in membership.splitlines():
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                own_v2 = parts[2]
            for controller in parts[1].split(","):
                if controller:
                    own_v1[controller] = parts[2]
        found: dict[str, Path] = {}
        for line in mountinfo.splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3:
                continue
            root, mount, fstype = _unescape(fields[3]), Path(_unescape(fields[4])), tail[0]
            if fstype == "cgroup2" and own_v2 is not None and "v2" not in found:
                folder = _join(mount, root, own_v2)
                if folder is not None:
                    found["v2"] = folder
            elif fstype == "cgroup":
                options = set(tail[2].split(","))
                for controller, key in (("memory", "v1_memory"), ("cpu", "v1_cpu")):
                    if controller in options and controller in own_v1 and key not in found:
                        folder = _join(mount, root, own_v1[controller])
                        if folder is not None:
                            found[key] = folder
        return cls(**found)


def _read(path: Path) -> str:
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read()


def _write(path: Path, value: str) -> None:
    with open(path, "w", encoding="ascii") as handle:
        handle.write(value)


def _counters(text: str) -> dict[str, int]:
    """``key value`` lines (memory.oom_control, memory.events) as a dict."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def _v2_delegates_memory(folder: Path) -> tuple[bool, str]:
    try:
        enabled = _read(folder / "cgroup.subtree_control").split()
    except OSError as exc:
        return False, f"cgroup v2: cannot read {folder}/cgroup.subtree_control ({exc.strerror})"
    if "memory" not in enabled:
        try:
            available = _read(folder / "cgroup.controllers").split()
        except OSError:
            available = []
        if "memory" not in available:
            why = ("the memory controller is not in this cgroup2 hierarchy (on a hybrid system "
                   "it is bound to cgroup v1)")
        else:
            why = ("memory is not enabled in its cgroup.subtree_control (a non-root group that "
                   "holds processes cannot delegate it)")
        return False, f"cgroup v2 at {folder}: {why}"
    if not os.access(folder, os.W_OK):
        return False, f"cgroup v2 at {folder}: not writable by this user"
    return True, ""


def cgroup_support(layout: CgroupLayout | None = None) -> tuple[str | None, str]:
    """``('cgroup-v2' | 'cgroup-v1', '')`` when job groups can be made here, else ``(None, why)``."""
    layout = CgroupLayout.current() if layout is None else layout
    reasons = []
    if layout.v2 is not None:
        usable, why = _v2_delegates_memory(layout.v2)
        if usable:
            return "cgroup-v2", ""
        reasons.append(why)
    if layout.v1_memory is None:
        reasons.append("no cgroup v1 memory hierarchy is mounted")
    elif not layout.v1_memory.is_dir():
        reasons.append(f"cgroup v1: {layout.v1_memory} does not exist")
    elif not os.access(layout.v1_memory, os.W_OK):
        reasons.append(f"cgroup v1: {layout.v1_memory} is not writable by this user")
    else:
        return "cgroup-v1", ""
    return None, "; ".join(reasons) or "no cgroup hierarchy found"


# --- one job's groups ------------------------------------------------------------------------------
def _group_name(run_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:200]
    return name if name not in ("", ".", "..") else "run"


def _sweep_stale(base: Path) -> None:
    """Remove empty job groups left by runners that were killed before their cleanup."""
    try:
        children = [p for p in base.iterdir() if p.is_dir()]
    except OSError:
        return
    now = time.time()
    for child in children:
        try:
            if now - child.stat().st_mtime < STALE_SECONDS or _read(child / "cgroup.procs").strip():
                continue
            child.rmdir()
        except OSError:
            pass


def _make_group(origin: Path, name: str, v2_controllers: str | None = None,
                sweep: bool = True, base_name: str = BASE) -> Path:
    """``origin/<base_name>/<name>`` (a fresh folder); the base is re-made if a cleanup removed
    it. ``sweep``: first remove stale groups of killed runners (a runner does it for its first
    job)."""
    base = origin / base_name
    for attempt in range(5):
        try:
            base.mkdir(exist_ok=True)
            if v2_controllers:
                _write(base / "cgroup.subtree_control", v2_controllers)
            if sweep:
                _sweep_stale(base)
            group = base / name
            try:
                group.mkdir()
            except FileExistsError:
                try:
                    group.rmdir()  # an empty leftover of this same run id
                    group.mkdir()
                except OSError:
                    group = base / f"{name}-{os.getpid()}-{time.monotonic_ns()}"
                    group.mkdir()
            return group
        except FileNotFoundError:
            if attempt == 4:  # another runner's cleanup removed the empty base meanwhile
                raise
    raise AssertionError("unreachable")


def _remove_group(group: Path, origin: Path) -> str | None:
    """Move any task left in ``group`` to ``origin``, then rmdir it (retried while busy)."""
    for attempt in range(RMDIR_TRIES):
        try:
            for pid in _read(group / "cgroup.procs").split():
                try:
                    _write(origin / "cgroup.procs", pid)
                except OSError:
                    pass  # exited meanwhile
        except FileNotFoundError:
            return None  # already gone
        except OSError:
            pass
        try:
            group.rmdir()
            return None
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.EAGAIN) \
                    or attempt == RMDIR_TRIES - 1:
                return f"could not remove {group}: {exc.strerror}"
            time.sleep(RMDIR_PAUSE)
    return f"could not remove {group}"


class JobLimits:
    """The cores and memory one job may use, and how they are enforced (see the module doc)."""

    kind: str
    """``'cgroup-v1'``, ``'cgroup-v2'``, ``'rlimit'`` or ``'none'``."""

    def __init__(self, run_id: str, v_cpus: int, memory_bytes: int, kind: str,
                 layout: CgroupLayout | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"Unknown limits kind {kind!r}; expected one of {KINDS}.")
        self.run_id = run_id
        self.v_cpus = int(v_cpus)
        self.memory_bytes = int(memory_bytes)
        self.kind = kind
        self.layout = layout or CgroupLayout()
        self.memory_group: Path | None = None
        """The group that holds the memory limit (v2: the one group)."""
        self.cpu_group: Path | None = None
        """v1 only: the cpu group (None when cores are enforced otherwise)."""
        self.notes: list[str] = []
        """Why something is not enforced as asked (shown by ``describe``)."""
        self.oom_reason: str | None = None
        """Set by ``out_of_memory``: how the overrun was recognised."""
        self._rlimit: int | None = None
        self._affinity: frozenset[int] | None = None
        self._memory_procs: bytes | None = None
        self._cpu_procs: bytes | None = None
        self._cpu_how = "not enforced"
        self._sweep = True

    # --- creation (in the runner, before fork) ---------------------------------------------
    @classmethod
    def for_job(cls, run_id: str, v_cpus: int, memory_bytes: int, mode: str | None = None, *,
                layout: CgroupLayout | None = None, sweep_stale: bool = True) -> "JobLimits":
        """Limits for one run; cgroups are created here, before the job is forked. A runner
        passes its ``layout`` (read once) and sweeps stale groups only for its first job."""
        chosen = (mode if mode is not None else os.environ.get(ENV_VAR, "")).strip().lower()
        chosen = chosen or "auto"
        if chosen not in MODES:
            source = "mode" if mode is not None else ENV_VAR
            raise ValueError(f"Invalid {source} {chosen!r}: expected one of {', '.join(MODES)}.")
        if v_cpus < 1 or memory_bytes <= 0:
            raise ValueError(f"Invalid node resources: {v_cpus} cores, {memory_bytes} bytes.")
        if chosen == "none":
            limits = cls(run_id, v_cpus, memory_bytes, "none")
            limits._cpu_how = "not enforced"
            return limits
        if chosen == "rlimit":
            return cls._rlimit_limits(run_id, v_cpus, memory_bytes, layout, None)
        layout = CgroupLayout.current() if layout is None else layout
        kind, why = cgroup_support(layout)
        if kind is None:
            note = f"cgroups unavailable: {why}"
            if chosen == "cgroup":
                logger.warning("simml: run %s: %s; using RLIMIT_DATA", run_id, note)
            return cls._rlimit_limits(run_id, v_cpus, memory_bytes, layout, note)
        limits = cls(run_id, v_cpus, memory_bytes, kind, layout)
        limits._sweep = sweep_stale
        try:
            if kind == "cgroup-v1":
                limits._create_v1()
            else:
                limits._create_v2()
        except OSError as exc:
            note = (f"cgroup creation failed ({exc.strerror or exc}"
                    f"{': ' + str(exc.filename) if exc.filename else ''})")
            logger.warning("simml: run %s: %s; using RLIMIT_DATA", run_id, note)
            limits.cleanup()
            return cls._rlimit_limits(run_id, v_cpus, memory_bytes, layout, note)
        return limits

    @classmethod
    def _rlimit_limits(cls, run_id: str, v_cpus: int, memory_bytes: int,
                       layout: CgroupLayout | None, note: str | None) -> "JobLimits":
        limits = cls(run_id, v_cpus, memory_bytes, "rlimit", layout)
        if note:
            limits.notes.append(note)
        limits._rlimit = memory_bytes
        limits._pin_cpus()
        return limits

    def _pin_cpus(self) -> None:
        """Cores without a cpu cgroup: ``v_cpus`` of the allowed CPUs, picked by run id."""
        try:
            allowed = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self._cpu_how = "not enforced (no CPU affinity here)"
            return
        if self.v_cpus >= len(allowed):
            self._cpu_how = f"all {len(allowed)} CPUs of this machine"
            return
        start = zlib.crc32(self.run_id.encode()) % len(allowed)
        chosen = [allowed[(start + i) % len(allowed)] for i in range(self.v_cpus)]
        self._affinity = frozenset(chosen)
        self._cpu_how = f"CPU affinity {','.join(map(str, sorted(chosen)))}"

    def _create_v1(self) -> None:
        assert self.layout.v1_memory is not None
        name = _group_name(self.run_id)
        group = _make_group(self.layout.v1_memory, name, sweep=self._sweep)
        self.memory_group = group
        _write(group / "memory.limit_in_bytes", str(self.memory_bytes))
        memsw = group / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # only with swap accounting; must be set after (and >=) the limit
            try:
                _write(memsw, str(self.memory_bytes))
            except OSError as exc:
                self.notes.append(f"swap not limited ({exc.strerror})")
        self._memory_procs = os.fsencode(group / "cgroup.procs")
        cpu_origin = self.layout.v1_cpu
        if cpu_origin is None or not os.access(cpu_origin, os.W_OK):
            self.notes.append("no writable cgroup v1 cpu hierarchy")
            self._pin_cpus()
            return
        try:
            nice = _own_nice()
            cpu = _make_group(cpu_origin, name, sweep=self._sweep, base_name=_base_name(nice))
            self.cpu_group = cpu
            period = int(_read(cpu / "cpu.cfs_period_us").strip() or 100000)
            _write(cpu / "cpu.cfs_quota_us", str(self.v_cpus * period))
            if nice:  # a group competes as one task of weight cpu.shares: keep the runner's nice
                for group in (cpu.parent, cpu):  # its base too (the jobs' parent, per nice value)
                    _write(group / "cpu.shares", str(_NICE_TO_WEIGHT[nice + 20]))
        except (OSError, ValueError) as exc:
            self.notes.append(f"cpu cgroup failed ({getattr(exc, 'strerror', None) or exc})")
            if self.cpu_group is not None:
                _remove_group(self.cpu_group, cpu_origin)
                self.cpu_group = None
            self._pin_cpus()
            return
        self._cpu_procs = os.fsencode(cpu / "cgroup.procs")
        self._cpu_how = f"cpu.cfs_quota_us={self.v_cpus * period}/{period}"

    def _create_v2(self) -> None:
        assert self.layout.v2 is not None
        origin = self.layout.v2
        delegated = _read(origin / "cgroup.subtree_control").split()
        controllers = " ".join(f"+{c}" for c in ("memory", "cpu") if c in delegated)
        nice = _own_nice()
        group = _make_group(origin, _group_name(self.run_id), controllers, sweep=self._sweep,
                            base_name=_base_name(nice))
        self.memory_group = group
        _write(group / "memory.max", str(self.memory_bytes))
        swap = group / "memory.swap.max"
        if swap.exists():
            try:
                _write(swap, "0")
            except OSError as exc:
                self.notes.append(f"swap not limited ({exc.strerror})")
        if "cpu" in delegated:
            period = 100000
            _write(group / "cpu.max", f"{self.v_cpus * period} {period}")
            if nice and (group / "cpu.weight.nice").exists():  # as v1's cpu.shares above
                for level in (group.parent, group):
                    _write(level / "cpu.weight.nice", str(nice))
            self._cpu_how = f"cpu.max={self.v_cpus * period} {period}"
        else:
            self.notes.append("the cpu controller is not delegated")
            self._pin_cpus()
        self._memory_procs = os.fsencode(group / "cgroup.procs")

    # --- starting the job ----------------------------------------------------------------
    def spawn(self, command: list[str]) -> tuple[list[str], Callable[[], None] | None]:
        """The command and ``preexec_fn`` to start the job with under these limits.

        Joining groups and setting ``RLIMIT_DATA`` is done by a tiny ``/bin/sh`` prefix that then
        ``exec``s the job, so the job is limited from its first instruction and ``Popen`` can
        spawn with ``vfork``: a Python ``preexec_fn`` forces a full ``fork`` of the runner (its
        threads and memory), measured at 5 ms of runner CPU and up to 30 ms of wall time per job
        on a loaded 2-core machine. Only CPU pinning (``rlimit`` mode on a node smaller than the
        machine) has no shell builtin and keeps ``preexec``.
        """
        if self.kind == "none":
            return command, None
        if self._affinity is not None:
            return command, self.preexec
        fallback_kb = str(max(1, self.memory_bytes // 1024))
        rlimit_kb = "" if self._rlimit is None else str(max(1, self._rlimit // 1024))
        return [_SHELL, "-c", _JOIN_SCRIPT, "simml-job",
                os.fsdecode(self._memory_procs or b""), os.fsdecode(self._cpu_procs or b""),
                rlimit_kb, fallback_kb, *command], None

    # --- in the child, between fork and exec ---------------------------------------------
    def preexec(self) -> None:
        """Join the job's groups / set the rlimit, in the forked child (no locks, no logging):
        ``warmstart.apply_job_limits``, which a warm-started job runs too."""
        apply_job_limits(self._memory_procs, self._cpu_procs, self._rlimit, self.memory_bytes,
                         self._affinity)

    def warm_limits(self) -> dict[str, object]:
        """The same limits for a job forked by a warm interpreter (``warmstart``), as JSON."""
        return {"memory_procs": os.fsdecode(self._memory_procs) if self._memory_procs else None,
                "cpu_procs": os.fsdecode(self._cpu_procs) if self._cpu_procs else None,
                "rlimit": self._rlimit, "fallback": self.memory_bytes,
                "affinity": sorted(self._affinity) if self._affinity is not None else None}

    # --- after the job ----------------------------------------------------------------------
    def out_of_memory(self, returncode: int | None, output_tail: list[str]) -> bool:
        """Did the job fail because it went over the memory limit? (A job that exited 0 did not.)"""
        self.oom_reason = None
        if returncode is None or returncode == 0:
            return False
        sigkilled = returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
        group = self.memory_group
        if group is not None:
            try:
                if self.kind == "cgroup-v1":
                    control = _counters(_read(group / "memory.oom_control"))
                    failcnt = int(_read(group / "memory.failcnt").strip() or 0)
                    if control.get("oom_kill", 0) > 0 or (sigkilled and failcnt > 0):
                        self.oom_reason = ("the kernel's out-of-memory killer stopped it at the "
                                           "cgroup memory limit")
                else:
                    events = _counters(_read(group / "memory.events"))
                    if events.get("oom_kill", 0) > 0 or (sigkilled and events.get("oom", 0) > 0):
                        self.oom_reason = ("the kernel's out-of-memory killer stopped it at the "
                                           "cgroup memory limit")
            except (OSError, ValueError):
                pass
        if self.oom_reason is None:
            recent = output_tail[-20:]
            marker = next((m for m in OOM_MARKERS if any(m in line for line in recent)), None)
            if marker is not None:
                how = " (RLIMIT_DATA)" if self.kind == "rlimit" else ""
                self.oom_reason = f"an allocation failed at the memory limit{how}: {marker}"
        return self.oom_reason is not None

    def describe(self) -> str:
        """One line for the driver log."""
        text = (f"limits: {self.kind}, {self.v_cpus} cores, {self.memory_bytes / 2**30:g} GB")
        if self.kind == "none":
            return text + " (not enforced: SIMML_RESOURCE_LIMITS=none)"
        memory = {"cgroup-v1": "memory.limit_in_bytes", "cgroup-v2": "memory.max",
                  "rlimit": "RLIMIT_DATA"}[self.kind]
        detail = [f"memory by {memory}", f"cores by {self._cpu_how}"]
        if self.memory_group is not None:
            detail.append(f"group {self.memory_group}")
        return text + " (" + "; ".join(detail + self.notes) + ")"

    def cleanup(self) -> None:
        """Remove the job's groups (tasks left in them move to the runner's group). Never raises."""
        try:
            for group, origin in ((self.memory_group, self.layout.v2 if self.kind == "cgroup-v2"
                                   else self.layout.v1_memory),
                                  (self.cpu_group, self.layout.v1_cpu)):
                if group is None or origin is None:
                    continue
                problem = _remove_group(group, origin)
                if problem:
                    logger.warning("simml: run %s: %s (removed by a later run once empty)",
                                   self.run_id, problem)
                    continue
                try:
                    group.parent.rmdir()  # the simml base, when no other job uses it
                except OSError:
                    pass
        except Exception:  # noqa: BLE001 - cleanup must never fail a run
            logger.exception("simml: run %s: cgroup cleanup failed", self.run_id)


_NICE_TO_WEIGHT = (  # the kernel's sched_prio_to_weight, nice -20 .. 19
    88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916,
    9548, 7620, 6100, 4904, 3906, 3121, 2501, 1991, 1586, 1277,
    1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
    110, 87, 70, 56, 45, 36, 29, 23, 18, 15)


def _own_nice() -> int:
    """This process's nice value (-20..19). A job in a cpu cgroup of its own competes with the
    runner's siblings as one entity of the group's weight, whatever the job's own nice value, so
    ``nice simml ...`` would otherwise not make its jobs nice."""
    try:
        return max(-20, min(19, os.getpriority(os.PRIO_PROCESS, 0)))
    except OSError:
        return 0


def _base_name(nice: int) -> str:
    """The folder the job groups of runners with this nice value share: a base's weight is set
    for its jobs, so runners of different priorities must not share one."""
    return BASE if nice == 0 else f"{BASE}-nice{nice}"


_SHELL = "/bin/sh"
_JOIN_SCRIPT = (
    # $1 memory group's cgroup.procs, $2 cpu group's, $3 RLIMIT_DATA in KiB, $4 the KiB to limit
    # to if joining the memory group fails (what ``preexec`` does), then the job's command.
    'm=$1 c=$2 r=$3 f=$4; shift 4\n'
    'if [ -n "$m" ] && ! { echo $$ >"$m"; } 2>/dev/null; then r=$f; fi\n'
    '[ -z "$c" ] || { echo $$ >"$c"; } 2>/dev/null\n'
    '[ -z "$r" ] || ulimit -d "$r" 2>/dev/null\n'
    'exec "$@"\n')
