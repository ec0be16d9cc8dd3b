"""Execution routes of the emulator: the real client's ``experiment.submit`` runs on simml.

``POST .../snapshotrun?runId=`` (a remote target: an estimator or a ``ScriptRunConfig`` on an
AmlCompute cluster) and ``POST .../localrun?runId=`` (``compute_target='local'``) are translated
into simml's own submission (``ScriptRunConfig``, ``Environment``, data references) and submitted
through ``simml.core.submission.submit_script_run`` with the run id the client chose, so simml's
detached runner drives the run through Azure's statuses on the simulated cluster (or this
machine) and it shows in ``simml run list``. The job's source is the snapshot the client uploaded
(``emulator.snapshots.source_directory``, the artifacts module).

``localrun`` differs from Azure's: Azure answers with a script the client runs in the background
in ``/tmp/azureml_runs/<run id>/``; here the emulator owns execution (one runner, one set of
statuses and logs for every run), so the ``Invocation.sh`` it returns only exits. The client
uploads its snapshot concurrently and names it in the ``PATCH`` that follows ``localrun``; the
run is submitted then (``on_run_patch``). ``run.cancel()`` posts the ``Canceled`` event (the
client writes its kill file, which nothing here reads); the run events route hands a submitted
run's cancel to simml's runner.

The job gets Azure's ``AZUREML_*`` variables and a run token signed with the emulator's key
(through the run definition's environment variables, as any run's), so the real SDK's
``Run.get_context()`` inside it returns a ``_SubmittedRun`` that logs to the emulator; simml's
own job side (``simml.core.run.Run``) keeps working in the same job. An environment that lists
``azureml-*`` packages keeps them (``installAzureml``: the job needs the real SDK), with
``azureml-defaults`` mapped to ``azureml-core`` to keep builds short.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from simml.emulator.protocol import ARM_SCOPE, AzureError, bad_request, mint_token, released
from simml.emulator.service import Request, Response

if TYPE_CHECKING:
    from simml.core.experiment import Experiment
    from simml.core.script_run_config import ScriptRunConfig
    from simml.emulator.service import Emulator

EXECUTION = "/execution/v1.0" + ARM_SCOPE + "/experiments/{exp}"
HISTORY = "/history/v1.0" + ARM_SCOPE
TOKEN_QUEUE_ALLOWANCE_SECONDS = 7 * 24 * 3600
"""A run token covers the run's ``max_run_duration_seconds`` plus this much time in the queue
(the token is minted at submission; the SDK refreshes it through ``/token`` near its expiry)."""
REFRESHED_TOKEN_SECONDS = 24 * 3600
PENDING_LOCAL_SECONDS = 3600.0
"""How long a ``localrun`` waits for the client's ``PATCH`` naming its snapshot."""
MAX_PENDING_LOCAL = 1000
SDK_PACKAGE_MAP = {"azureml-defaults": "azureml-core"}
"""Package names rewritten in the job's environment: ``azureml-defaults`` is ``azureml-core`` plus
the inference server and dataset runtime a training job does not use (a build of tens of seconds
more). The version specifier is kept (both are released together)."""
PYPI_HOSTS = ("pypi.python.org", "pypi.org", "files.pythonhosted.org")
JOB_HOOK = Path(__file__).resolve().parent / "jobhook"
"""The folder put first on the job's ``PYTHONPATH``: its ``sitecustomize`` flushes the SDK's run
when the script ends (as Azure's job wrapper does)."""
UNSUPPORTED_ROUTES = ("startrun", "snapshotprepare", "snapshotcheckprepare", "prepare",
                      "checkprepare", "localprepare", "startprepare", "startcheckprepare")
INVOCATION_SH = """#!/bin/bash
# simml emulator: the run {run_id} is executed by simml's runner, like every run of the
# workspace (statuses, logs and outputs are in run history), not by this script.
exit 0
"""
INVOCATION_BAT = "@echo off\r\nrem simml emulator: simml's runner executes run {run_id}.\r\n" \
                 "exit /b 0\r\n"
_DATA_REFERENCE_NAME = re.compile(r"^[A-Za-z0-9_]{1,255}$")


def register(emulator: "Emulator") -> None:
    """Add the execution routes to ``emulator`` (``Emulator._register`` calls this)."""
    Execution(emulator).register()


