"""Plain ``Workspace.from_config()``: the routes that let the real client authenticate the way it
does on an Azure VM or App Service, with no auth object in the user's script.

With no ``auth=``, the client builds ``InteractiveLoginAuthentication``, which first looks for
"ambient" credentials: when ``MSI_ENDPOINT`` is set it tries managed identity
(``MsiAuthentication``), whose token request msrestazure sends, when
``APPSETTING_WEBSITE_SITE_NAME`` is also set, as App Service's protocol: ``GET
{MSI_ENDPOINT}/?resource=...&api-version=2017-09-01`` with the header ``secret: $MSI_SECRET``.
That route is here: it answers only the secret derived from the emulator's key, with a token the
emulator issued. The client then lists subscriptions (ARM ``GET /subscriptions``), reads the cloud
metadata (``GET /metadata/endpoints``) and the workspace, all at ``https://management.azure.com``,
which the CONNECT proxy terminates and hands to these routes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from simml.emulator.protocol import AzureError, mint_token

if TYPE_CHECKING:
    from simml.emulator.server import EmulatorHTTPServer
    from simml.emulator.service import Emulator, Request

MSI_PATH = "/simml/msi/token"
SITE_NAME = "simml-emulator"
TENANT = "00000000-0000-0000-0000-000000000000"
CLIENT_ID = "00000000-0000-0000-0000-000000000001"
TOKEN_SECONDS = 3600


def msi_secret(key: str) -> str:
    """The MSI secret: derived from the emulator's key (stable while the key is)."""
    digest = hmac.new(key.encode(), b"simml-msi-secret-v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def client_env(http_server: "EmulatorHTTPServer") -> dict[str, str]:
    """The variables that select the ambient managed-identity path in the client."""
    return {"MSI_ENDPOINT": http_server.base_url + MSI_PATH,
            "MSI_SECRET": msi_secret(http_server.key),
            "APPSETTING_WEBSITE_SITE_NAME": SITE_NAME}


def register(emulator: "Emulator") -> None:
    add = emulator.router.add
    add("GET", MSI_PATH, lambda req: msi_token(emulator, req), public=True)
    add("GET", "/subscriptions", lambda req: subscriptions(emulator, req))
    add("GET", "/metadata/endpoints", cloud_metadata, public=True)


def msi_token(emulator: "Emulator", req: "Request") -> dict[str, Any]:
    """App Service's managed-identity token endpoint (api-version 2017-09-01)."""
    key = getattr(emulator, "key", "")
    given = req.headers.get("secret") or ""
    if not key or not hmac.compare_digest(given.encode(), msi_secret(key).encode()):
        raise AzureError(401, "AuthenticationFailed",
                         "MSI: the 'secret' header does not match this emulator's MSI_SECRET "
                         "(printed by `simml serve`).", inner="InvalidMsiSecret")
    resource = req.arg("resource") or ""
    if not resource:
        raise AzureError(400, "UserError", "MSI: the resource parameter is required.",
                         inner="BadArgument")
    expires = int(datetime.now(timezone.utc).timestamp()) + TOKEN_SECONDS
    token = mint_token(key, subject="msi", seconds=TOKEN_SECONDS)
    return {"access_token": token, "token_type": "Bearer", "resource": resource,
            "client_id": CLIENT_ID,
            "expires_on": datetime.fromtimestamp(expires, timezone.utc).strftime(
                "%m/%d/%Y %H:%M:%S +00:00")}


def subscriptions(emulator: "Emulator", req: "Request") -> dict[str, Any]:
    """ARM's subscription list: the served workspace's subscription."""
    sub = emulator.workspace._info.subscription_id
    return {"value": [{"id": f"/subscriptions/{sub}", "subscriptionId": sub, "tenantId": TENANT,
                       "displayName": "simml", "state": "Enabled",
                       "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                                "quotaId": "simml", "spendingLimit": "Off"},
                       "authorizationSource": "RoleBased"}],
            "count": {"type": "Total", "value": 1}, "nextLink": None}


def cloud_metadata(req: "Request") -> list[dict[str, Any]]:
    """``https://management.azure.com/metadata/endpoints``: Azure's public cloud, so a client
    without ``AZUREML_CURRENT_CLOUD`` resolves its cloud here instead of waiting on the network
    (it keeps its built-in endpoints whenever AzureCloud is listed)."""
    return [{
        "name": "AzureCloud", "portal": "https://portal.azure.com",
        "authentication": {"loginEndpoint": "https://login.microsoftonline.com/",
                           "audiences": ["https://management.core.windows.net/",
                                         "https://management.azure.com/"],
                           "tenant": "common", "identityProvider": "AAD"},
        "media": "https://rest.media.azure.net", "graphAudience": "https://graph.windows.net/",
        "graph": "https://graph.windows.net/", "gallery": "https://gallery.azure.com/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "resourceManager": "https://management.azure.com/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "batch": "https://batch.core.windows.net/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "appInsightsResourceId": "https://api.applicationinsights.io",
        "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
        "attestationResourceId": "https://attest.azure.net",
        "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
        "logAnalyticsResourceId": "https://api.loganalytics.io",
        "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
        "suffixes": {"azureDataLakeStoreFileSystem": "azuredatalakestore.net",
                     "acrLoginServer": "azurecr.io", "sqlServerHostname": "database.windows.net",
                     "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
                     "keyVaultDns": "vault.azure.net", "storage": "core.windows.net",
                     "azureFrontDoorEndpointSuffix": "azurefd.net",
                     "storageSyncEndpointSuffix": "afs.azure.net",
                     "mhsmDns": "managedhsm.azure.net", "mysqlServerEndpoint":
                     "mysql.database.azure.com", "postgresqlServerEndpoint":
                     "postgres.database.azure.com", "mariadbServerEndpoint":
                     "mariadb.database.azure.com", "synapseAnalytics": "dev.azuresynapse.net",
                     "attestationEndpoint": "attest.azure.net"},
    }]
