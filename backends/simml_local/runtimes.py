"""Runtimes of the local backend: the workspace's default runtime, the per-run choice, Docker's
Preparing stage and the base-image hook (``LocalRuntimes``, a mixin of ``LocalBackend``).

The workspace setting lives in ``workspace_settings`` (key ``runtime``, beside the clock); no
migration. The choice made for a run is logged in Preparing and recorded as the run property
``simml.runtime`` (docs/docker.md).
"""

from __future__ import annotations

from typing import Any, Callable

from simml.entities import PreparedEnvironment, StageContext, WorkspaceInfo
from simml.plugins import hookimpl
from simml_local.docker_runtime import check_runtime, choose_runtime
from simml_local.store import write_transaction


class LocalRuntimes:
    """Mixin of ``LocalBackend``: the runtime hooks and Docker's side of Preparing."""

    store: Any
    home: Any

    @hookimpl
    def simml_runtime_get(self, workspace: WorkspaceInfo) -> str:
        row = self.store(workspace).connection().execute(
            "SELECT value FROM workspace_settings WHERE key = 'runtime'").fetchone()
        return str(row[0]) if row else "process"

    @hookimpl
    def simml_runtime_set(self, workspace: WorkspaceInfo, runtime: str) -> str:
        runtime = check_runtime(runtime)
        con = self.store(workspace).connection()
        with write_transaction(con):
            con.execute("INSERT OR REPLACE INTO workspace_settings VALUES ('runtime', ?)",
                        (runtime,))
        return runtime

    @hookimpl
    def simml_docker_build_base(self, tag: str | None, method: str, log: Any) -> str:
        from simml_local.docker_images import METHODS, build_base_image
        from simml_local.docker_runtime import connect
        if method not in METHODS:  # before asking for an engine
            from simml.exceptions import InvalidValueException
            raise InvalidValueException(
                f"Unknown base-image method {method!r}: use {' or '.join(METHODS)}.")
        return build_base_image(connect(), tag, method, log)

    # --- Preparing ---------------------------------------------------------------------------
    def run_runtime(self, context: StageContext) -> tuple[str, str]:
        """The runtime of a run, and why (see ``docker_runtime.choose_runtime``)."""
        compute_runtime = None
        if context.target != "local":
            try:
                info = self.simml_compute_get(context.workspace, context.target)  # type: ignore
                compute_runtime = (info.properties or {}).get("runtime")
            except Exception:  # noqa: BLE001 - a deleted target fails later, in Queued
                compute_runtime = None
        return choose_runtime(context.definition, compute_runtime,
                              self.simml_runtime_get(context.workspace))

    def prepare_docker(self, context: StageContext, log: Callable[[str], None], why: str
                       ) -> PreparedEnvironment:
        """Docker's Preparing: the engine, the base image, the environment image."""
        from simml_local.docker_images import BuildCanceled, EnvironmentImages
        from simml_local.docker_runtime import connect
        log(f"[preparing] runtime: docker ({why})")
        client = connect()  # DockerEngineException fails the run, saying how to start one
        environment = context.definition.get("environment") or {}
        should_cancel = lambda: self.cancel_requested(  # noqa: E731
            context.workspace, context.run_id)  # type: ignore[attr-defined]
        try:
            return EnvironmentImages(self.home).prepare(
                client, environment, log,
                source_dir=self.snapshot_dir(  # type: ignore[attr-defined]
                    context.workspace, context.snapshot_id or ""),
                should_cancel=should_cancel)
        except BuildCanceled:
            log("[preparing] cancel requested: the image build was stopped")
            return PreparedEnvironment(runtime="docker", environment_key="canceled",
                                       details={"canceled": True})
