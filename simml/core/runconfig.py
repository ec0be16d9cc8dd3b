"""Azure's ``azureml.core.runconfig``: ``RunConfiguration`` and ``DockerConfiguration``.

``DockerConfiguration(use_docker=True, arguments=[...], shm_size=...)`` passed as
``ScriptRunConfig(docker_runtime_config=...)`` asks for the Docker runtime explicitly (the
local backend's runtime choice is in ``docs/docker.md``). Of Azure's free-form ``docker run``
``arguments`` simml honours the ones that make sense on one machine and refuses the rest when the
run is submitted: ``--network=none|host|bridge`` (``--network none``, ``--net ...``) and
``--shm-size=SIZE``. ``environment.docker.arguments`` take the same values.
"""

from __future__ import annotations

import re
from typing import Any

from simml.core.script_run_config import RunConfiguration
from simml.exceptions import RunConfigurationException

NETWORK_MODES = ("none", "host", "bridge")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?[bkmgBKMG]?$")


class DockerConfiguration:
    """How a run uses Docker (Azure's ``DockerConfiguration``). ``use_docker=None`` leaves the
    choice to the compute target and the workspace."""

    def __init__(self, use_docker: bool | None = None, arguments: list[str] | None = None,
                 shared_volumes: bool = True, shm_size: str | None = None) -> None:
        if use_docker is not None and not isinstance(use_docker, bool):
            raise RunConfigurationException(
                f"use_docker must be True, False or None, not {use_docker!r}.")
        self.use_docker = use_docker
        self.arguments = [str(a) for a in (arguments or [])]
        self.shared_volumes = shared_volumes
        self.shm_size = shm_size
        docker_run_options(self.arguments, shm_size)  # refuse what cannot be honoured, now

    def _definition(self) -> dict[str, Any]:
        return {"enabled": bool(self.use_docker), "explicit": self.use_docker is not None,
                "arguments": list(self.arguments), "shmSize": self.shm_size}


def docker_run_options(arguments: list[str] | None, shm_size: str | None = None
                       ) -> dict[str, str]:
    """The ``docker run`` options simml honours, from Azure-style ``arguments``.

    ``["--network=none"]`` -> ``{"network": "none"}``; ``--shm-size`` -> ``{"shm_size": ...}``.
    :raises RunConfigurationException: an argument simml cannot honour, or a bad value.
    """
    options: dict[str, str] = {}
    if shm_size is not None:
        options["shm_size"] = _size(str(shm_size))
    items = [str(a) for a in (arguments or [])]
    i = 0
    while i < len(items):
        item = items[i]
        name, equals, value = item.partition("=")
        if name in ("--network", "--net", "--shm-size") and not equals:
            if i + 1 >= len(items):
                raise RunConfigurationException(f"Docker argument {name} needs a value.")
            value = items[i + 1]
            i += 1
        if name in ("--network", "--net"):
            if value not in NETWORK_MODES:
                raise RunConfigurationException(
                    f"Docker argument {item!r}: the network must be one of "
                    f"{', '.join(NETWORK_MODES)} (simml runs containers on this machine only).")
            options["network"] = value
        elif name == "--shm-size":
            options["shm_size"] = _size(value)
        else:
            raise RunConfigurationException(
                f"Docker argument {item!r} is not supported by simml: only --network=none|host|"
                "bridge and --shm-size=SIZE are honoured (docs/docker.md).")
        i += 1
    return options


def _size(value: str) -> str:
    if not _SIZE.match(value):
        raise RunConfigurationException(
            f"Invalid shm size {value!r}: use a number with an optional unit, such as '2g'.")
    return value


__all__ = ["DockerConfiguration", "RunConfiguration", "docker_run_options", "NETWORK_MODES"]
