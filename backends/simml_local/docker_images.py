"""Docker images of the local backend's Docker runtime: simml's base image and environment images.

**Base image** (``simml docker build-base``; no container registry needed): a root filesystem
made from the host's own installed Debian ``python3`` packages (``hostpkg``, about 30 s) or a
minimal Debian (``debootstrap``, from the mirror apt uses), plus scikit-learn, numpy, scipy,
joblib and threadpoolctl *at the versions installed on the host* (so models unpickle both ways)
and pip, precompiled, imported into the engine as ``simml-base:<simml version>``. Its labels
record the pinned versions.

**Choosing a run's base** (``resolve_base``): ``environment.docker.base_dockerfile`` is built (and
cached by its text's hash); no base image or one of Azure's ``mcr.microsoft.com/azureml/...``
images means simml's base image (a WARNING line says so for Azure's); any other ``base_image`` is
used when the engine has it and pulled otherwise; a pull that fails (no registry is reachable)
ends Preparing at once, naming the build command.

**Environment images** (``EnvironmentImages.prepare``): ``FROM <base>`` plus the environment's
pip packages (the same resolved spec as the process runtime: normalised pip requirements, conda
packages mapped to PyPI, pip options) and simml's job side (the ``simml`` package's ``.py`` files
in ``/opt/simml/job``, on ``PYTHONPATH``), tagged ``simml-env:<key>`` where the key hashes the
spec, the base image's id and the job side's fingerprint: an unchanged environment is never built
twice, a changed one gets a new image. The build log streams into the driver log; a failed build
raises ``EnvironmentBuildException`` with its tail and leaves no intermediate container
(``rm=True, forcerm=True``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from simml.core.environment import EnvironmentBuildException
from simml.entities import PreparedEnvironment
from simml.exceptions import InvalidValueException

LOG_PREFIX = "[preparing] "
BASE_REPOSITORY = "simml-base"
ENV_REPOSITORY = "simml-env"
DOCKERFILE_REPOSITORY = "simml-dockerfile"
AZURE_IMAGE_PREFIXES = ("mcr.microsoft.com/azureml/", "mcr.microsoft.com/azureml-")
PINNED = ("scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl")
"""Installed in the base image at the host's versions."""
IMAGE_FORMAT = 1
"""Bumped when environment images are built differently (part of every key)."""
JOB_DIR = "/opt/simml/job"
PULL_TIMEOUT_SECONDS = float(os.environ.get("SIMML_DOCKER_PULL_TIMEOUT", "20"))
ERROR_TAIL_LINES = 40
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "
            "PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 "
            "PIP_NO_WARN_SCRIPT_LOCATION=1 "
            "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt "
            "PIP_CERT=/etc/ssl/certs/ca-certificates.crt "
            "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
METHODS = ("hostpkg", "debootstrap")


def default_base_tag() -> str:
    from simml_local.environments import simml_version
    return f"{BASE_REPOSITORY}:{simml_version()}"


def host_pins() -> dict[str, str]:
    """The versions of ``PINNED`` installed with the Python simml runs on."""
    from importlib.metadata import PackageNotFoundError, version
    pins = {}
    for name in PINNED:
        try:
            pins[name] = version(name)
        except PackageNotFoundError:
            continue
    return pins


def _image(client: Any, name: str) -> Any | None:
    import docker.errors
    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


# --- the base image ------------------------------------------------------------------------------

