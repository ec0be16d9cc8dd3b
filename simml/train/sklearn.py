"""Azure's ``SKLearn`` estimator (``azureml.train.sklearn.SKLearn``), as the seed doc uses it.

Azure pins python 3.6.2, scikit-learn==0.20.3 and scipy==1.2.1 (``framework_version`` '0.20.3',
the only supported one). That environment cannot be built today, so simml maps the pins to the
current interpreter's Python and the scikit-learn / scipy versions installed in it, and says so in
one warning at construction. Everything else is the generic estimator
(``simml.train.estimator``): ``script_params`` → arguments, packages → environment,
``experiment.submit(estimator)``.
"""

from __future__ import annotations

import logging
import os
import platform
from typing import Any

from simml.exceptions import TrainingException
from simml.train.estimator import MMLBaseEstimator, _installed_version, records_explicit_arguments

logger = logging.getLogger("simml.train.sklearn")

SUPPORTED_VERSIONS = ["0.20.3"]
LEGACY_PINS = {"python": "3.6.2", "scikit-learn": "0.20.3", "scipy": "1.2.1"}


class SKLearn(MMLBaseEstimator):
    """Train a scikit-learn script (Azure's ``SKLearn`` estimator, deprecated in Azure)."""

    _logger = logger
    _deprecation = ("'SKLearn' estimator is deprecated. Please use 'ScriptRunConfig' from "
                    "'simml.core.script_run_config' with your own defined environment or the "
                    "AzureML-Tutorial curated environment.")

    @records_explicit_arguments
    def __init__(self, source_directory: str | os.PathLike[str], *, compute_target: Any = None,
                 vm_size: str | None = None, vm_priority: str | None = None,
                 entry_script: str | None = None, script_params: dict[str, Any] | None = None,
                 use_docker: bool = True, custom_docker_image: str | None = None,
                 image_registry_details: Any = None, user_managed: bool = False,
                 conda_packages: list[str] | None = None, pip_packages: list[str] | None = None,
                 conda_dependencies_file_path: str | None = None,
                 pip_requirements_file_path: str | None = None,
                 conda_dependencies_file: str | None = None,
                 pip_requirements_file: str | None = None,
                 environment_variables: dict[str, str] | None = None,
                 environment_definition: Any = None, inputs: list[Any] | None = None,
                 shm_size: str | None = None, resume_from: Any = None,
                 max_run_duration_seconds: int | None = None,
                 framework_version: str | None = None, _enable_optimized_mode: bool = False,
                 _disable_validation: bool = True, _show_lint_warnings: bool = False,
                 _show_package_warnings: bool = False) -> None:
        if framework_version is not None and str(framework_version) not in SUPPORTED_VERSIONS:
            raise TrainingException(
                f"framework_version {framework_version!r} is not supported by SKLearn; supported "
                f"versions: {SUPPORTED_VERSIONS} (simml maps it to the installed scikit-learn).")
        self._setup(
            source_directory, compute_target=compute_target, vm_size=vm_size,
            vm_priority=vm_priority, entry_script=entry_script, script_params=script_params,
            node_count=1, process_count_per_node=1, distributed_training=None, use_gpu=False,
            use_docker=use_docker, custom_docker_image=custom_docker_image,
            image_registry_details=image_registry_details, user_managed=user_managed,
            conda_packages=conda_packages, pip_packages=pip_packages,
            conda_dependencies_file_path=conda_dependencies_file_path,
            pip_requirements_file_path=pip_requirements_file_path,
            conda_dependencies_file=conda_dependencies_file,
            pip_requirements_file=pip_requirements_file,
            environment_variables=environment_variables,
            environment_definition=environment_definition, inputs=inputs, shm_size=shm_size,
            resume_from=resume_from, max_run_duration_seconds=max_run_duration_seconds,
            framework_pins=LEGACY_PINS,
            framework_version=str(framework_version or SUPPORTED_VERSIONS[0]))
        if self._framework_pins:
            python = platform.python_version()
            sklearn = _installed_version("scikit-learn") or "not installed"
            scipy = _installed_version("scipy") or "not installed"
            logger.warning(
                "SKLearn's legacy pins (python 3.6.2, scikit-learn==0.20.3, scipy==1.2.1; "
                "framework_version '0.20.3') cannot be built today: simml uses the current "
                f"interpreter's Python {python} with the installed scikit-learn=={sklearn} and "
                f"scipy=={scipy} instead.")

    @classmethod
    def get_supported_versions(cls) -> list[str]:
        return list(SUPPORTED_VERSIONS)
