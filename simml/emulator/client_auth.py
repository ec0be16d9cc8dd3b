"""``SimmlEmulatorAuthentication``: the auth object that points the **real** ``azureml-core``
client at ``simml serve``. It imports azureml-core, so it is only imported in the client's
environment (which needs simml on its path, or ``pip install --no-deps simml``).

    from azureml.core import Workspace
    from simml.emulator.client_auth import SimmlEmulatorAuthentication
    ws = Workspace.from_config(auth=SimmlEmulatorAuthentication())

With no arguments it reads the ``auth`` key of the config.json that ``Workspace.from_config``
finds (``{"type": "simml_emulator", "endpoint": "http://127.0.0.1:PORT", "key_env":
"SIMML_EMULATOR_KEY"}``); the signing key itself comes only from the environment, never from the
file. Tokens are minted locally (HS256, no network); the ARM endpoint of the auth's cloud is the
emulator, so every ARM call and, through the discovery URL it returns, every data-plane call goes
there.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from azureml.core.authentication import AbstractAuthentication, _SubscriptionInfo

from simml.emulator.protocol import DEFAULT_TOKEN_SECONDS, KEY_ENV, mint_token

AUTH_TYPE = "simml_emulator"
TENANT = "00000000-0000-0000-0000-000000000000"


def _config_auth(path: str | None) -> tuple[dict[str, Any], str | None]:
    """The ``auth`` object and subscription of the config.json found as Azure finds it."""
    import json

    from simml.settings import find_config_file
    found = find_config_file(path)
    if found is None:
        raise ValueError("SimmlEmulatorAuthentication() found no config.json; pass endpoint=.")
    data = json.loads(found.read_text(encoding="utf-8"))
    auth = data.get("auth")
    if not isinstance(auth, dict) or auth.get("type") != AUTH_TYPE:
        raise ValueError(f"{found} has no auth key of type {AUTH_TYPE!r}.")
    return auth, data.get("subscription_id")


class SimmlEmulatorAuthentication(AbstractAuthentication):
    """Authenticate the real azureml-core client against a ``simml serve`` emulator."""

    def __init__(self, endpoint: str | None = None, key: str | None = None,
                 subscription_id: str | None = None, config_path: str | None = None,
                 token_seconds: int = DEFAULT_TOKEN_SECONDS) -> None:
        super().__init__("AzureCloud")  # a known cloud: no metadata fetch
        key_env = KEY_ENV
        if endpoint is None:
            auth, subscription_id = _config_auth(config_path)[0], (
                subscription_id or _config_auth(config_path)[1])
            endpoint = auth.get("endpoint")
            key_env = auth.get("key_env") or KEY_ENV
        if not endpoint:
            raise ValueError("SimmlEmulatorAuthentication needs the emulator's endpoint.")
        key = key or os.environ.get(key_env)
        if not key:
            raise ValueError(f"SimmlEmulatorAuthentication: set {key_env} to the emulator's key "
                             "(printed by `simml serve`).")
        self._endpoint = endpoint.rstrip("/")
        self._key = key
        self._subscription_id = subscription_id
        self._token_seconds = token_seconds
        cloud = copy.deepcopy(self._cloud_type)
        cloud.name = "SimmlEmulator"
        cloud.endpoints.resource_manager = self._endpoint + "/"
        self._cloud_type = cloud

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def _token(self) -> str:
        return mint_token(self._key, seconds=self._token_seconds)

    def _get_arm_token(self) -> str:
        return self._token()

    def _get_graph_token(self) -> str:
        return self._token()

    def _get_azureml_client_token(self) -> str:
        return self._token()

    def _get_all_subscription_ids(self) -> tuple[list[Any], str]:
        subscriptions = [_SubscriptionInfo("simml", self._subscription_id)] \
            if self._subscription_id else []
        return subscriptions, TENANT

    def _check_if_subscription_exists(self, subscription_id: str, subscription_id_list: Any,
                                      tenant_id: str) -> None:
        return None  # the emulator answers for any subscription it serves

    def _get_workspace(self, subscription_id: str, resource_group: str, name: str) -> None:
        return None  # use ARM (the emulator)