@dataclass
class PendingLocalRun:
    """A ``localrun`` accepted and waiting for the client's snapshot (its ``PATCH``)."""

    experiment: str
    configuration: dict[str, Any]
    base_url: str
    accepted: float = field(default_factory=time.monotonic)


class Execution:
    """The execution routes of one emulator (state: the local runs waiting for their snapshot)."""

    def __init__(self, emulator: "Emulator") -> None:
        self.emulator = emulator
        self.workspace = emulator.workspace
        self._pending: dict[str, PendingLocalRun] = {}
        self._pending_lock = threading.Lock()

    def register(self) -> None:
        add = self.emulator.router.add
        add("POST", EXECUTION + "/snapshotrun", self.snapshot_run)
        add("POST", EXECUTION + "/localrun", self.local_run)
        for name in UNSUPPORTED_ROUTES:
            add("POST", EXECUTION + "/" + name, self.unsupported)
        for runs in (HISTORY + "/experiments/{exp}/runs/{run}",
                     HISTORY + "/experimentids/{expid}/runs/{run}"):
            add("GET", runs + "/token", self.run_token)
        self.emulator.run_patch_hooks.append(self.on_run_patch)

    # --- routes ----------------------------------------------------------------------------------
    def snapshot_run(self, req: Request) -> dict[str, Any]:
        """Submit a run on a compute target from an uploaded snapshot (``_start_internal``)."""
        body = req.json_object()
        configuration = _field(body, "Configuration")
        if not isinstance(configuration, dict):
            raise bad_request("The run definition needs a Configuration object.")
        _refuse_parent(body)
        snapshot_id = _field(body, "SnapshotId")
        if not snapshot_id:
            ids = _field(body, "SnapshotIds")
            snapshot_id = ids[0] if isinstance(ids, list) and len(ids) == 1 else None
        if not isinstance(snapshot_id, str) or not snapshot_id:
            raise bad_request("The run definition names no snapshot (SnapshotId): the emulator "
                              "runs jobs from the snapshot the client uploaded.",
                              inner="SnapshotNotFound")
        run_id = self._run_id(req)
        self.submit(req.params["exp"], configuration, snapshot_id, run_id, req.base_url)
        return {"runId": run_id}

    def local_run(self, req: Request) -> Response:
        """Accept a ``compute_target='local'`` run (``_start_internal_local_cloud``): check it,
        keep it until the client's ``PATCH`` names its snapshot, answer ``Invocation.zip``."""
        parts = _multipart(req)
        raw = parts.get("definition.json")
        if raw is None:
            raise bad_request("localrun needs a definition.json part.")
        try:
            definition = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(f"definition.json is not valid JSON: {exc}.",
                              inner="InvalidJson") from exc
        if not isinstance(definition, dict) or not isinstance(
                _field(definition, "Configuration"), dict):
            raise bad_request("definition.json needs a Configuration object.")
        _refuse_parent(definition)
        configuration = _field(definition, "Configuration")
        history = configuration.get("history") or {}
        if history.get("snapshotProject") is False:
            raise bad_request(
                "The emulator runs local runs from the run's snapshot, and this run has none "
                "(run_config.history.snapshot_project = False): leave it True.",
                inner="NotSupported")
        run_id = self._run_id(req)
        experiment = req.params["exp"]
        # Everything that can be checked without the source is checked now, so a bad run fails
        # the submit itself, as on Azure.
        from simml.core.experiment import validate_experiment_name
        validate_experiment_name(experiment)
        _translate(self.workspace, configuration, {})
        with self._pending_lock:
            self._expire_pending()
            if run_id in self._pending or len(self._pending) >= MAX_PENDING_LOCAL:
                raise bad_request(f"A local run with id {run_id!r} is already being submitted.")
            self._pending[run_id] = PendingLocalRun(experiment, configuration, req.base_url)
        return Response(200, _invocation_zip(run_id),
                        {"Content-Type": "application/zip",
                         "Content-Disposition": "attachment; filename=Invocation.zip"})

    def unsupported(self, req: Request) -> None:
        what = req.path.rsplit("/", 1)[-1]
        raise bad_request(
            f"simml emulator: {what} is not supported. Submit with a snapshot (the default; "
            "unset AML_FORCE_EXECUTE_WITH_ZIP) or with compute_target='local'; environments are "
            "prepared by the run itself.", inner="NotSupported")

    def run_token(self, req: Request) -> dict[str, Any]:
        """A fresh run token (``AzureMLTokenAuthentication`` refreshes before expiry)."""
        run_id = self.emulator._run_info(req.params["run"]).id
        now = int(time.time())
        token = mint_token(self._key(), subject=f"run:{run_id}", seconds=REFRESHED_TOKEN_SECONDS,
                           scope=run_id, now=now)
        return {"token": token,
                "expiryTimeUtc": _iso_seconds(now + REFRESHED_TOKEN_SECONDS)}

    def on_run_patch(self, req: Request, body: dict[str, Any]) -> None:
        """The ``PATCH`` after ``localrun`` names the snapshot: submit the waiting run."""
        run_id = req.params["run"]
        with self._pending_lock:
            pending = self._pending.pop(run_id, None)
        if pending is None:
            return
        snapshot_id = (body.get("properties") or {}).get("ContentSnapshotId")
        if not isinstance(snapshot_id, str) or not snapshot_id:
            raise bad_request(f"Run {run_id} was submitted with localrun but names no snapshot "
                              "(ContentSnapshotId): the emulator runs it from the snapshot.",
                              inner="SnapshotNotFound")
        self.submit(pending.experiment, pending.configuration, snapshot_id, run_id,
                    pending.base_url)

    # --- submission ------------------------------------------------------------------------------
    def submit(self, experiment_name: str, configuration: dict[str, Any], snapshot_id: str,
               run_id: str, base_url: str) -> None:
        """Translate and submit through simml's API; nothing is written when anything is
        refused (unknown target, snapshot or script, unsupported setting)."""
        from simml.core.experiment import validate_experiment_name
        from simml.core.submission import submit_script_run
        from simml.exceptions import (
            ComputeTargetException,
            RunConfigurationException,
            SnapshotException,
        )
        validate_experiment_name(experiment_name)
        _translate(self.workspace, configuration, {})  # refused before anything is written
        # The snapshot's files are copied twice (materialised, then into simml's snapshot): let
        # other requests run meanwhile. The store is transactional by itself (a run id taken
        # meanwhile fails create_run) and this touches no shared emulator state.
        with released(self.emulator._lock):
            source = self._source(snapshot_id)
            script = PurePosixPath(str(configuration.get("script")))
            if script.is_absolute() or ".." in script.parts or not (source / script).is_file():
                raise bad_request(f"The script {str(script)!r} is not in snapshot "
                                  f"{snapshot_id}.", inner="ScriptNotFound")
            experiment = self._experiment(experiment_name)
            variables = self.job_variables(experiment, run_id, base_url,
                                           configuration.get("maxRunDurationSeconds"))
            config = _translate(self.workspace, configuration, variables, source=source)
            try:
                submit_script_run(experiment, config, run_id=run_id,
                                  properties={"ContentSnapshotId": snapshot_id},
                                  submitted_by="simml emulator")
            except ComputeTargetException as exc:
                raise AzureError(404, "UserError", str(exc), inner="ComputeNotFound") from exc
            except (RunConfigurationException, SnapshotException) as exc:  # the user's
                raise bad_request(str(exc)) from exc

    def job_variables(self, experiment: "Experiment", run_id: str, base_url: str,
                      max_seconds: Any) -> dict[str, str]:
        """Azure's variables for the job, so the real SDK's ``Run.get_context()`` finds its run
        here (``Run._load_scope``, ``AzureMLTokenAuthentication``)."""
        from simml.core.script_run_config import DEFAULT_MAX_RUN_DURATION_SECONDS
        info = self.workspace._info
        seconds = (int(max_seconds) if isinstance(max_seconds, int) and max_seconds > 0
                   else DEFAULT_MAX_RUN_DURATION_SECONDS) + TOKEN_QUEUE_ALLOWANCE_SECONDS
        now = int(time.time())
        return {
            "AZUREML_RUN_ID": run_id,
            "AZUREML_ARM_SUBSCRIPTION": info.subscription_id,
            "AZUREML_ARM_RESOURCEGROUP": info.resource_group,
            "AZUREML_ARM_WORKSPACE_NAME": info.name,
            "AZUREML_ARM_PROJECT_NAME": experiment.name,
            "AZUREML_EXPERIMENT_ID": experiment.id,
            "AZUREML_WORKSPACE_ID": info.workspace_id,
            "AZUREML_SERVICE_ENDPOINT": base_url,
            "AZUREML_DISCOVERY_SERVICE_ENDPOINT": base_url + "/discovery",
            "AZUREML_RUN_TOKEN": mint_token(self._key(), subject=f"run:{run_id}",
                                            seconds=seconds, scope=run_id, now=now),
            "AZUREML_RUN_TOKEN_EXPIRY": str(now + seconds),
        }

    # --- helpers ---------------------------------------------------------------------------------
    def _key(self) -> str:
        key = getattr(self.emulator, "key", "")
        if not key:
            raise AzureError(500, "SystemError", "The emulator has no signing key, so it cannot "
                             "issue run tokens.", inner="ServiceError")
        return key

    def _run_id(self, req: Request) -> str:
        from simml.core.submission import _check_new_run_id
        run_id = req.arg("runId")
        if not run_id:
            raise bad_request("The runId query parameter is required.")
        _check_new_run_id(self.workspace._history(), run_id)
        return run_id

    def _experiment(self, name: str) -> "Experiment":
        from simml.core.experiment import Experiment
        return Experiment(self.workspace, name)

    def _source(self, snapshot_id: str) -> Path:
        snapshots = getattr(self.emulator, "snapshots", None)
        if snapshots is None:
            raise AzureError(501, "SystemError", "This emulator stores no snapshots, so it cannot "
                             "run jobs.", inner="NotSupported")
        return Path(snapshots.source_directory(snapshot_id))

    def _expire_pending(self) -> None:
        """Forget local runs whose client never came back (under ``_pending_lock``)."""
        limit = time.monotonic() - PENDING_LOCAL_SECONDS
        for run_id in [r for r, p in self._pending.items() if p.accepted < limit]:
            del self._pending[run_id]


