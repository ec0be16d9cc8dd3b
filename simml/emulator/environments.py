"""The environment service of the emulator (``/environment/v1.0/{workspace}/environments``), mapped
onto simml's environment registry (``simml.core.environment.Environment`` and the backend's
``simml_environment_*`` hooks), so an environment the real client registers is simml's
(``Environment.get`` / ``Environment.list`` through simml's API) and the reverse.

How the client's calls map:

* ``env.register(ws)``: ``PUT .../environments/{name}`` (``version`` None) with Azure's layout
  (``Name``, ``python``, ``EnvironmentVariables``, ``Docker``, ``Spark``, ``r``,
  ``InferencingStackVersion``) read by simml's own ``Environment``; simml's ``register`` makes a
  new version (``"1"``, ``"2"``, ...) only when the definition changed since the latest, else
  answers the latest unchanged. With a version set (``env.version = "2"``: the client warns that
  it registers that version) the request goes to ``.../versions/{version}``: an existing version
  with an equal definition is answered as is (another definition is a 409: a version never
  changes), the next number is registered as above (the latest answered when nothing changed),
  any other number is refused (simml numbers versions itself).
* ``Environment.get(ws, name)`` / ``(ws, name, version)``: ``GET .../environments/{name}`` and
  ``.../versions/{version}``; ``Environment.list(ws)``: ``GET .../environments/`` (the latest
  version of each name, one page).
* Labels (``Environment.label``, ``Environment.get(label=)``) are refused: simml has none.

The client reads only the status and the JSON body (any other answer becomes a plain
``Exception`` carrying the status and text), so errors use Azure's usual payload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simml.emulator.protocol import ARM_SCOPE, AzureError, bad_request, not_found

if TYPE_CHECKING:
    from simml.core.environment import Environment
    from simml.emulator.service import Emulator, Request

ENVIRONMENTS = "/environment/v1.0" + ARM_SCOPE + "/environments"
BODY_KEYS = {"name": "name", "python": "python", "environmentvariables": "environmentVariables",
             "docker": "docker", "spark": "spark", "r": "r",
             "inferencingstackversion": "inferencingStackVersion", "version": "version",
             "databricks": "databricks", "assetid": "assetId"}
"""The body keys the client sends (``Name``, ``EnvironmentVariables``, ``Docker`` ...) or that
its serialized environment holds, case-insensitively, in Azure's layout."""


