"""Node resource enforcement on jobs (``backends/simml_local/limits.py``), both paths for real.

The cgroup tests use the machine's cgroups (v1 here and in CI: root, hierarchies mounted rw); they
are skipped, with the reason, only where no cgroup memory controller can be used at all. A job
over the limit is SIGKILLed by the kernel under cgroups and gets ``MemoryError`` under
``RLIMIT_DATA``; either way the run fails with ``OutOfMemory``.

``local_only`` (docs/testing.md): a node's limits are enforced by the local backend's runner (on
Azure, by the VM).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from simml.core import Experiment, ScriptRunConfig
from simml_local import limits as limits_module
from simml_local.limits import ENV_VAR, CgroupLayout, JobLimits, cgroup_support

pytestmark = pytest.mark.local_only

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20
LIMIT = 256 * MB
CGROUP_KIND, CGROUP_WHY = cgroup_support()
needs_cgroups = pytest.mark.skipif(
    CGROUP_KIND is None, reason=f"no usable cgroup memory controller here: {CGROUP_WHY}")

CHILD = textwrap.dedent("""
    import os, resource, sys
    size = int(sys.argv[1]) * 2**20
    block = bytearray(size)
    for i in range(0, size, 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    memory = [l.split(":", 2)[2] for l in open("/proc/self/cgroup") if ":memory:" in l]
    print("cgroup", memory[0] if memory else "-")
    print("rlimit", resource.getrlimit(resource.RLIMIT_DATA)[0])
    print("cpus", len(os.sched_getaffinity(0)))
    print("done")
""")


def run_child(limits: JobLimits, megabytes: int, how: str = "spawn") -> tuple[int, list[str]]:
    """The child started as the runner starts jobs (``limits.spawn``), or with ``preexec``."""
    command = [sys.executable, "-c", CHILD, str(megabytes)]
    if how == "spawn":
        command, preexec = limits.spawn(command)
    else:
        preexec = limits.preexec
    done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          preexec_fn=preexec)
    return done.returncode, (done.stdout + done.stderr).splitlines()


def value(lines: list[str], key: str) -> str:
    return next(line.split(" ", 1)[1] for line in lines if line.startswith(key + " "))


# --- rlimit --------------------------------------------------------------------------------------
def test_rlimit_allocation_over_the_limit_is_a_memory_error() -> None:
    limits = JobLimits.for_job("rl-over", 1, LIMIT, mode="rlimit")
    assert limits.kind == "rlimit" and limits.memory_group is None
    code, lines = run_child(limits, 600)
    assert code == 1 and "MemoryError" in lines[-1]
    assert limits.out_of_memory(code, lines)
    assert "RLIMIT_DATA" in (limits.oom_reason or "")
    limits.cleanup()


def test_rlimit_job_under_the_limit_succeeds() -> None:
    limits = JobLimits.for_job("rl-under", 1, LIMIT, mode="rlimit")
    code, lines = run_child(limits, 64)
    assert code == 0 and lines[-1] == "done", lines
    assert not limits.out_of_memory(code, lines)
    assert int(value(lines, "rlimit")) == LIMIT
    if len(os.sched_getaffinity(0)) > 1:
        assert value(lines, "cpus") == "1"  # cores: pinned to v_cpus CPUs
    assert limits.describe().startswith("limits: rlimit, 1 cores, 0.25 GB")
    assert "RLIMIT_DATA" in limits.describe()


def test_out_of_memory_needs_a_failed_job() -> None:
    limits = JobLimits.for_job("rl-tail", 1, LIMIT, mode="rlimit")
    assert not limits.out_of_memory(0, ["printing the word MemoryError is fine"])
    assert limits.out_of_memory(-signal.SIGABRT, ["terminate called after throwing",
                                                  "  what():  std::bad_alloc"])
    assert limits.out_of_memory(1, ["OSError: [Errno 12] Cannot allocate memory"])
    assert not limits.out_of_memory(1, ["ValueError: broken input"])
    assert not limits.out_of_memory(-signal.SIGKILL, [])  # a kill is not an OOM by itself


# --- cgroups (real) ------------------------------------------------------------------------------
def group_dirs(limits: JobLimits) -> list[Path]:
    return [g for g in (limits.memory_group, limits.cpu_group) if g is not None]


@needs_cgroups
def test_cgroup_job_over_the_limit_is_oom_killed() -> None:
    limits = JobLimits.for_job("cg-over", 1, LIMIT, mode="cgroup")
    try:
        assert limits.kind == CGROUP_KIND, limits.describe()
        code, lines = run_child(limits, 600)
        assert code == -signal.SIGKILL, lines  # the kernel's OOM killer, not a MemoryError
        assert limits.out_of_memory(code, lines)
        assert "out-of-memory killer" in (limits.oom_reason or "")
    finally:
        limits.cleanup()
    assert not any(g.exists() for g in group_dirs(limits))


@needs_cgroups
@pytest.mark.parametrize("how", ["spawn", "preexec"])
def test_cgroup_job_under_the_limit_runs_in_its_group(how: str) -> None:
    limits = JobLimits.for_job("cg-under", 2, LIMIT, mode="cgroup")
    groups = group_dirs(limits)
    try:
        group = limits.memory_group
        assert group is not None and group.name == "cg-under"
        assert limits.describe().startswith(f"limits: {CGROUP_KIND}, 2 cores, 0.25 GB")
        if limits.kind == "cgroup-v1":
            assert int((group / "memory.limit_in_bytes").read_text()) == LIMIT
            memsw = group / "memory.memsw.limit_in_bytes"
            if memsw.exists():
                assert int(memsw.read_text()) == LIMIT  # swap cannot hide an overrun
            assert limits.cpu_group is not None
            period = int((limits.cpu_group / "cpu.cfs_period_us").read_text())
            assert int((limits.cpu_group / "cpu.cfs_quota_us").read_text()) == 2 * period
        else:
            assert int((group / "memory.max").read_text()) == LIMIT
            quota, period = (group / "cpu.max").read_text().split()
            assert int(quota) == 2 * int(period)
        code, lines = run_child(limits, 64, how)
        assert code == 0 and lines[-1] == "done", lines
        assert not limits.out_of_memory(code, lines)
        if limits.kind == "cgroup-v1":
            assert value(lines, "cgroup").endswith("/simml/cg-under")
        # The cgroup alone enforces the limit: no rlimit in the job.
        assert int(value(lines, "rlimit")) == -1
        # Nested in the runner's own group, so every enclosing limit still applies.
        origin = limits.layout.v1_memory if limits.kind == "cgroup-v1" else limits.layout.v2
        assert group.parent == origin / "simml"
    finally:
        limits.cleanup()
    assert groups and not any(g.exists() for g in groups)


@needs_cgroups
def test_a_nice_runner_makes_its_jobs_groups_nice() -> None:
    """A group competes as one entity of its own weight, so the runner's nice value goes into
    the job's group (``nice simml ...`` must not leave the jobs at full priority)."""
    probe = textwrap.dedent('''
        import os, sys
        os.nice(int(sys.argv[1]))
        from simml_local.limits import JobLimits
        limits = JobLimits.for_job("nice-" + sys.argv[1], 1, 256 * 2**20, mode="cgroup")
        try:
            if limits.kind == "cgroup-v1":
                assert open(limits.cpu_group.parent / "cpu.shares").read().strip() == \
                    open(limits.cpu_group / "cpu.shares").read().strip()
                print(limits.cpu_group.parent.name, open(limits.cpu_group / "cpu.shares").read().strip())
            elif (limits.memory_group / "cpu.weight.nice").exists():
                print(limits.memory_group.parent.name,
                      open(limits.memory_group / "cpu.weight.nice").read().strip())
            else:
                print("absent")
        finally:
            limits.cleanup()
    ''')
    values = {}
    for nice in (0, 5):
        done = subprocess.run([sys.executable, "-c", probe, str(nice)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        if done.stdout.strip() == "absent":
            pytest.skip("cgroup v2 without the cpu controller delegated: no cpu.weight.nice")
        base, value = done.stdout.split()
        values[nice] = (base, int(value))
    # Runners of different priorities get bases of their own (a base carries its jobs' weight).
    if CGROUP_KIND == "cgroup-v1":
        assert values == {0: ("simml", 1024), 5: ("simml-nice5", 335)}  # the kernel's weights
    else:
        assert values == {0: ("simml", 0), 5: ("simml-nice5", 5)}


@needs_cgroups
def test_cgroup_cleanup_moves_leftover_tasks_out() -> None:
    limits = JobLimits.for_job("cg-leftover", 1, LIMIT, mode="cgroup")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               preexec_fn=limits.preexec)
    try:
        group = limits.memory_group
        assert group is not None
        deadline = time.time() + 10
        while str(sleeper.pid) not in (group / "cgroup.procs").read_text().split():
            assert time.time() < deadline
            time.sleep(0.01)
        limits.cleanup()
        assert not any(g.exists() for g in group_dirs(limits))
        assert sleeper.poll() is None  # moved to the runner's group, not killed
        own = Path(f"/proc/{os.getpid()}/cgroup").read_text()
        assert Path(f"/proc/{sleeper.pid}/cgroup").read_text() == own
    finally:
        sleeper.kill()
        sleeper.wait()
        limits.cleanup()


@needs_cgroups
def test_stale_groups_of_dead_runners_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    left = JobLimits.for_job("cg-stale", 1, LIMIT, mode="cgroup")  # its runner "died": no cleanup
    assert left.memory_group is not None and left.memory_group.exists()
    monkeypatch.setattr(limits_module, "STALE_SECONDS", 0.0)
    fresh = JobLimits.for_job("cg-fresh", 1, LIMIT, mode="cgroup")
    try:
        assert not any(g.exists() for g in group_dirs(left))
        assert fresh.memory_group is not None and fresh.memory_group.exists()
    finally:
        fresh.cleanup()
        left.cleanup()


# --- choosing the mode, fallbacks, v2 plumbing --------------------------------------------------
def test_mode_comes_from_the_argument_else_the_environment(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv(ENV_VAR, "none")
    none = JobLimits.for_job("m-none", 1, LIMIT)
    assert none.kind == "none" and "not enforced" in none.describe()
    none.preexec()  # nothing to do, in any process
    assert JobLimits.for_job("m-arg", 1, LIMIT, mode="rlimit").kind == "rlimit"
    monkeypatch.setenv(ENV_VAR, "cgroups")
    with pytest.raises(ValueError, match="SIMML_RESOURCE_LIMITS"):
        JobLimits.for_job("m-bad", 1, LIMIT)
    monkeypatch.delenv(ENV_VAR)
    auto = JobLimits.for_job("m-auto", 1, LIMIT)
    try:
        assert auto.kind == (CGROUP_KIND or "rlimit")
    finally:
        auto.cleanup()


def test_cgroup_creation_failure_falls_back_to_rlimit(tmp_path: Path) -> None:
    (tmp_path / "simml").write_text("a file where the group folder should go")
    limits = JobLimits.for_job("fb-run", 1, LIMIT, mode="cgroup",
                               layout=CgroupLayout(v1_memory=tmp_path))
    assert limits.kind == "rlimit"
    assert "cgroup creation failed" in limits.describe()
    code, lines = run_child(limits, 600)
    assert limits.out_of_memory(code, lines)

    nothing = JobLimits.for_job("fb-none", 1, LIMIT, mode="cgroup",
                                layout=CgroupLayout(v1_memory=tmp_path / "absent"))
    assert nothing.kind == "rlimit" and "cgroups unavailable" in nothing.describe()


def test_spawn_falls_back_to_rlimit_when_joining_the_memory_group_fails(tmp_path: Path) -> None:
    """As ``preexec`` does: a job never runs without the memory limit it was meant to have."""
    cores = len(os.sched_getaffinity(0))  # the whole machine: no pinning, so the sh prefix
    limits = JobLimits.for_job("fb-join", cores, LIMIT, mode="cgroup",
                               layout=CgroupLayout(v1_memory=tmp_path))
    assert limits.kind == "cgroup-v1" and limits.memory_group is not None
    command, preexec = limits.spawn(["true"])
    assert preexec is None and command[0] == "/bin/sh" and command[-1] == "true"
    (limits.memory_group / "cgroup.procs").mkdir()  # writing the pid there fails
    code, lines = run_child(limits, 64)
    assert code == 0 and lines[-1] == "done", lines
    assert int(value(lines, "rlimit")) == LIMIT
    limits.cleanup()


def test_layout_from_proc_texts() -> None:
    hybrid = CgroupLayout.parse(
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        "4:memory:/process_api/abc\n1:cpu:/\n0::/\n")
    assert hybrid == CgroupLayout(Path("/sys/fs/cgroup/memory/process_api/abc"),
                                  Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/unified"))
    container = CgroupLayout.parse(  # bind-mounted sub-hierarchies, cpu co-mounted with cpuacct
        "1 0 0:1 /docker/x /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n"
        "2 0 0:2 /docker/x /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
        "3:cpu,cpuacct:/docker/x\n2:memory:/docker/x/job\n")
    assert container == CgroupLayout(Path("/sys/fs/cgroup/memory/job"),
                                     Path("/sys/fs/cgroup/cpu,cpuacct"), None)
    unified = CgroupLayout.parse(
        "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n", "0::/ci.slice\n")
    assert unified == CgroupLayout(v2=Path("/sys/fs/cgroup/ci.slice"))


def test_v2_needs_memory_delegated_and_writes_one_group(tmp_path: Path) -> None:
    """cgroup v2 cannot run on this hybrid machine (memory is bound to v1): its plumbing is checked
    on a folder laid out like a delegated cgroup2 group."""
    origin = tmp_path / "unified"
    origin.mkdir()
    (origin / "cgroup.controllers").write_text("cpu memory pids\n")
    (origin / "cgroup.subtree_control").write_text("\n")
    kind, why = cgroup_support(CgroupLayout(v2=origin))
    assert kind is None and "subtree_control" in why  # a group with processes cannot delegate
    (origin / "cgroup.controllers").write_text("hugetlb\n")
    assert "hybrid" in cgroup_support(CgroupLayout(v2=origin))[1]
    (origin / "cgroup.controllers").write_text("cpu memory pids\n")
    (origin / "cgroup.subtree_control").write_text("cpu memory\n")
    assert cgroup_support(CgroupLayout(v2=origin)) == ("cgroup-v2", "")

    limits = JobLimits.for_job("v2-run", 2, LIMIT, mode="cgroup", layout=CgroupLayout(v2=origin))
    group = origin / "simml" / "v2-run"
    assert limits.kind == "cgroup-v2" and limits.memory_group == group
    assert (origin / "simml" / "cgroup.subtree_control").read_text() == "+memory +cpu"
    assert (group / "memory.max").read_text() == str(LIMIT)
    assert (group / "cpu.max").read_text() == "200000 100000"
    (group / "cgroup.procs").write_text("")
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, preexec_fn=limits.preexec, check=True)
    assert (group / "cgroup.procs").read_text() == child.stdout.strip()
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 0\n")
    assert not limits.out_of_memory(1, [])
    assert limits.out_of_memory(-signal.SIGKILL, [])  # hit the limit and was killed
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n")
    assert limits.out_of_memory(1, [])
    limits.cleanup()  # a plain folder cannot be rmdir'ed like a cgroup: must not raise


# --- end to end through the runner ---------------------------------------------------------------
MODES = [pytest.param("rlimit", id="rlimit"), pytest.param("cgroup", id="cgroup",
                                                           marks=needs_cgroups)]


def cluster(ws: Any, name: str, vm_size: str) -> Any:
    from simml.core.compute import AmlCompute, ComputeTarget
    from simml.core.compute.cluster import INSTANT
    config = AmlCompute.provisioning_configuration(vm_size=vm_size, max_nodes=1,
                                                   _timings=INSTANT)
    target = ComputeTarget.create(ws, name, config)
    target.wait_for_completion()
    return target


def driver_log(ws: Any, run: Any) -> str:
    return Path(ws.get_details()["root"], "artifacts", run.id,
                "azureml-logs", "70_driver_log.txt").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_job_over_node_memory_fails_out_of_memory(ws, tmp_path: Path, mode: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, mode)  # the runner inherits the client's environment at submit
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "hog.py").write_text(textwrap.dedent("""
        print("allocating 600 MB", flush=True)
        block = bytearray(600 * 2**20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        print("still alive")
    """))
    config = ScriptRunConfig(str(folder), "hog.py",
                             compute_target=cluster(ws, "tiny", "SIMML_TINY"))
    run = Experiment(ws, "oom").submit(config)
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    error = details["error"]["error"]
    assert error["code"] == "OutOfMemory", error
    assert "ran out of memory" in error["message"] and "0.25 GB" in error["message"]
    assert "exit" not in error["message"].splitlines()[0]  # not a bare exit 137
    log = driver_log(ws, run)
    expected = "rlimit" if mode == "rlimit" else CGROUP_KIND
    assert f"limits: {expected}, 1 cores, 0.25 GB" in log
    if mode == "rlimit":
        assert "MemoryError" in error["message"]
    else:
        assert "out-of-memory killer" in error["message"]
        layout = CgroupLayout.current()
        for origin in (layout.v1_memory, layout.v1_cpu, layout.v2):
            assert origin is None or not (origin / "simml" / run.id).exists()  # cleaned up


@pytest.mark.parametrize("mode", MODES)
def test_train_iris_runs_under_a_standard_d1_v2_limit(ws, tmp_path: Path, mode: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, mode)
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train_iris.py").write_text((ROOT / "train_iris.py").read_text())
    config = ScriptRunConfig(str(folder), "train_iris.py", arguments=["--kernel", "linear"],
                             compute_target=cluster(ws, "d1", "STANDARD_D1_V2"))
    run = Experiment(ws, "iris-d1").submit(config)
    details = run.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Completed", details.get("error")
    expected = "rlimit" if mode == "rlimit" else CGROUP_KIND
    assert f"limits: {expected}, 1 cores, 3.5 GB" in driver_log(ws, run)
    assert 0.9 < run.get_metrics()["Accuracy"] <= 1.0