# --- translation ---------------------------------------------------------------------------------

class AzureEnvironment:
    """An environment definition in Azure's layout passed through to the run definition (a
    ``ScriptRunConfig`` takes any environment with ``_definition()``), with what simml needs to
    build it: SKLearn's legacy pins mapped, ``azureml-defaults`` mapped, ``installAzureml``."""

    def __init__(self, definition: dict[str, Any]) -> None:
        self._definition_dict = definition

    def _definition(self) -> dict[str, Any]:
        return copy.deepcopy(self._definition_dict)


def environment_definition(azure: Any) -> dict[str, Any]:
    """The run's environment in simml's definition layout (see ``AzureEnvironment``)."""
    from simml.core.environment import INSTALL_AZUREML, SIMML_SECTION, Environment
    if azure is None:
        return {"name": "default-environment", "python": {"userManagedDependencies": True}}
    if not isinstance(azure, dict):
        raise bad_request("Configuration.environment must be an object.")
    python = azure.get("python") or {}
    if not isinstance(python, dict):
        raise bad_request("Configuration.environment.python must be an object.")
    structure = python.get("condaDependencies")
    if structure is not None and not isinstance(structure, dict):
        raise bad_request("environment.python.condaDependencies must be an object.")
    if python.get("baseCondaEnvironment"):
        raise bad_request("environment.python.baseCondaEnvironment is not supported by the "
                          "emulator (no conda here).", inner="NotSupported")
    try:  # simml's own reading of Azure's layout (types, docker section)
        definition = Environment._from_definition(
            {**azure, "python": {**python, "condaDependencies": _mapped_dependencies(structure)}}
        )._definition()
    except (TypeError, ValueError, AttributeError) as exc:
        raise bad_request(f"Invalid environment definition: {exc}") from exc
    definition[SIMML_SECTION] = {INSTALL_AZUREML: True}
    return definition


