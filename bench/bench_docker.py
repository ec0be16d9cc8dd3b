"""Docker runtime (issue 6): a run in a container vs ``docker run`` by hand, resubmits, image builds.

Rows (a Docker engine with simml's base image is needed; without one the benchmark raises, which
``run.py`` reports as an error row):

* ``Docker run of train_iris.py (image cached)``: ``experiment.submit`` of ``train_iris.py`` with
  ``DockerConfiguration(use_docker=True, arguments=["--network=none"])`` until
  ``wait_for_completion`` returns (runner already warm, environment image cached: snapshot,
  Preparing cache hit, container create/start/wait/remove, log streaming, journal ingestion,
  outputs to run history) vs the peer ``docker run --rm --init --network=none --user UID:GID -v
  SRC:/w -w /w IMAGE python3 train_iris.py`` in the same image with the same journal variables (so
  the script does the same work). Median of 7 (quick: 3), interleaved. Target: at most 1.2x.
* ``resubmit with an unchanged environment``: image builds caused by those submissions after the
  first. Target: 0.
* ``build an environment image``: ``EnvironmentImages.prepare`` of an environment with one pip
  package (``six``; quick: none) vs ``docker build`` of the same context and Dockerfile (the
  legacy builder through the CLI, ``--rm --force-rm``), each from a cold layer cache (the image is
  removed after each build). Median of 5 (quick: 2), interleaved. Target: at most 1.1x.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, Worker, median, progress, row

TARGET_RUN = 1.2
TARGET_BUILD = 1.1


def _client() -> Any:
    import docker
    client = docker.from_env()
    client.ping()
    return client


def measure_runs(repeats: int) -> dict[str, Any]:
    """In the worker: simml Docker runs vs docker run by hand, interleaved."""
    from simml.core import Experiment, ScriptRunConfig, Workspace
    from simml.core.runconfig import DockerConfiguration
    ws = Workspace.create("bench-docker", exist_ok=True, show_output=False)
    src = Path("src").resolve()
    src.mkdir(exist_ok=True)
    shutil.copy(ROOT / "train_iris.py", src / "train_iris.py")
    experiment = Experiment(ws, "docker-bench")
    config = ScriptRunConfig(str(src), "train_iris.py", docker_runtime_config=DockerConfiguration(
        use_docker=True, arguments=["--network=none"]))
    root = Path(ws.get_details()["root"])

    def simml_run() -> tuple[float, Any]:
        started = time.perf_counter()
        run = experiment.submit(config)
        details = run.wait_for_completion()
        elapsed = time.perf_counter() - started
        assert details["status"] == "Completed", details
        return elapsed, run

    _, first = simml_run()  # builds the image (once) and warms the runner
    image = None
    for line in (root / "artifacts" / first.id / "azureml-logs" /
                 "70_driver_log.txt").read_text().splitlines():
        if "in a container of " in line:
            image = line.split("in a container of ")[1].split()[0]
    assert image, "no image in the driver log"
    user = f"{os.getuid()}:{os.getgid()}"
    peer_dir = Path("peer").resolve()

    def peer_run() -> float:
        shutil.rmtree(peer_dir, ignore_errors=True)
        shutil.copytree(src, peer_dir / "wd")
        started = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "--init", "--network=none", "--user", user,
                        "-v", f"{peer_dir}:/mnt/simml/run", "-w", "/mnt/simml/run/wd",
                        "-e", "SIMML_RUN_JOURNAL=/mnt/simml/run/journal.jsonl",
                        "-e", "AZUREML_RUN_ID=peer", "-e", "PYTHONUNBUFFERED=1",
                        "-e", "HOME=/tmp", image, "python3", "train_iris.py"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
        assert (peer_dir / "wd" / "outputs" / "model.joblib").exists()
        return elapsed

    simml_times, peer_times, runs = [], [], []
    for i in range(repeats):
        order = (simml_run, peer_run) if i % 2 == 0 else (peer_run, simml_run)
        for func in order:
            if func is simml_run:
                elapsed, run = simml_run()
                simml_times.append(elapsed)
                runs.append(run)
            else:
                peer_times.append(peer_run())
    rebuilds = sum("Building image" in (root / "artifacts" / r.id / "azureml-logs" /
                                        "70_driver_log.txt").read_text() for r in runs)
    return {"simml": simml_times, "peer": peer_times, "rebuilds": rebuilds, "image": image}


def measure_builds(repeats: int, packages: list[str]) -> dict[str, Any]:
    """In the worker: EnvironmentImages.prepare vs docker build of the same context."""
    from simml_local.docker_images import (
        EnvironmentImages,
        image_labels,
        resolve_base,
        write_context,
    )
    from simml_local.environments import _job_side_files, _simml_root
    client = _client()
    home = Path(tempfile.mkdtemp(prefix="simml-bench-images-"))
    definition = {"name": "bench-image", "python": {
        "userManagedDependencies": False,
        "condaDependencies": {"dependencies": [{"pip": list(packages)}]}},
        "docker": {"baseImage": None}}
    base = resolve_base(client, definition["docker"], lambda line: None)
    base_ref = (base.tags or [base.id])[0]

    def remove(tag: str) -> None:
        try:
            client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - not there
            pass

    keys: list[str] = []

    def simml_build() -> float:
        started = time.perf_counter()
        prepared = EnvironmentImages(home).prepare(client, definition, lambda line: None)
        elapsed = time.perf_counter() - started
        assert not prepared.cached
        remove(prepared.details["image"])
        return elapsed

    def peer_build() -> float:
        with tempfile.TemporaryDirectory(prefix="simml-bench-ctx-") as folder:
            requirements = list(packages)
            # the same Dockerfile and context simml builds (labels included)
            write_context(Path(folder), base_ref, requirements, _simml_root(), _job_side_files(),
                          labels=image_labels(keys[-1], "bench-image"))
            started = time.perf_counter()
            subprocess.run(["docker", "build", "--rm", "--force-rm", "-q", "-t",
                            "simml-bench-peer:latest", folder], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.perf_counter() - started
        remove("simml-bench-peer:latest")
        return elapsed

    # an image of the same spec (an earlier run, a test) would be a cache hit: remove it first
    warm = EnvironmentImages(home).prepare(client, definition, lambda line: None)
    keys.append(warm.environment_key)
    remove(warm.details["image"])
    simml_times, peer_times = [], []
    try:
        for i in range(repeats):
            order = (simml_build, peer_build) if i % 2 == 0 else (peer_build, simml_build)
            for func in order:
                (simml_times if func is simml_build else peer_times).append(func())
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {"simml": simml_times, "peer": peer_times}


def run(quick: bool = False) -> list[dict]:
    repeats, builds = (3, 2) if quick else (7, 5)
    packages = [] if quick else ["six==1.16.0"]
    _client()  # fail early, with the engine's error, when there is none
    with Worker("docker") as worker:
        progress(f"docker: 1 + {repeats} runs of train_iris.py in a container, {repeats} by hand")
        runs = worker.call("bench_docker:measure_runs", repeats=repeats)
        progress(f"docker: {builds} image builds each way")
        built = worker.call("bench_docker:measure_builds", repeats=builds, packages=packages)
    simml_run, peer_run = median(runs["simml"]), median(runs["peer"])
    simml_build, peer_build = median(built["simml"]), median(built["peer"])
    what = ", ".join(packages) or "no packages (job side only)"
    return [
        row("Docker run of train_iris.py (image cached)", simml_run, "s", peer=peer_run,
            peer_name="docker run (same image, --network=none, same user)",
            higher_is_better=False, target=f"≤ {TARGET_RUN}× peer",
            ok=simml_run <= TARGET_RUN * peer_run,
            note=f"submit to wait_for_completion, median of {repeats}, interleaved; "
                 f"image {runs['image']}",
            samples={"simml": runs["simml"], "peer": runs["peer"]}),
        row("resubmit with an unchanged environment (Docker)", float(runs["rebuilds"]),
            "image builds", target="0", ok=runs["rebuilds"] == 0,
            note=f"{repeats} submissions after the first"),
        row(f"build an environment image ({what})", simml_build, "s", peer=peer_build,
            peer_name="docker build of the same Dockerfile", higher_is_better=False,
            target=f"≤ {TARGET_BUILD}× peer", ok=simml_build <= TARGET_BUILD * peer_build,
            note=f"cold layer cache both ways, median of {builds}, interleaved",
            samples={"simml": built["simml"], "peer": built["peer"]}),
    ]