class Environments:
    """The environment routes over simml's environment registry."""

    def __init__(self, emulator: "Emulator") -> None:
        self.emulator = emulator

    def register_routes(self) -> None:
        add = self.emulator.router.add
        add("GET", ENVIRONMENTS, self.list)
        add("GET", ENVIRONMENTS + "/{name}", self.get_latest)
        add("PUT", ENVIRONMENTS + "/{name}", self.register)
        add("GET", ENVIRONMENTS + "/{name}/versions/{version}", self.get_version)
        add("PUT", ENVIRONMENTS + "/{name}/versions/{version}", self.register_version)
        add("GET", ENVIRONMENTS + "/{name}/labels/{label}", self.labels)
        add("PUT", ENVIRONMENTS + "/{name}/versions/{version}/metadata", self.labels)

    # --- reading ---------------------------------------------------------------------------------
    def list(self, req: "Request") -> dict[str, Any]:
        from simml.core.environment import Environment
        found = Environment.list(self.emulator.workspace)
        return {"value": [_dto(found[name]) for name in sorted(found)],
                "continuationToken": None}

    def get_latest(self, req: "Request") -> dict[str, Any]:
        return _dto(self._get(req.params["name"], None))

    def get_version(self, req: "Request") -> dict[str, Any]:
        return _dto(self._get(req.params["name"], req.params["version"]))

    def _get(self, name: str, version: str | None) -> "Environment":
        from simml.core.environment import Environment, EnvironmentNotFoundException
        try:
            return Environment.get(self.emulator.workspace, name, version)
        except EnvironmentNotFoundException as exc:
            raise not_found(str(exc), inner="EnvironmentNotFound") from exc

    def _find(self, name: str, version: str | None) -> "Environment | None":
        from simml.core.environment import Environment, EnvironmentNotFoundException
        try:
            return Environment.get(self.emulator.workspace, name, version)
        except EnvironmentNotFoundException:
            return None

    # --- registering -----------------------------------------------------------------------------
    def register(self, req: "Request") -> dict[str, Any]:
        """A new version when the definition changed since the latest (simml's rule)."""
        environment = _environment(req.json_object(), req.params["name"])
        return _dto(environment.register(self.emulator.workspace))

    def register_version(self, req: "Request") -> dict[str, Any]:
        name, version = req.params["name"], req.params["version"]
        environment = _environment(req.json_object(), name)
        existing = self._find(name, version)
        if existing is not None:
            if _body(existing) != _body(environment):
                raise AzureError(
                    409, "UserError", f"Environment {name} version {version} exists with "
                    "another definition; a version never changes. Set the environment's version "
                    "to None to register a new one.", inner="EnvironmentVersionConflict")
            return _dto(existing)
        latest = self._find(name, None)
        current = int(latest.version) if latest is not None and latest.version else 0
        if version != str(current + 1):
            raise bad_request(
                f"Environment {name}: simml numbers versions itself (1, 2, ...; the next is "
                f"{current + 1}) and cannot register version {version!r}. Set the "
                "environment's version to None.", inner="NotSupported")
        return _dto(environment.register(self.emulator.workspace))

    def labels(self, req: "Request") -> dict[str, Any]:
        raise bad_request("Environment labels are not supported by simml; use versions.",
                          inner="NotSupported")


def _environment(body: dict[str, Any], name: str) -> "Environment":
    """simml's ``Environment`` for a register body (Azure's layout, keys in any case), checked
    before anything is written."""
    from simml.core.environment import Environment
    doc: dict[str, Any] = {}
    for key, value in body.items():
        canonical = BODY_KEYS.get(str(key).lower())
        if canonical is None:
            raise bad_request(f"Unknown environment field {key!r}.")
        doc[canonical] = value
    if doc.get("name") not in (None, name):
        raise bad_request(f"The body names environment {doc['name']!r}, the path {name!r}.")
    for key in ("python", "docker", "environmentVariables"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise bad_request(f"Environment {key} must be an object.")
    python = doc.get("python") or {}
    structure = python.get("condaDependencies")
    if structure is not None and (not isinstance(structure, dict) or not isinstance(
            structure.get("dependencies", []), list)):
        raise bad_request("python.condaDependencies must be an object with a 'dependencies' "
                          "list (conda's environment.yml layout).")
    variables = doc.get("environmentVariables") or {}
    if not all(isinstance(v, (str, int, float, bool)) for v in variables.values()):
        raise bad_request("environmentVariables must map names to strings.")
    try:  # simml's own reading of Azure's layout
        environment = Environment._from_definition(
            {**doc, "python": python, "environmentVariables": variables,
             "docker": doc.get("docker") or {}}, name=name, version=None)
        environment._definition()
    except (TypeError, ValueError, AttributeError) as exc:
        raise bad_request(f"Invalid environment definition: {exc}") from exc
    return environment


def _body(environment: "Environment") -> dict[str, Any]:
    """The definition without name and version: what decides whether it changed."""
    return {k: v for k, v in environment._definition().items() if k not in ("name", "version")}


def _dto(environment: "Environment") -> dict[str, Any]:
    """An environment as the service answers it: Azure's layout (``Environment._serialize_to_dict``
    keys), which the client's ``_deserialize_and_add_to_object`` reads."""
    return {**environment._definition(), "name": environment.name,
            "version": environment.version}


def register(emulator: "Emulator") -> None:
    """Add the environment routes to ``emulator``."""
    Environments(emulator).register_routes()


__all__ = ["Environments", "register"]