def _mapped_dependencies(structure: dict[str, Any] | None) -> dict[str, Any] | None:
    """Conda dependencies with SKLearn's legacy pins (python 3.6.2, scikit-learn==0.20.3,
    scipy==1.2.1: not installable today) mapped to this interpreter's versions, as simml's own
    ``SKLearn`` does, and ``SDK_PACKAGE_MAP`` applied."""
    if structure is None:
        return None
    structure = copy.deepcopy(structure)
    dependencies = structure.get("dependencies")
    if not isinstance(dependencies, list):
        return structure
    from simml.train.estimator import _installed_version
    from simml.train.sklearn import LEGACY_PINS
    pip: list[Any] = next((d["pip"] for d in dependencies
                           if isinstance(d, dict) and isinstance(d.get("pip"), list)), [])
    legacy = f"python={LEGACY_PINS['python']}" in dependencies and \
        f"scikit-learn=={LEGACY_PINS['scikit-learn']}" in pip
    if legacy:
        dependencies[:] = [d for d in dependencies if d != f"python={LEGACY_PINS['python']}"]
        for name in ("scikit-learn", "scipy"):
            pinned = f"{name}=={LEGACY_PINS[name]}"
            if pinned in pip:
                installed = _installed_version(name)
                pip[pip.index(pinned)] = f"{name}=={installed}" if installed else name
    pip[:] = [entry for entry in pip if not _pypi_option(entry)]
    for index, entry in enumerate(pip):
        if isinstance(entry, str):
            match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$", entry)
            if match and match.group(1).lower().replace("_", "-") in SDK_PACKAGE_MAP:
                pip[index] = SDK_PACKAGE_MAP[match.group(1).lower().replace("_", "-")] + \
                    match.group(2)
    return structure


