"""Submitting a script run: validate, snapshot, create the run, hand it to the backend.

The order matters for "bad input changes nothing": everything that can be checked is checked
before the snapshot is taken, and the run record is created only once the snapshot exists.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from simml._paths import collect_upload_items
from simml.entities import RunCreate, RunSubmission
from simml.exceptions import SnapshotException
from simml.ids import IdFactory

if TYPE_CHECKING:
    from simml.core.experiment import Experiment
    from simml.core.run import Run
    from simml.core.script_run_config import ScriptRunConfig

SNAPSHOT_MAX_BYTES = 300 * 1024 * 1024
SNAPSHOT_MAX_FILES = 2000


def snapshot_items(source_directory: str) -> tuple:
    """The files of a source folder as upload items, within Azure's snapshot limits."""
    items = tuple(collect_upload_items(source_directory, None))
    if len(items) > SNAPSHOT_MAX_FILES:
        raise SnapshotException(
            f"The source directory {source_directory!r} holds {len(items)} files; a snapshot may "
            f"hold at most {SNAPSHOT_MAX_FILES}. Exclude files with .amlignore or move data to a "
            "datastore.")
    total = sum(os.path.getsize(item.source) for item in items)
    if total > SNAPSHOT_MAX_BYTES:
        raise SnapshotException(
            f"The source directory {source_directory!r} is {total / 2**20:.1f} MB; a snapshot may "
            f"be at most {SNAPSHOT_MAX_BYTES // 2**20} MB. Exclude files with .amlignore or move "
            "data to a datastore.")
    return items


def submit_script_run(experiment: "Experiment", config: "ScriptRunConfig") -> "Run":
    from simml.core.run import Run
    workspace = experiment.workspace
    backend, info = workspace._backend, workspace._info
    definition = config._validated(experiment)
    snapshot_id = backend.snapshot_create(info, snapshot_items(config.source_directory))
    definition["snapshotId"] = snapshot_id
    now = workspace.clock.now()
    run_id = IdFactory.from_environment().script_run_id(experiment.name, now)
    store = workspace._history()
    run_info = store.create_run(RunCreate(
        run_id=run_id, experiment_name=experiment.name, run_type="azureml.scriptrun",
        status="NotStarted", target=definition["target"], created_time=now,
        definition=definition, properties={"ContentSnapshotId": snapshot_id},
        submitted_by=_user()))
    backend.run_submit(info, RunSubmission(run_id=run_id, experiment_name=experiment.name,
                                           target=definition["target"], definition=definition,
                                           snapshot_id=snapshot_id))
    return Run._from_info(experiment, run_info)


def _user() -> str:
    from simml.core.run import _user as user
    return user()
