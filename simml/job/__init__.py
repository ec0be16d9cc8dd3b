"""The job side of submitted runs: what ``Run.get_context()`` returns inside a job simml started.

STANDARD LIBRARY ONLY. This package is copied into every runtime a job runs in (venvs, containers,
Azure nodes) next to ``simml/__init__.py`` and nothing else, so it imports no other simml module,
no third-party package and needs no network. It records what the script logs in an append-only
JSON Lines journal (``SIMML_RUN_JOURNAL``) that the runner ingests into run history
(``simml_local.journal``). The schema is documented in ``simml.job.journal``.

Environment read by ``JobRun.get_context()``:

=============================  ======================================================
``AZUREML_RUN_ID``             the run id (required)
``SIMML_RUN_JOURNAL``          path of the journal file (required); files go to ``files/`` beside it
``AZUREML_EXPERIMENT_NAME``    ``run.experiment.name``
``AZUREML_ARM_WORKSPACE_NAME`` ``run.experiment.workspace.name`` (also ``AZUREML_ARM_SUBSCRIPTION``,
                               ``AZUREML_ARM_RESOURCEGROUP``, ``AZUREML_WORKSPACE_ID``)
``SIMML_PARENT_RUN_ID``        ``run.parent`` (else ``AZUREML_ROOT_RUN_ID`` when it is not the run)
``SIMML_RUN_NUMBER``           ``run.number``
``SIMML_JOB_CLOCK_OFFSET``     seconds added to ``time.time()`` for event times (simulated time)
``SIMML_SWEEP_GATE``           (a HyperDrive trial) wait at evaluation points: ``simml.job.sweep``
=============================  ======================================================
"""

from __future__ import annotations

from .errors import (
    JobRunError,
    JobRunValueError,
    MetricTypeError,
    MetricValueError,
    ModelRegistrationError,
    NotInJobError,
)
from .journal import FLUSH_EVENTS, FLUSH_SECONDS, SIDE_FOLDER, JournalWriter, side_folder
from .run import JobExperiment, JobRun, JobWorkspace

__all__ = [
    "FLUSH_EVENTS",
    "FLUSH_SECONDS",
    "SIDE_FOLDER",
    "JobExperiment",
    "JobRun",
    "JobRunError",
    "JobRunValueError",
    "JobWorkspace",
    "JournalWriter",
    "MetricTypeError",
    "MetricValueError",
    "ModelRegistrationError",
    "NotInJobError",
    "side_folder",
]