def _pypi_option(entry: Any) -> bool:
    """Is this a pip option naming PyPI itself (``CondaDependencies.create`` adds
    ``--find-links https://pypi.python.org/simple/index.html`` and ``--extra-index-url
    https://pypi.python.org/simple``)? PyPI is uv's default index already, and an old alias may
    not resolve where the build runs; other indexes are kept."""
    if not isinstance(entry, str):
        return False
    match = re.match(r"^\s*(--find-links|--extra-index-url|--index-url|-f|-i)[\s=]+(\S+)\s*$",
                     entry)
    if match is None:
        return False
    host = re.sub(r"^[a-z+]+://", "", match.group(2)).split("/", 1)[0].lower()
    return host in PYPI_HOSTS


def _translate(workspace: Any, configuration: dict[str, Any], variables: dict[str, str],
               source: Path | None = None) -> "ScriptRunConfig":
    """simml's ``ScriptRunConfig`` for an Azure run configuration (``RunConfiguration``
    serialised by the client). Refuses, in Azure's error shape, what simml cannot honour; the
    source folder (the snapshot) and the script in it are checked at submission."""
    from simml.core.script_run_config import (
        DEFAULT_MAX_RUN_DURATION_SECONDS,
        RunConfiguration,
        ScriptRunConfig,
    )
    framework = configuration.get("framework") or "Python"
    if str(framework).lower() != "python":
        raise bad_request(f"framework {framework!r} is not supported by the emulator (only "
                          "Python).", inner="NotSupported")
    communicator = configuration.get("communicator") or "None"
    node_count = configuration.get("nodeCount") or 1
    if str(communicator) != "None" or node_count != 1:
        raise bad_request("Distributed runs (communicator, nodeCount > 1) are not supported by "
                          "the emulator: jobs run on one node.", inner="NotSupported")
    for key in ("data", "outputData"):
        if configuration.get(key):
            raise bad_request(f"Configuration.{key} (datasets) is not supported by the emulator: "
                              "use data references (datastore.path(...).as_mount()).",
                              inner="NotSupported")
    if configuration.get("command"):
        raise bad_request("Configuration.command is not supported by the emulator: use script "
                          "and arguments.", inner="NotSupported")
    script = configuration.get("script")
    if not isinstance(script, str) or not script:
        raise bad_request("Configuration.script is required.")
    arguments = configuration.get("arguments") or []
    if not isinstance(arguments, list) or not all(
            isinstance(a, (str, int, float, bool)) for a in arguments):
        raise bad_request("Configuration.arguments must be a list of strings and numbers.")
    target = configuration.get("target")
    if not isinstance(target, str) or not target:
        raise bad_request("Configuration.target is required.")
    max_seconds = configuration.get("maxRunDurationSeconds")
    if max_seconds is not None and (not isinstance(max_seconds, int) or max_seconds <= 0):
        raise bad_request("Configuration.maxRunDurationSeconds must be a positive integer.")
    run_variables = configuration.get("environmentVariables") or {}
    if not isinstance(run_variables, dict):
        raise bad_request("Configuration.environmentVariables must be an object.")
    definition = environment_definition(configuration.get("environment"))
    run_variables = {str(k): "" if v is None else str(v) for k, v in run_variables.items()}
    if variables:  # a submission: the exit-flush hook goes first on the job's PYTHONPATH
        run_variables["PYTHONPATH"] = _with_hook(run_variables.get("PYTHONPATH"),
                                                 os.environ.get("PYTHONPATH"))
        environment_variables = definition.get("environmentVariables") or {}
        if "PYTHONPATH" in environment_variables:  # applied after the run's: keep the hook
            environment_variables["PYTHONPATH"] = _with_hook(environment_variables["PYTHONPATH"])
    environment = AzureEnvironment(definition)
    references = _data_references(workspace, configuration.get("dataReferences"))
    if target != "local":
        _check_target(workspace, target)
    run_config = RunConfiguration()
    run_config.environment_variables = {**run_variables, **variables}
    config = ScriptRunConfig(
        str(source) if source is not None else ".", script=script, arguments=list(arguments),
        run_config=run_config, compute_target=target, environment=environment,
        max_run_duration_seconds=max_seconds or DEFAULT_MAX_RUN_DURATION_SECONDS)
    config._inputs = tuple(references)
    return config


