"""AmlCompute routes beyond create/get/list/delete (those are in ``service.py``): scale-setting
updates (``AmlCompute.update``: ``PATCH .../computes/{name}``) and node listing
(``AmlCompute.list_nodes``: ``POST .../computes/{name}/listNodes``), through simml's
``AmlCompute`` on the simulated cluster.

The client sends the whole scale settings on update (it reads the current ones first and
replaces what the caller gave), answers come back in the ARM shape ``service.py`` builds, with an
``Azure-AsyncOperation`` header the client may poll (the change is applied at once).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from simml.emulator.protocol import ARM_SCOPE, bad_request

if TYPE_CHECKING:
    from simml.core.compute import AmlCompute
    from simml.emulator.service import Emulator, Request, Response


class Computes:
    """``update`` and ``list_nodes`` of an AmlCompute cluster."""

    def __init__(self, emulator: "Emulator") -> None:
        self.emulator = emulator

    def register_routes(self) -> None:
        add = self.emulator.router.add
        for prefix in ("", "/rp/workspaces"):  # ARM, and the regional path the client also uses
            add("PATCH", prefix + ARM_SCOPE + "/computes/{name}", self.update)
            add("POST", prefix + ARM_SCOPE + "/computes/{name}/listNodes", self.list_nodes)

    def _target(self, req: "Request") -> "AmlCompute":
        from simml.core.compute import AmlCompute, ComputeTarget
        name = req.params["name"]
        self.emulator.compute_get(req)  # 404 ComputeNotFound, as a GET answers
        target = ComputeTarget(self.emulator.workspace, name)
        if not isinstance(target, AmlCompute):
            raise bad_request(f"Compute target {name} is not an AmlCompute cluster.",
                              inner="NotSupported")
        return target

    def update(self, req: "Request") -> "Response":
        """New scale settings (``minNodeCount``, ``maxNodeCount``, ``nodeIdleTimeBeforeScaleDown``;
        a missing one is kept), all checked before simml's ``AmlCompute.update`` applies them."""
        from simml.emulator.service import COMPUTE_API, Response, _duration_seconds
        body = req.json_object()
        props = body.get("properties")
        if not isinstance(props, dict) or set(body) - {"properties"}:
            raise bad_request("A compute update is {'properties': {'computeType': 'AmlCompute', "
                              "'properties': {'scaleSettings': {...}}}}.")
        if props.get("computeType", "AmlCompute") != "AmlCompute":
            raise bad_request(f"computeType {props.get('computeType')!r} is not supported by the "
                              "emulator (only AmlCompute).", inner="NotSupported")
        inner = props.get("properties")
        if not isinstance(inner, dict) or set(props) - {"computeType", "properties"} \
                or set(inner) - {"scaleSettings"}:
            raise bad_request("The emulator updates an AmlCompute's scaleSettings only.",
                              inner="NotSupported")
        scale = inner.get("scaleSettings")
        if not isinstance(scale, dict) or set(scale) - {
                "minNodeCount", "maxNodeCount", "nodeIdleTimeBeforeScaleDown"}:
            raise bad_request("scaleSettings holds minNodeCount, maxNodeCount and "
                              "nodeIdleTimeBeforeScaleDown.")
        counts = {}
        for key in ("minNodeCount", "maxNodeCount"):
            value = scale.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise bad_request(f"scaleSettings.{key} must be an integer >= 0, not {value!r}.")
            counts[key] = value
        idle_text = scale.get("nodeIdleTimeBeforeScaleDown")
        idle = None if idle_text in (None, "") else _duration_seconds(idle_text, 0)
        target = self._target(req)  # simml checks min <= max (as a 400, nothing written)
        target.update(min_nodes=counts["minNodeCount"], max_nodes=counts["maxNodeCount"],
                      idle_seconds_before_scaledown=idle)
        name = req.params["name"]
        operation = f"{req.base_url}/operations/compute-{name}-update?api-version={COMPUTE_API}"
        return Response(200, self.emulator._compute_dto(req, name),
                        {"Azure-AsyncOperation": operation})

    def list_nodes(self, req: "Request") -> dict[str, Any]:
        """The cluster's nodes now (simml's ``AmlCompute.list_nodes``: id, state, run, address);
        one page, no ``nextLink``."""
        return {"nodes": self._target(req).list_nodes()}


def register(emulator: "Emulator") -> None:
    """Add the AmlCompute update and node-listing routes to ``emulator``."""
    Computes(emulator).register_routes()


__all__ = ["Computes", "register"]
