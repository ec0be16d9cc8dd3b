"""Warm starts (backends/simml_local/warmstart.py): a job forked by a warm interpreter must look,
to its script and to the runner, like ``python script.py`` started from nothing. Each test runs
the same script both ways (real processes) and compares what the script saw and how it ended.

``local_only`` (docs/testing.md): warm interpreters are the local runner's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simml_local import warmstart
from simml_local.warmstart import WarmStarts

pytestmark = pytest.mark.local_only

PROBE = textwrap.dedent('''
    import json, os, pickle, sys, __main__
    class Local:
        pass
    again = pickle.loads(pickle.dumps(Local()))
    print(json.dumps({
        "argv": sys.argv, "orig_argv": sys.orig_argv[1:], "path0": sys.path[0],
        "file": __main__.__file__, "name": __name__, "spec": repr(__spec__),
        "main_is_module": sys.modules["__main__"].__dict__ is globals(),
        "cwd": os.getcwd(), "stdin": sys.stdin.read(), "run_var": os.environ.get("AZUREML_RUN_ID"),
        "warm_fd": os.environ.get("SIMML_WARM_FD"), "pickled": type(again).__qualname__,
        "pgid_is_pid": os.getpgid(0) == os.getpid(), "sid_is_pid": os.getsid(0) == os.getpid(),
        "open_fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd") if int(fd) > 2),
    }))
''')


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != warmstart.ENV_VAR}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _cold(folder: Path, script: str, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, script, *args], cwd=folder, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True)
    return done.returncode, done.stdout.decode()


def _warm(starts: WarmStarts, folder: Path, script: str, args: list[str], env: dict[str, str],
          limits: dict | None = None) -> tuple[int, str, int]:
    job = starts.spawn(sys.executable, env, script, args, str(folder), limits or {})
    output = job.stdout.read().decode()
    job.stdout.close()
    return job.wait(timeout=60), output, job.pid


@pytest.fixture
def starts():
    pool = WarmStarts()
    yield pool
    pool.close()


def _write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(textwrap.dedent(text))
    return name


def test_the_script_sees_what_a_cold_start_shows(tmp_path: Path, starts: WarmStarts) -> None:
    sub = tmp_path / "src"
    sub.mkdir()
    _write(sub, "probe.py", PROBE)
    (tmp_path / "link.py").symlink_to(sub / "probe.py")
    env = _env(AZUREML_RUN_ID="run-1")
    for script in ("src/probe.py", "link.py"):
        cold_code, cold_out = _cold(tmp_path, script, ["--x", "1"], env)
        warm_code, warm_out, _ = _warm(starts, tmp_path, script, ["--x", "1"], env)
        assert cold_code == warm_code == 0, (cold_out, warm_out)
        cold, warm = json.loads(cold_out), json.loads(warm_out)
        assert warm == cold
        assert warm["path0"] == str(sub.resolve()) and warm["run_var"] == "run-1"
        assert warm["warm_fd"] is None and warm["open_fds"] == cold["open_fds"]
        assert warm["pickled"] == "Local" and warm["main_is_module"] and warm["stdin"] == ""


@pytest.mark.parametrize("body, code, expect", [
    ("raise ValueError('boom')", 1, "ValueError: boom"),
    ("import sys; sys.exit(3)", 3, None),
    ("import sys; sys.exit('bye')", 1, "bye"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL, None),
    ("raise KeyboardInterrupt", -signal.SIGINT, "KeyboardInterrupt"),
    ("import atexit; atexit.register(print, 'atexit ran')", 0, "atexit ran"),
    ("import threading, time\n"
     "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()", 0,
     "thread done"),
    ("import sys\nsys.excepthook = lambda *a: print('my hook', a[0].__name__)\nraise OSError()",
     1, "my hook OSError"),
    ("def f():\n    1 / 0\nf()", 1, None),
])
def test_endings_match_a_cold_start(tmp_path: Path, starts: WarmStarts, body: str, code: int,
                                    expect: str | None) -> None:
    script = _write(tmp_path, "end.py", body + "\n")
    cold_code, cold_out = _cold(tmp_path, script, [], _env())
    warm_code, warm_out, _ = _warm(starts, tmp_path, script, [], _env())
    assert cold_code == warm_code == code, (cold_out, warm_out)
    assert warm_out == cold_out  # the same traceback: it starts at the script, no warm frames
    if expect:
        assert expect in warm_out
    assert "warmstart" not in warm_out


def test_a_missing_script_fails_like_python(tmp_path: Path, starts: WarmStarts) -> None:
    cold_code, cold_out = _cold(tmp_path, "absent.py", [], _env())
    warm_code, warm_out, _ = _warm(starts, tmp_path, "absent.py", [], _env())
    assert cold_code == warm_code == 2
    assert "can't open file" in warm_out and "absent.py" in warm_out


def test_one_warm_interpreter_per_identity(tmp_path: Path, starts: WarmStarts) -> None:
    script = _write(tmp_path, "ppid.py", "import os, sys\nprint(os.getppid(), hash('simml'))\n")
    first = _warm(starts, tmp_path, script, [], _env(AZUREML_RUN_ID="a", PYTHONHASHSEED="1"))
    second = _warm(starts, tmp_path, script, [], _env(AZUREML_RUN_ID="b", PYTHONHASHSEED="1"))
    other = _warm(starts, tmp_path, script, [], _env(AZUREML_RUN_ID="c", PYTHONHASHSEED="2"))
    parent = {label: out.split()[0] for label, (_, out, _) in
              {"first": first, "second": second, "other": other}.items()}
    # per-run variables do not need another interpreter; a start-up variable does
    assert parent["first"] == parent["second"] != parent["other"]
    assert len(starts.interpreters) == 2
    # and the start-up variable took effect: the seed chose the hash, as in a cold start
    cold = _cold(tmp_path, script, [], _env(PYTHONHASHSEED="2"))[1]
    assert other[1].split()[1] == cold.split()[1]


def test_limits_fall_back_to_rlimit_when_a_group_cannot_be_joined(
        tmp_path: Path, starts: WarmStarts) -> None:
    script = _write(tmp_path, "lim.py",
                    "import resource\nprint(resource.getrlimit(resource.RLIMIT_DATA)[0])\n")
    limits = {"memory_procs": str(tmp_path / "no-such-group" / "cgroup.procs"),
              "cpu_procs": None, "rlimit": None, "fallback": 3 * 2**30, "affinity": None}
    code, out, _ = _warm(starts, tmp_path, script, [], _env(), limits)
    assert code == 0 and int(out) == 3 * 2**30
    code, out, _ = _warm(starts, tmp_path, script, [], _env(), {})
    assert code == 0 and int(out) != 3 * 2**30


def test_a_job_outlives_its_warm_interpreter(tmp_path: Path, starts: WarmStarts) -> None:
    script = _write(tmp_path, "slow.py", "import time\ntime.sleep(1)\nprint('done')\n")
    job = starts.spawn(sys.executable, _env(), script, [], str(tmp_path), {})
    (warm,) = starts.interpreters.values()
    warm.process.kill()
    warm.process.wait()
    assert job.stdout.read() == b"done\n"  # the job ran to its end
    # its status died with the interpreter: it reads as killed, and nobody hangs
    assert job.wait(timeout=30) == -signal.SIGKILL
    # the next job gets a new warm interpreter
    code, out, _ = _warm(starts, tmp_path, script, [], _env())
    assert (code, out) == (0, "done\n")


def test_closing_lets_running_jobs_finish(tmp_path: Path) -> None:
    pool = WarmStarts()
    script = _write(tmp_path, "slow.py", "import time\ntime.sleep(0.5)\nraise SystemExit(4)\n")
    job = pool.spawn(sys.executable, _env(), script, [], str(tmp_path), {})
    (warm,) = pool.interpreters.values()
    pool.close()
    assert job.wait(timeout=30) == 4  # reported after the runner stopped taking new jobs
    assert warm.process.wait(timeout=30) == 0  # and the warm interpreter then exited


def test_the_start_mode_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(warmstart.ENV_VAR, "exec")
    assert not warmstart.enabled()
    monkeypatch.setenv(warmstart.ENV_VAR, "warm")
    assert warmstart.enabled()
    monkeypatch.setenv(warmstart.ENV_VAR, "lukewarm")
    with pytest.raises(ValueError, match="SIMML_JOB_START"):
        warmstart.enabled()


@pytest.mark.parametrize("mode", ["warm", "exec"])
def test_submitted_runs_are_the_same_either_way(ws, tmp_path: Path, mode: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from simml.core import Experiment, ScriptRunConfig
    monkeypatch.setenv(warmstart.ENV_VAR, mode)
    src = tmp_path / "job"
    src.mkdir()
    _write(src, "job.py", '''
        import os, sys
        from simml.core.run import Run
        run = Run.get_context()
        run.log("argv", " ".join(sys.argv[1:]))
        run.log("in_run", os.environ["AZUREML_RUN_ID"] == run.id)
        os.makedirs("outputs", exist_ok=True)
        open("outputs/out.txt", "w").write("ok")
        raise SystemExit(int(sys.argv[2]))
    ''')
    experiment = Experiment(ws, f"warm-{mode}")
    good = experiment.submit(ScriptRunConfig(str(src), "job.py", arguments=["--code", "0"]))
    bad = experiment.submit(ScriptRunConfig(str(src), "job.py", arguments=["--code", "5"]))
    assert good.wait_for_completion()["status"] == "Completed"
    assert good.get_metrics() == {"argv": "--code 0", "in_run": True}
    assert "outputs/out.txt" in good.get_file_names()
    details = bad.wait_for_completion(raise_on_error=False)
    assert details["status"] == "Failed"
    assert "exited with code 5" in details["error"]["error"]["message"]


def test_an_interpreter_that_cannot_host_a_warm_start_says_why(tmp_path: Path) -> None:
    """The runner then starts the job as a new interpreter (``_start_job`` catches OSError)."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'this interpreter has no socket.recv_fds' >&2\nexit 1\n")
    fake.chmod(0o755)
    pool = WarmStarts()
    with pytest.raises(OSError, match="did not start: this interpreter has no socket.recv_fds"):
        pool.spawn(str(fake), _env(), "job.py", [], str(tmp_path), {})
    pool.close()