def _with_hook(*paths: str | None) -> str:
    """``PYTHONPATH`` with the job hook's folder first (``jobhook/sitecustomize.py``: the SDK's
    run flushes when the script ends), then ``paths``."""
    return os.pathsep.join([str(JOB_HOOK), *(p for p in paths if p)])


def _check_target(workspace: Any, target: str) -> None:
    from simml.exceptions import ComputeTargetException, NotFoundException
    try:
        workspace._backend.compute_get(workspace._info, target)
    except (ComputeTargetException, NotFoundException, LookupError) as exc:
        raise AzureError(404, "UserError", f"ComputeTargetNotFound: Compute Target with name "
                         f"{target} not found in provided workspace", inner="ComputeNotFound"
                         ) from exc


def _data_references(workspace: Any, configs: Any) -> list[Any]:
    """Azure's ``dataReferences`` as simml ``DataReference`` objects (the job sees
    ``$AZUREML_DATAREFERENCE_<name>`` as on Azure; simml checks the paths at submission)."""
    from simml._paths import safe_relpath
    from simml.core.datastore import Datastore
    from simml.data.data_reference import DataReference
    if not configs:
        return []
    if not isinstance(configs, dict):
        raise bad_request("Configuration.dataReferences must be an object.")
    found = []
    for name, config in configs.items():
        if not _DATA_REFERENCE_NAME.match(str(name)) or not isinstance(config, dict):
            raise bad_request(f"Invalid data reference {name!r}.")
        mode = str(config.get("mode") or "Mount").lower()
        if mode not in ("mount", "download"):
            raise bad_request(f"Data reference {name}: mode {config.get('mode')!r} is not "
                              "supported by the emulator (Mount or Download).",
                              inner="NotSupported")
        store = config.get("dataStoreName")
        if not isinstance(store, str) or not store:
            raise bad_request(f"Data reference {name} names no datastore.")
        path = config.get("pathOnDataStore")
        if path is not None:
            path = safe_relpath(str(path), allow_empty=True, what="pathOnDataStore") or None
        found.append(DataReference(
            Datastore.get(workspace, store), data_reference_name=str(name),
            path_on_datastore=path, mode=mode,
            path_on_compute=config.get("pathOnCompute"), overwrite=bool(config.get("overwrite"))))
    return found


# --- small pieces --------------------------------------------------------------------------------

def _field(body: dict[str, Any], name: str) -> Any:
    """A key as the client spells it (``Configuration``; the git-snapshot path writes
    ``configuration``)."""
    if name in body:
        return body[name]
    return body.get(name[0].lower() + name[1:])


def _refuse_parent(body: dict[str, Any]) -> None:
    if _field(body, "ParentRunId"):
        raise bad_request("Submitting a child run (ParentRunId) through the execution service is "
                          "not supported by the emulator.", inner="NotSupported")


def _multipart(req: Request) -> dict[str, bytes]:
    """The parts of a ``multipart/form-data`` body by file name (else field name)."""
    ctype = req.headers.get("Content-Type") or ""
    if not ctype.lower().startswith("multipart/form-data") or "boundary=" not in ctype:
        raise bad_request("localrun needs a multipart/form-data body.")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + req.body)
    if not message.is_multipart():
        raise bad_request("The multipart body could not be read.")
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_filename() or part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            parts[name] = payload
    return parts


def _invocation_zip(run_id: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        script = zipfile.ZipInfo("azureml-setup/Invocation.sh")
        script.external_attr = 0o755 << 16
        archive.writestr(script, INVOCATION_SH.format(run_id=run_id))
        archive.writestr("azureml-setup/Invocation.bat", INVOCATION_BAT.format(run_id=run_id))
    return buffer.getvalue()


def _iso_seconds(epoch: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


__all__ = ["Execution", "PendingLocalRun", "environment_definition", "register"]