def _debian_python_minor() -> str:
    """``3.11`` from the host's Debian ``python3`` package (what the rootfs will hold)."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "python3"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise EnvironmentBuildException(
            "The hostpkg method copies the host's Debian python3 package, and dpkg-query does "
            f"not know one here ({exc}). Use --method debootstrap (needs debootstrap and a "
            "Debian mirror) on another system.") from exc
    match = re.match(r"(\d+)\.(\d+)", out)
    if not match:
        raise EnvironmentBuildException(f"Cannot read the host python3 package version {out!r}.")
    return f"{match.group(1)}.{match.group(2)}"


def _apt_mirror() -> tuple[str, str]:
    """The Debian mirror and suite apt uses here (``/etc/apt/sources*``)."""
    uri, suite = None, None
    sources = sorted(Path("/etc/apt").glob("sources.list.d/*")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:") and uri is None and "security" not in line:
                uri = line.split(None, 1)[1].split()[0]
            elif line.startswith("Suites:") and suite is None:
                suite = line.split(None, 1)[1].split()[0]
            elif line.startswith("deb ") and uri is None and "security" not in line:
                parts = [p for p in line.split() if not p.startswith("[")]
                if len(parts) >= 3:
                    uri, suite = parts[1], parts[2]
    if uri is None:
        raise EnvironmentBuildException("No Debian mirror found in /etc/apt/sources*.")
    if suite is None:
        suite = "bookworm"
    return uri, suite


def _run(command: list[str], log: Callable[[str], None], what: str,
         env: dict[str, str] | None = None) -> None:
    process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
    output = process.stdout.decode("utf-8", "replace").rstrip()
    if process.returncode != 0:
        tail = "\n".join(output.splitlines()[-ERROR_TAIL_LINES:])
        raise EnvironmentBuildException(
            f"Building simml's base image failed: {what} exited with code "
            f"{process.returncode}.\n{tail}")
    for line in output.splitlines()[-5:]:
        log(f"  {line}")


def build_base_image(client: Any, tag: str | None, method: str, log: Callable[[str], None]
                     ) -> str:
    """Build simml's base image without a registry; returns its id (see the module doc)."""
    if method not in METHODS:
        raise InvalidValueException(
            f"Unknown base-image method {method!r}: use {' or '.join(METHODS)}.")
    tag = tag or default_base_tag()
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    pins = host_pins()
    missing = [name for name in ("scikit-learn", "numpy", "scipy", "joblib") if name not in pins]
    if missing:
        raise EnvironmentBuildException(
            f"The host has no {', '.join(missing)}: the base image pins the host's versions.")
    work = Path(tempfile.mkdtemp(prefix="simml-base-", dir=os.environ.get("TMPDIR", "/tmp")))
    rootfs = work / "rootfs"
    rootfs.mkdir()
    started = time.perf_counter()
    try:
        t = time.perf_counter()
        if method == "hostpkg":
            minor = _debian_python_minor()
            script = Path(__file__).with_name("docker_base") / "hostpkg-rootfs.sh"
            log(f"[build-base] rootfs from the host's Debian packages (python{minor})")
            _run(["bash", str(script), str(work / "host.tar"), "python3", "dash", "coreutils",
                  "libstdc++6"], log, "hostpkg-rootfs.sh")
            _run(["tar", "-C", str(rootfs), "-xf", str(work / "host.tar")], log, "tar -x")
            (work / "host.tar").unlink()
            for folder in ("tmp", "var/tmp", "var/log", "root", "proc", "sys", "dev", "etc",
                           "home", "opt", "mnt", "srv", "run", "usr/local/bin"):
                (rootfs / folder).mkdir(parents=True, exist_ok=True)
            os.chmod(rootfs / "tmp", 0o1777)
            os.chmod(rootfs / "var" / "tmp", 0o1777)
        else:
            if shutil.which("debootstrap") is None:
                raise EnvironmentBuildException(
                    "debootstrap is not installed (apt-get install debootstrap).")
            mirror, suite = _apt_mirror()
            log(f"[build-base] debootstrap --variant=minbase {suite} from {mirror}")
            _run(["debootstrap", "--variant=minbase", "--include=python3,ca-certificates",
                  suite, str(rootfs), mirror], log, "debootstrap")
            for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                            "var/lib/apt/lists/*"):
                for path in rootfs.glob(pattern):
                    if path.is_file():
                        path.unlink()
            versions = sorted(rootfs.glob("usr/bin/python3.[0-9]*"))
            names = [p.name for p in versions if re.fullmatch(r"python3\.\d+", p.name)]
            if not names:
                raise EnvironmentBuildException("debootstrap's rootfs has no python3.X.")
            minor = names[-1].removeprefix("python")
        log(f"[build-base] rootfs: {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        site = rootfs / "usr" / "local" / "lib" / f"python{minor}" / "dist-packages"
        requirements = [f"{name}=={version}" for name, version in sorted(pins.items())] + ["pip"]
        abi = "cp" + minor.replace(".", "")
        log(f"[build-base] pip install --target (Python {minor}): {' '.join(requirements)}")
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(site),
              "--only-binary=:all:", "--implementation", "cp", "--python-version", minor,
              "--abi", abi, "--platform", "manylinux_2_28_x86_64", "--platform",
              "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64", "--platform",
              "linux_x86_64", "--platform", "any", *requirements], log, "pip install --target")
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts land here with --target
        for managed in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
            managed.unlink()  # derived images may pip install
        if HOST_CA_BUNDLE.is_file():  # TLS to package indexes may go through a local CA
            (rootfs / "etc" / "ssl" / "certs").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc" / "ssl" / "certs" /
                            "ca-certificates.crt")
        log(f"[build-base] packages: {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        # Precompile (else every container recompiles scikit-learn into its throwaway layer).
        # The host's Debian python3.X is the rootfs's own interpreter: no chroot needed.
        compiler = f"/usr/bin/python{minor}"
        if not os.path.exists(compiler):
            compiler = str(rootfs / "usr" / "bin" / f"python{minor}")
        for tree in (site, rootfs / "usr" / "lib" / f"python{minor}"):
            _run([compiler, "-m", "compileall", "-q", "-j", "0", "-s", str(rootfs), "-p", "/",
                  str(tree)], log, f"compileall {tree.name}",
                 env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
        log(f"[build-base] compileall: {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        labels = {"simml.kind": "base", "simml.method": method, "simml.python": minor,
                  "simml.pins": json.dumps(pins, sort_keys=True, separators=(",", ":"))}
        changes = [f"ENV {BASE_ENV}", 'CMD ["python3"]'] + [
            f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()]
        # tar streams straight into the engine (no archive on disk)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            chunks = iter(lambda: tar.stdout.read(1 << 20), b"")  # type: ignore[union-attr]
            result = client.api.import_image(src=chunks, stream_src=True,
                                             repository=repository, tag=version,
                                             changes=changes)
        finally:
            tar.stdout.close()  # type: ignore[union-attr]
            tar_error = tar.stderr.read().decode("utf-8", "replace")  # type: ignore[union-attr]
            if tar.wait() != 0:
                raise EnvironmentBuildException(f"tar of the rootfs failed: {tar_error}")
        log(f"[build-base] docker import: {time.perf_counter() - t:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    image = _image(client, tag)
    if image is None:
        raise EnvironmentBuildException(f"docker import did not create {tag}: {result!r}")
    check = client.containers.run(
        image.id, ["python3", "-c", "import sklearn, numpy, scipy, joblib, json; print(json.dumps("
                   "{'scikit-learn': sklearn.__version__, 'numpy': numpy.__version__, "
                   "'scipy': scipy.__version__, 'joblib': joblib.__version__}))"],
        network_mode="none", remove=True, stdout=True, stderr=True)
    seen = json.loads(check.decode().strip().splitlines()[-1])
    wrong = {k: v for k, v in seen.items() if pins.get(k) != v}
    if wrong:
        raise EnvironmentBuildException(f"The base image holds {wrong}, not the host's {pins}.")
    log(f"[build-base] {tag} ({image.short_id}) ready in {time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
    return str(image.id)


# --- a run's base image --------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _lines(chunk: dict[str, Any]) -> list[str]:
    text = _ANSI.sub("", str(chunk.get("stream") or chunk.get("status") or ""))
    return [line for line in str(text).splitlines() if line.strip()]


def image_labels(key: str, label: str) -> dict[str, str]:
    return {"simml.kind": "environment", "simml.key": key, "simml.environment": label}


def stream_build(client: Any, context: Path | io.BytesIO, tag: str, labels: dict[str, str],
                 log: Callable[[str], None], should_cancel: Callable[[], bool] | None,
                 what: str) -> Any:
    """``docker build`` of ``context`` with the log streamed; the built image.

    :raises EnvironmentBuildException: the build failed (its tail in the message).
    :raises BuildCanceled: ``should_cancel`` said so (the build is abandoned; the engine stops
        it and removes its intermediate container).
    """
    transcript: list[str] = []
    errors: list[str] = []
    where: dict[str, Any] = ({"path": str(context)} if isinstance(context, Path) else
                             {"fileobj": context, "custom_context": True})
    stream = client.api.build(**where, tag=tag, rm=True, forcerm=True, decode=True,
                              pull=False, labels=labels or None)
    try:
        for chunk in stream:
            if "error" in chunk:
                errors.append(str(chunk.get("error")).rstrip())
            for line in _lines(chunk):
                transcript.append(line)
                log(LOG_PREFIX + line)
            if should_cancel is not None and should_cancel():
                raise BuildCanceled()
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    if errors:
        tail = "\n".join((transcript + errors)[-ERROR_TAIL_LINES:])
        raise EnvironmentBuildException(
            f"Preparing the environment failed: {what} failed: {errors[-1]}\n{tail}\n"
            "(The whole build log is in azureml-logs/70_driver_log.txt.)")
    image = _image(client, tag)
    if image is None:
        raise EnvironmentBuildException(f"Preparing the environment failed: {what} produced no "
                                        f"image {tag}.\n" + "\n".join(transcript[-20:]))
    return image


class BuildCanceled(Exception):
    """A cancel request stopped an image build."""


def resolve_base(client: Any, docker: dict[str, Any], log: Callable[[str], None],
                 should_cancel: Callable[[], bool] | None = None) -> Any:
    """The base image of a run (an ``Image``); see the module doc."""
    dockerfile = docker.get("baseDockerfile")
    if dockerfile:
        digest = hashlib.sha256(str(dockerfile).encode()).hexdigest()[:16]
        tag = f"{DOCKERFILE_REPOSITORY}:{digest}"
        image = _image(client, tag)
        if image is not None:
            log(f"{LOG_PREFIX}base_dockerfile: image {tag} is up to date (cached)")
            return image
        log(f"{LOG_PREFIX}base_dockerfile: building {tag}")
        with tempfile.TemporaryDirectory(prefix="simml-dockerfile-") as folder:
            Path(folder, "Dockerfile").write_text(str(dockerfile), encoding="utf-8")
            return stream_build(client, Path(folder), tag, {"simml.kind": "dockerfile"}, log,
                                should_cancel, "building base_dockerfile")  # one label: 1 step
    name = docker.get("baseImage")
    default = default_base_tag()
    if not name or str(name).startswith(AZURE_IMAGE_PREFIXES):
        if name:
            log(f"{LOG_PREFIX}WARNING: base image {name} is one of Azure's; no registry is "
                f"reachable from here, so simml's base image {default} is used instead")
        image = _image(client, default)
        if image is None:
            raise EnvironmentBuildException(
                f"simml's Docker base image {default} is not in the local Docker engine. Build "
                "it once with `simml docker build-base` (no registry needed; about 30 s).")
        _check_pins(image, log)
        return image
    image = _image(client, name)
    if image is not None:
        return image
    log(f"{LOG_PREFIX}base image {name} is not in the local engine: pulling it")
    failure: list[BaseException] = []
    pulled: list[Any] = []

    def pull() -> None:
        try:
            pulled.append(client.images.pull(name))
        except BaseException as exc:  # reported below
            failure.append(exc)

    puller = threading.Thread(target=pull, daemon=True)
    puller.start()
    puller.join(PULL_TIMEOUT_SECONDS)
    if pulled:
        image = pulled[0][0] if isinstance(pulled[0], list) else pulled[0]
        log(f"{LOG_PREFIX}pulled {name} ({image.short_id})")
        return image
    reason = (f"{type(failure[0]).__name__}: {failure[0]}" if failure else
              f"no answer within {PULL_TIMEOUT_SECONDS:g} s")
    raise EnvironmentBuildException(
        f"Base image {name!r} is not in the local Docker engine and could not be pulled "
        f"({' '.join(reason.split())}). No container registry may be reachable from here: build "
        f"the image locally (docker build -t {name} .), or leave environment.docker.base_image "
        f"unset to use simml's base image (build it with `simml docker build-base`).")


def _check_pins(image: Any, log: Callable[[str], None]) -> None:
    try:
        pins = json.loads((image.labels or {}).get("simml.pins") or "{}")
    except ValueError:
        return
    host = host_pins()
    differ = {k: (v, host.get(k)) for k, v in pins.items() if host.get(k) not in (None, v)}
    if differ:
        log(f"{LOG_PREFIX}WARNING: the base image's packages differ from this host's "
            f"({', '.join(f'{k} {a} there, {b} here' for k, (a, b) in sorted(differ.items()))}): "
            "models may not unpickle across them; rebuild it with `simml docker build-base`")


# --- environment images --------------------------------------------------------------------------

INDEX_OPTIONS = {"UV_DEFAULT_INDEX": "--index-url", "UV_INDEX_URL": "--index-url",
                 "UV_EXTRA_INDEX_URL": "--extra-index-url", "UV_INDEX": "--extra-index-url"}


class EnvironmentImages:
    """Environment images, cached by the hash of what goes into them (``<home>/docker/`` holds
    the build locks)."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.locks = Path(home) / "docker"

    def prepare(self, client: Any, environment: dict[str, Any], log: Callable[[str], None],
                source_dir: Path | None = None,
                should_cancel: Callable[[], bool] | None = None) -> PreparedEnvironment:
        from simml_local.environments import (
            job_side_fingerprint,
            resolve_spec,
        )
        started = time.perf_counter()
        docker = environment.get("docker") or {}
        user_managed = (environment.get("python") or {}).get("userManagedDependencies") is not \
            False
        requirements: list[str] = []
        notes: list[str] = []
        label = str(environment.get("name") or "default-environment")
        if environment.get("version"):
            label += f" (version {environment['version']})"
        if not user_managed:
            spec = resolve_spec(environment, source_dir)
            notes = list(spec.notes)
            index = [f"{INDEX_OPTIONS[k]} {v}" for k, v in sorted(spec.index.items())
                     if k in INDEX_OPTIONS and v.startswith(("http://", "https://"))]
            requirements = [*index, *spec.options, *spec.conda, *spec.pip]
        base = resolve_base(client, docker, log, should_cancel)
        key_dict = {"format": IMAGE_FORMAT, "base": base.id, "requirements": requirements,
                    "job": job_side_fingerprint()}
        key = hashlib.sha256(json.dumps(key_dict, sort_keys=True).encode()).hexdigest()
        tag = f"{ENV_REPOSITORY}:{key[:32]}"
        image = _image(client, tag)
        cached = image is not None
        if cached:
            log(f"{LOG_PREFIX}Image {tag} for environment {label} is up to date (cached)")
        else:
            self.locks.mkdir(parents=True, exist_ok=True)
            with open(self.locks / f"{key[:32]}.lock", "a+b") as lock:
                _flock(lock, log, should_cancel, tag)
                image = _image(client, tag)
                if image is not None:
                    log(f"{LOG_PREFIX}Image {tag} was built by another run meanwhile (cached)")
                    cached = True
                else:
                    for note in notes:
                        log(f"{LOG_PREFIX}note: {note}")
                    image = self._build(client, base, tag, key, requirements, label, log,
                                        should_cancel)
                    log(f"{LOG_PREFIX}Image {tag} for environment {label} is ready "
                        f"({time.perf_counter() - started:.1f} s)")
        return PreparedEnvironment(
            runtime="docker", environment_key=key, cached=cached,
            details={"image": tag, "image_id": image.id, "base_image": base.id,
                     "python": "python3", "environment_name": environment.get("name"),
                     "environment_version": environment.get("version"),
                     "environment_variables": {str(k): str(v) for k, v in (
                         environment.get("environmentVariables") or {}).items()}})

    def _build(self, client: Any, base: Any, tag: str, key: str, requirements: list[str],
               label: str, log: Callable[[str], None],
               should_cancel: Callable[[], bool] | None) -> Any:
        from simml_local.environments import _job_side_files, _simml_root
        base_ref = (base.tags or [base.id])[0]
        log(f"{LOG_PREFIX}Building image {tag} for environment {label}: FROM {base_ref}, "
            f"{len(requirements)} requirement(s)")
        entries = context_entries(base_ref, requirements, _simml_root(), _job_side_files(),
                                  labels=image_labels(key, label))
        return stream_build(client, context_tar(entries), tag, {}, log, should_cancel,
                            f"building image {tag}")


def context_entries(base_ref: str, requirements: list[str], simml_root: Path,
                    job_files: list[Path], labels: dict[str, str] | None = None
                    ) -> list[tuple[str, bytes | Path]]:
    """The build context of an environment image: ``(name, content or source file)``, the
    Dockerfile first."""
    lines = [f"FROM {base_ref}"]
    entries: list[tuple[str, bytes | Path]] = []
    if requirements:
        entries.append(("simml-requirements.txt", ("\n".join(requirements) + "\n").encode()))
        lines.append("COPY simml-requirements.txt /opt/simml/requirements.txt")
        pip = "python3 -m pip install --no-cache-dir -r /opt/simml/requirements.txt"
        if HOST_CA_BUNDLE.is_file():  # the index may sit behind a local CA (as on this host)
            entries.append(("simml-ca.crt", HOST_CA_BUNDLE))
            lines.append("COPY simml-ca.crt /opt/simml/ca.crt")
            pip = "PIP_CERT=/opt/simml/ca.crt SSL_CERT_FILE=/opt/simml/ca.crt " + pip
        lines.append(f"RUN {pip}")
    entries += [(f"simml-job/simml/{path.relative_to(simml_root).as_posix()}", path)
                for path in job_files]
    lines += [f"COPY simml-job {JOB_DIR}",
              f"RUN python3 -m compileall -q {JOB_DIR} >/dev/null || true",
              f"ENV PYTHONPATH={JOB_DIR}"]
    if labels:  # one instruction (the build API's labels= adds a step per label)
        lines.append("LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(
            labels.items())))
    return [("Dockerfile", ("\n".join(lines) + "\n").encode()), *entries]


def write_context(context: Path, *args: Any, **kwargs: Any) -> str:
    """The build context as a folder (what the benchmark gives ``docker build``); returns the
    Dockerfile's text."""
    for name, content in context_entries(*args, **kwargs):
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    return (context / "Dockerfile").read_text()


def context_tar(entries: list[tuple[str, bytes | Path]]) -> io.BytesIO:
    """The build context as an in-memory tar (no copies on disk)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in entries:
            if isinstance(content, Path):
                tar.add(str(content), arcname=name, recursive=False)
            else:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer


def _flock(handle: Any, log: Callable[[str], None], should_cancel: Callable[[], bool] | None,
           tag: str) -> None:
    from simml_local.files import lock_or_wait
    if not lock_or_wait(handle, lambda: log(f"{LOG_PREFIX}another run is building image {tag}: "
                                            "waiting for it"), should_cancel):
        raise BuildCanceled()
