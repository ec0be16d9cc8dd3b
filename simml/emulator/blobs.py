"""Datastores and blobs: the emulator's ``/datastore/v1.0`` routes and the subset of the Azure
Blob REST protocol the real client's datastore code uses, mapped onto simml's datastores.

A blob datastore of the workspace (``AzureBlob``: account name + container name) is served as
``https://{account}.blob.core.windows.net/{container}``; the CONNECT proxy (``tlsproxy.py``)
terminates exactly those accounts and hands each decrypted connection to :class:`BlobHandler`.
Blob names are paths in the datastore. Everything goes through the backend facade's datastore
hooks (``datastore_upload`` / ``datastore_stat`` / ``datastore_read``), never the folders, so a
blob the client writes is what ``simml datastore ls`` and ``Datastore.download`` see, and the
reverse.

Operations: Put Blob, Put Block, Put Block List, Get Blob (ranges), Get Blob Properties (HEAD;
``exists()``), List Blobs (flat and with a delimiter, paged by marker), Get Container
Properties. Others are answered 501 ``NotImplemented``. Errors are Azure Storage's shape (an
XML ``<Error>`` with ``Code`` and ``Message``, and the ``x-ms-error-code`` header), so the
client raises its own exceptions.

Uploads are atomic: the body is streamed into a private staging file and only a complete body
is handed to ``datastore_upload`` (which publishes by rename); a client that disconnects mid-body
leaves nothing visible. Blob names are refused (400 ``InvalidResourceName``) when they could
leave the datastore: ``..`` or ``.`` segments, empty segments (absolute or ``//``), backslashes,
NUL, and the same once more percent-decoded (``%2e%2e``, ``%5c``, ``%252e%252e``).

Authentication: every blob request carries either a SAS that this emulator signed (the
datastore DTO's ``sasToken``; HMAC-SHA256 with a key derived from the emulator's key, over the
permissions, start, expiry, ``/blob/{account}/{container}``, version, resource and protocol; the
permission letter must cover the operation and the clock must be inside start..expiry) or a
bearer token this emulator issued. Anything else (no credential, a forged or expired SAS, a SAS
for another container, SharedKey: the emulator never hands out account keys) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape, quoteattr

from simml.emulator.protocol import ARM_SCOPE, AzureError, TokenError, bad_request, verify_token

if TYPE_CHECKING:
    from simml.emulator.service import Emulator, Request
    from simml.entities import DatastoreFile, DatastoreInfo

logger = logging.getLogger(__name__)

BLOB_SUFFIX = "core.windows.net"
STORAGE_VERSION = "2021-08-06"
SAS_PERMISSIONS = "racwl"
SAS_DAYS = 7
SAS_SKEW = timedelta(minutes=15)
MAX_PUT_BLOB = 5000 * 1024 * 1024
MAX_BLOCK = 4000 * 1024 * 1024
MAX_BLOCK_LIST = 4 * 1024 * 1024
MAX_NAME = 1024
MAX_RESULTS = 5000
CHUNK = 4 * 1024 * 1024
DISCARD_LIMIT = 1024 * 1024
CONFLICT_MESSAGE = "Another datastore with the same name already exists"
ROUTER_ACCOUNT = "simmlartifacts"
_ACCOUNT_HOST = re.compile(r"^([a-z0-9][a-z0-9-]{0,62})\.blob\." + re.escape(BLOB_SUFFIX) + "$")
_CONTAINER = re.compile(r"^[a-z0-9$][a-z0-9-]{1,62}$")
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_OPS_WITH_BODY = {"PUT", "POST", "PATCH"}


# --- Azure Storage's errors --------------------------------------------------------------------

class StorageError(Exception):
    """An error in Azure Storage's shape: XML ``<Error><Code/><Message/></Error>`` and the
    ``x-ms-error-code`` header (which the client maps onto its exceptions)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str) -> bytes:
        when = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
        return ('<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>'
                f"{escape(self.code)}</Code><Message>{escape(self.message)}\n"
                f"RequestId:{request_id}\nTime:{when}</Message></Error>").encode()


def _bad_name(raw: str, why: str) -> StorageError:
    return StorageError(400, "InvalidResourceName",
                        f"The specified resource name is not valid ({why}): {raw[:200]!r}.")


# --- SAS ------------------------------------------------------------------------------------------

def derive_key(key: str, purpose: str) -> bytes:
    """A key for one purpose (SAS signing, the MSI secret) derived from the emulator's key."""
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).digest()


def _sas_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sas_string(sp: str, st: str, se: str, account: str, container: str, sv: str, sr: str,
                spr: str) -> bytes:
    return "\n".join([sp, st, se, f"/blob/{account}/{container}", sv, sr, spr]).encode()


def mint_sas(key: str, account: str, container: str, permissions: str = SAS_PERMISSIONS,
             days: int = SAS_DAYS, now: datetime | None = None) -> str:
    """A container SAS query string (no leading ``?``) signed with a key derived from ``key``."""
    now = now or datetime.now(timezone.utc)
    fields = {"sv": STORAGE_VERSION, "sr": "c", "sp": permissions,
              "st": _sas_time(now - SAS_SKEW), "se": _sas_time(now + timedelta(days=days)),
              "spr": "https"}
    sig = _sign(key, fields, account.lower(), container)
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in (*fields.items(), ("sig", sig)))


def _sign(key: str, fields: dict[str, str], account: str, container: str) -> str:
    message = _sas_string(fields["sp"], fields["st"], fields["se"], account, container,
                          fields["sv"], fields["sr"], fields["spr"])
    digest = hmac.new(derive_key(key, "simml-blob-sas-v1"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_sas(key: str, query: dict[str, list[str]], account: str, container: str,
               permission: str, now: datetime | None = None) -> None:
    """Refuse (403 ``AuthenticationFailed`` / ``AuthorizationPermissionMismatch``) a SAS this
    emulator did not sign for this container, outside its validity, or without ``permission``."""
    def one(name: str) -> str:
        values = query.get(name) or [""]
        return values[0]

    fields = {k: one(k) for k in ("sv", "sr", "sp", "st", "se", "spr")}
    given = one("sig")
    denied = StorageError(403, "AuthenticationFailed",
                          "Server failed to authenticate the request: the signature is not one "
                          "this emulator issued for this container.")
    if not given or fields["sr"] != "c":
        raise denied
    expected = _sign(key, fields, account.lower(), container)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise denied
    now = now or datetime.now(timezone.utc)
    try:
        start = datetime.strptime(fields["st"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        expiry = datetime.strptime(fields["se"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc)
    except ValueError as exc:
        raise denied from exc
    if not start <= now < expiry:
        raise StorageError(403, "AuthenticationFailed",
                           "Server failed to authenticate the request: the signature is not "
                           f"valid now (valid from {fields['st']} to {fields['se']}).")
    if permission not in fields["sp"]:
        raise StorageError(403, "AuthorizationPermissionMismatch",
                           f"This request is not authorized to perform this operation using this "
                           f"permission (needs {permission!r}, the signature grants "
                           f"{fields['sp']!r}).")


# --- blob names ----------------------------------------------------------------------------------

def _check_segments(text: str, raw: str) -> None:
    if "\\" in text:
        raise _bad_name(raw, "backslash")
    if "\x00" in text:
        raise _bad_name(raw, "NUL character")
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            raise _bad_name(raw, "empty, '.' or '..' path segment")
        if segment.startswith(".simml-tmp-"):
            raise _bad_name(raw, "reserved name")


def parse_path(path: str) -> tuple[str, str | None]:
    """``(container, blob name or None)`` from a request path, refusing anything that could name
    a path outside the container (see the module docstring)."""
    if not path.startswith("/"):
        raise _bad_name(path, "not an absolute URL path")
    raw = path[1:]
    if raw == "":
        return "", None
    if "\\" in raw or "%5c" in raw.lower():
        raise _bad_name(path, "backslash")
    container_raw, sep, blob_raw = raw.partition("/")
    container = unquote(container_raw)
    if not _CONTAINER.match(container):
        raise _bad_name(path, "container name")
    if not sep or blob_raw == "":
        return container, None
    name = unquote(blob_raw, errors="strict")
    if len(name) > MAX_NAME:
        raise _bad_name(path, f"longer than {MAX_NAME} characters")
    _check_segments(name, path)
    twice = unquote(name)
    if twice != name:  # a percent-encoded form of a forbidden name (%252e%252e, %255c, ...)
        _check_segments(twice, path)
    return container, name


def etag_of(found: "DatastoreFile") -> str:
    digest = hashlib.sha256(f"{found.path}\0{found.size}\0{found.modified.timestamp()!r}"
                            .encode()).hexdigest()[:15].upper()
    return f'"0x8{digest}"'


def _http_date(value: datetime) -> str:
    return format_datetime(value.astimezone(timezone.utc), usegmt=True)


# --- the service ----------------------------------------------------------------------------------

def service(emulator: "Emulator") -> "BlobService":
    """The emulator's blob service (one per ``Emulator``)."""
    found = getattr(emulator, "blobs", None)
    if found is None:
        found = emulator.blobs = BlobService(emulator)  # type: ignore[attr-defined]
    return found


class BlobService:
    """Blob operations over the workspace's datastores (backend facade only). Datastore I/O runs
    outside the emulator's lock: the hooks publish each file by rename and are thread-safe.

    ``account_url`` (``https://simmlartifacts.blob.core.windows.net``) is the blob host whose
    requests go to the emulator's own router instead (the signed "blob-ish" routes of run
    artifacts and snapshots, ``artifacts.py``); no datastore may use that account.
    """

    account_url = f"https://{ROUTER_ACCOUNT}.blob.{BLOB_SUFFIX}"

    def __init__(self, emulator: "Emulator") -> None:
        self.emulator = emulator
        self._staging: Path | None = None
        self._staging_lock = threading.Lock()

    @property
    def workspace(self) -> Any:
        return self.emulator.workspace

    @property
    def key(self) -> str:
        key = getattr(self.emulator, "key", None)
        if not key:
            raise RuntimeError("the emulator has no key (set by server.make_server)")
        return key

    # --- datastores --------------------------------------------------------------------------
    def blob_datastores(self) -> list["DatastoreInfo"]:
        ws = self.workspace
        return [d for d in ws._backend.datastore_list(ws._info)
                if d.datastore_type == "AzureBlob" and d.account_name and d.container_name]

    def account_for_host(self, host: str) -> str | None:
        """The account when ``host`` is ``{account}.blob.core.windows.net`` for one of the
        workspace's blob datastores (the proxy terminates only those), else None."""
        found = _ACCOUNT_HOST.match(host.lower())
        if found is None:
            return None
        account = found.group(1)
        if account == ROUTER_ACCOUNT:
            return None
        try:
            known = {d.account_name.lower() for d in self.blob_datastores()}
        except Exception:  # noqa: BLE001 - a broken registry: tunnel rather than fail the proxy
            logger.exception("emulator: listing datastores failed")
            return None
        return account if account in known else None

    def datastore_for(self, account: str, container: str) -> "DatastoreInfo":
        for info in self.blob_datastores():
            if info.account_name.lower() == account and info.container_name == container:
                return info
        raise StorageError(404, "ContainerNotFound", "The specified container does not exist.")

    def sas_for(self, info: "DatastoreInfo") -> str:
        return mint_sas(self.key, info.account_name, info.container_name)

    def authorize(self, headers: Any, query: dict[str, list[str]], account: str,
                  container: str, permission: str) -> None:
        if "sig" in query:
            verify_sas(self.key, query, account, container, permission)
            return
        header = headers.get("Authorization") or ""
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer":
                try:
                    verify_token(self.key, token.strip())
                    return
                except TokenError as exc:
                    raise StorageError(403, "AuthenticationFailed",
                                       f"Server failed to authenticate the request: {exc}") \
                        from exc
            raise StorageError(403, "AuthenticationFailed",
                               f"Server failed to authenticate the request: {scheme} credentials "
                               "are not accepted (this emulator issues SAS and bearer tokens "
                               "only).")
        raise StorageError(401, "NoAuthenticationInformation",
                           "Server failed to authenticate the request: no SAS and no bearer "
                           "token.", {"WWW-Authenticate": 'Bearer authorization_uri="simml"'})

    # --- staging (bodies being received) -----------------------------------------------------
    def staging(self) -> Path:
        """This process's private folder for bodies in flight and uncommitted blocks (beside
        the workspace, so handing a body to the datastore is an in-filesystem copy)."""
        with self._staging_lock:
            if self._staging is None:
                from simml.emulator.tlsproxy import emulator_dir
                parent = emulator_dir(self.workspace) / "staging"
                parent.mkdir(parents=True, exist_ok=True)
                _clean_stale_staging(parent)
                self._staging = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=parent))
            return self._staging

    def close(self) -> None:
        """Drop this process's staging folder (bodies in flight, uncommitted blocks)."""
        with self._staging_lock:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None

    def new_temp(self) -> tuple[Path, int]:
        fd, path = tempfile.mkstemp(prefix="body-", dir=self.staging())
        return Path(path), fd

    # --- blobs -------------------------------------------------------------------------------
    def stat(self, info: "DatastoreInfo", name: str) -> "DatastoreFile":
        from simml.exceptions import UnsafePathException
        ws = self.workspace
        try:
            files = ws._backend.datastore_stat(ws._info, info.name, name)
        except UnsafePathException as exc:  # e.g. through a symlink leaving the datastore
            raise _bad_name(name, str(exc)) from exc
        for found in files:
            if found.path == name:
                return found
        raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")

    def read(self, info: "DatastoreInfo", name: str, offset: int, length: int) -> bytes:
        ws = self.workspace
        return ws._backend.datastore_read(ws._info, info.name, name, offset, length)

    def listing(self, info: "DatastoreInfo", prefix: str | None) -> list["DatastoreFile"]:
        from simml.exceptions import UnsafePathException
        ws = self.workspace
        try:
            return ws._backend.datastore_stat(ws._info, info.name, prefix or None)
        except UnsafePathException as exc:
            raise StorageError(400, "InvalidQueryParameterValue",
                               f"Value for one of the query parameters specified in the request "
                               f"URI is invalid (prefix): {exc}") from exc

    def put(self, info: "DatastoreInfo", name: str, body: Path, overwrite: bool
            ) -> "DatastoreFile":
        """Publish a complete body as blob ``name`` (the datastore hook renames it into place)."""
        from simml.entities import UploadItem
        from simml.exceptions import NotFoundException, UnsafePathException, UserErrorException
        ws = self.workspace
        try:
            result = ws._backend.datastore_upload(ws._info, info.name,
                                                  (UploadItem(str(body), name),), overwrite, None)
        except UnsafePathException as exc:
            raise _bad_name(name, str(exc)) from exc
        except NotFoundException:
            raise
        except UserErrorException as exc:  # a file where a folder must go, or the reverse
            raise StorageError(409, "PathConflict",
                               f"The blob name conflicts with an existing blob or folder on the "
                               f"simml datastore ({exc}).") from exc
        if name in result.skipped:
            raise StorageError(409, "BlobAlreadyExists", "The specified blob already exists.")
        return self.stat(info, name)

    def _block_dir(self, info: "DatastoreInfo", name: str) -> Path:
        digest = hashlib.sha256(f"{info.name}\0{name}".encode()).hexdigest()[:32]
        return self.staging() / "blocks" / digest

    @staticmethod
    def _block_file(folder: Path, block_id: str) -> Path:
        return folder / hashlib.sha256(block_id.encode()).hexdigest()[:32]

    def put_block(self, info: "DatastoreInfo", name: str, block_id: str, body: Path) -> None:
        folder = self._block_dir(info, name)
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(body, self._block_file(folder, block_id))

    def commit(self, info: "DatastoreInfo", name: str, block_ids: list[str],
               overwrite: bool) -> "DatastoreFile":
        folder = self._block_dir(info, name)
        parts = [self._block_file(folder, b) for b in block_ids]
        missing = [b for b, p in zip(block_ids, parts) if not p.is_file()]
        if missing:
            raise StorageError(400, "InvalidBlockList",
                               f"The specified block list is invalid: {len(missing)} block(s) "
                               f"were never uploaded (first: {missing[0]!r}).")
        body, fd = self.new_temp()
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, CHUNK)
            found = self.put(info, name, body, overwrite)
        finally:
            body.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        return found

    # --- the datastore routes (Azure ML JSON, on the emulator's router) ------------------------
    def dto(self, info: "DatastoreInfo", include_secret: bool = True) -> dict[str, Any]:
        ws = self.workspace._info
        kind = info.datastore_type
        doc: dict[str, Any] = {"name": info.name, "hasBeenValidated": True, "tags": {},
                               "dataStoreType": kind if kind in ("AzureBlob", "AzureFile")
                               else "Custom"}
        if kind in ("AzureBlob", "AzureFile"):
            # file shares get one too: the client cannot even construct an AzureFileDatastore
            # without a credential (they are not served: *.file hosts are tunnelled)
            sas = self.sas_for(info) if include_secret else None
            doc["azureStorageSection"] = {
                "accountName": info.account_name, "containerName": info.container_name,
                "endpoint": BLOB_SUFFIX, "protocol": "https",
                "credentialType": "Sas" if sas else "None", "credential": None,
                "isSas": bool(sas), "sasToken": sas, "accountKey": None,
                "subscriptionId": ws.subscription_id, "resourceGroup": ws.resource_group,
                "blobCacheTimeout": 0, "areWorkspaceManagedIdentitiesAllowed": False,
            }
        return doc

    def _get_info(self, name: str | None) -> "DatastoreInfo":
        from simml.exceptions import NotFoundException
        ws = self.workspace
        try:
            return ws._backend.datastore_get(ws._info, name)
        except NotFoundException as exc:
            raise AzureError(404, "UserError", str(exc), inner="DatastoreNotFound") from exc

    def route_get_default(self, req: "Request") -> dict[str, Any]:
        return self.dto(self._get_info(None))

    def route_set_default(self, req: "Request") -> Any:
        from simml.emulator.service import Response
        from simml.exceptions import NotFoundException
        ws = self.workspace
        try:
            ws._backend.datastore_set_default(ws._info, req.params["name"])
        except NotFoundException as exc:
            raise AzureError(404, "UserError", str(exc), inner="DatastoreNotFound") from exc
        return Response(200, None)

    def route_get(self, req: "Request") -> dict[str, Any]:
        return self.dto(self._get_info(req.params["name"]))

    def route_list(self, req: "Request") -> dict[str, Any]:
        ws = self.workspace
        every = ws._backend.datastore_list(ws._info)
        names = req.arg("dataStoreNames")
        if names:
            wanted = {n for n in names.split(",") if n}
            every = [d for d in every if d.name in wanted]
        try:
            start = int(req.arg("continuationToken") or 0)
            count = int(req.arg("count") or 30)
        except ValueError as exc:
            raise bad_request(f"Invalid paging argument: {exc}.") from exc
        if start < 0 or count < 1:
            raise bad_request("count must be positive and continuationToken an offset.")
        secret = (req.arg("includeSecret") or "true").lower() != "false"
        page = every[start:start + count]
        more = start + count < len(every)
        return {"value": [self.dto(d, secret) for d in page],
                "continuationToken": str(start + count) if more else None, "nextLink": None}

    def _register(self, req: "Request", overwrite: bool) -> dict[str, Any]:
        from simml.core.datastore import Datastore
        body = req.json_object()
        name = body.get("name")
        kind = body.get("dataStoreType")
        section = body.get("azureStorageSection") or {}
        if not isinstance(name, str) or kind not in ("AzureBlob", "AzureFile"):
            raise bad_request(f"dataStoreType {kind!r} is not supported by the emulator (only "
                              "AzureBlob and AzureFile).", inner="NotSupported")
        if "name" in req.params and req.params["name"] != name:
            raise bad_request(f"The body names {name!r}, the path {req.params['name']!r}.")
        account, container = section.get("accountName"), section.get("containerName")
        if not isinstance(account, str) or not re.fullmatch(r"[a-z0-9]{3,24}", account):
            raise bad_request(f"Invalid storage account name {account!r}.")
        if account == ROUTER_ACCOUNT:
            raise bad_request(f"The storage account name {account!r} is reserved by the "
                              "emulator (run artifacts).")
        if not isinstance(container, str) or not _CONTAINER.match(container):
            raise bad_request(f"Invalid container name {container!r}.")
        if not overwrite:
            ws = self.workspace
            if any(d.name == name for d in ws._backend.datastore_list(ws._info)):
                raise bad_request(f"{CONFLICT_MESSAGE}: {name}.", inner="Conflict")
        register = (Datastore.register_azure_blob_container if kind == "AzureBlob"
                    else Datastore.register_azure_file_share)
        register(self.workspace, name, container, account, overwrite=overwrite)
        return self.dto(self._get_info(name))

    def route_create(self, req: "Request") -> dict[str, Any]:
        return self._register(req, overwrite=False)

    def route_update(self, req: "Request") -> dict[str, Any]:
        return self._register(req, overwrite=True)


def _clean_stale_staging(parent: Path) -> None:
    """Remove staging folders of ``simml serve`` processes that are gone."""
    for entry in parent.iterdir():
        pid = entry.name.split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def register(emulator: "Emulator") -> None:
    """The datastore routes (``/datastore/v1.0``); the blob host itself is served through the
    proxy (``serve_connection``)."""
    svc = service(emulator)
    base = "/datastore/v1.0" + ARM_SCOPE
    add = emulator.router.add
    add("GET", base + "/default", svc.route_get_default)
    add("PUT", base + "/default/{name}", svc.route_set_default)
    add("GET", base + "/datastores", svc.route_list)
    add("POST", base + "/datastores", svc.route_create)
    add("GET", base + "/datastores/{name}", svc.route_get)
    add("PUT", base + "/datastores/{name}", svc.route_update)


# --- the blob endpoint (one decrypted connection from the proxy) ---------------------------------

class _Endpoint:
    """What a :class:`BlobHandler` sees as its ``server``: the service, the account it was
    connected to, and the emulator's request log."""

    def __init__(self, svc: BlobService, account: str, request_log: Any) -> None:
        self.service = svc
        self.account = account
        self.request_log = request_log


def serve_connection(svc: BlobService, account: str, sock: Any, address: Any,
                     request_log: Any) -> None:
    """Serve HTTP/1.1 requests for ``{account}.blob...`` on one (TLS) connection."""
    BlobHandler(sock, address, _Endpoint(svc, account, request_log))


def _classify(method: str, query: dict[str, list[str]], name: str | None
              ) -> tuple[str, str]:
    """(operation, SAS permission letter) of a request; 4xx/501 for what is not served."""
    comp = (query.get("comp") or [None])[0]
    restype = (query.get("restype") or [None])[0]
    if name is None:
        if restype == "container":
            if method == "GET" and comp == "list":
                return "ListBlobs", "l"
            if method in ("GET", "HEAD") and comp is None:
                return "GetContainerProperties", "r"
            if method == "PUT" and comp is None:
                return "CreateContainer", "c"
        raise StorageError(501, "NotImplemented",
                           f"The requested operation is not implemented by the simml emulator "
                           f"({method} restype={restype} comp={comp}).")
    if method == "PUT":
        op = {None: "PutBlob", "block": "PutBlock", "blocklist": "PutBlockList"}.get(comp)
        if op:
            return op, "w"
    elif method == "GET" and comp is None:
        return "GetBlob", "r"
    elif method == "HEAD" and comp is None:
        return "GetBlobProperties", "r"
    elif method not in ("DELETE", "POST"):
        raise StorageError(405, "UnsupportedHttpVerb",
                           f"The resource doesn't support the specified HTTP verb {method}.")
    raise StorageError(501, "NotImplemented",
                       f"The requested operation is not implemented by the simml emulator "
                       f"({method} comp={comp}).")


class BlobHandler(BaseHTTPRequestHandler):
    """Azure Blob REST over one connection the proxy decrypted (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "Windows-Azure-Blob/1.0 simml-emulator"
    sys_version = ""
    server: _Endpoint  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("blob %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib names
        self._dispatch()

    do_PUT = do_HEAD = do_DELETE = do_POST = do_PATCH = do_GET

    # --- plumbing -----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        started = time.monotonic()
        self._request_id = str(uuid.uuid4())
        self._body_pending = self.command in _OPS_WITH_BODY or bool(
            self.headers.get("Content-Length"))
        split = urlsplit(self.path)
        query = parse_qs(split.query, keep_blank_values=True)
        template, status = "unknown", 500
        svc = self.server.service
        try:
            try:
                container, name = parse_path(split.path)
            except UnicodeDecodeError as exc:
                raise _bad_name(split.path, "not UTF-8") from exc
            if not container:
                raise StorageError(501, "NotImplemented", "Account-level operations are not "
                                   "implemented by the simml emulator.")
            op, permission = _classify(self.command, query, name)
            template = "blob:" + op
            svc.authorize(self.headers, query, self.server.account, container, permission)
            info = svc.datastore_for(self.server.account, container)
            status = getattr(self, "_op_" + op)(info, container, name, query)
        except StorageError as exc:
            status = exc.status
            self._error(exc)
        except Exception as exc:  # the server keeps serving; the client gets Azure's shape
            logger.exception("emulator: blob %s %s failed", self.command, split.path)
            status = 500
            self._error(StorageError(500, "InternalError",
                                     f"The server encountered an internal error: "
                                     f"{type(exc).__name__}: {exc}"))
        finally:
            self.server.request_log.add({
                "method": self.command, "template": template,
                "path": f"https://{self.server.account}.blob.{BLOB_SUFFIX}{split.path}",
                "status": status, "ms": round((time.monotonic() - started) * 1000, 1)})

    def _common_headers(self) -> dict[str, str]:
        return {"x-ms-request-id": self._request_id,
                "x-ms-version": self.headers.get("x-ms-version") or STORAGE_VERSION,
                "x-ms-client-request-id": self.headers.get("x-ms-client-request-id") or "",
                "Date": _http_date(datetime.now(timezone.utc))}

    def _finish_body(self) -> None:
        """A refused request's body is read and dropped (small) or the connection is closed, so
        the next request on it is not parsed from the middle of a body."""
        if not self._body_pending:
            return
        self._body_pending = False
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= DISCARD_LIMIT and not self.headers.get("Transfer-Encoding"):
            try:
                self.rfile.read(length)
                return
            except OSError:
                pass
        self.close_connection = True

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self._finish_body()
        try:
            self.send_response(status)
            for key, value in {**self._common_headers(), **headers}.items():
                self.send_header(key, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _error(self, exc: StorageError) -> None:
        body = exc.body(self._request_id)
        headers = {"x-ms-error-code": exc.code, "Content-Type": "application/xml", **exc.headers}
        if self.command == "HEAD":
            headers["Content-Length"] = "0"
            body = b""
        self._send(exc.status, headers, body)

    def _receive(self, limit: int) -> tuple[Path, str] | None:
        """Stream the request body into a private staging file; ``(path, base64 MD5)``, or None
        when the client went away before sending all of it (nothing kept)."""
        if self.headers.get("Transfer-Encoding"):
            raise StorageError(400, "UnsupportedHeader",
                               "Transfer-Encoding is not supported; send Content-Length.")
        text = self.headers.get("Content-Length")
        if text is None:
            raise StorageError(411, "MissingContentLengthHeader",
                               "Content-Length HTTP header is missing.")
        try:
            length = int(text)
        except ValueError:
            length = -1
        if length < 0:
            raise StorageError(400, "InvalidHeaderValue",
                               "The value for Content-Length is not valid.")
        if length > limit:
            raise StorageError(413, "RequestBodyTooLarge",
                               f"The request body is too large and exceeds the maximum "
                               f"permissible limit ({limit} bytes).")
        path, fd = self.server.service.new_temp()
        md5 = hashlib.md5(usedforsecurity=False)
        complete = False
        try:
            with os.fdopen(fd, "wb") as out:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    out.write(chunk)
                    md5.update(chunk)
                    remaining -= len(chunk)
                complete = remaining == 0
        except OSError:  # reset, timeout
            complete = False
        finally:
            if not complete:
                path.unlink(missing_ok=True)
        self._body_pending = False
        if not complete:
            self.close_connection = True
            return None
        digest = base64.b64encode(md5.digest()).decode()
        sent = self.headers.get("Content-MD5")
        if sent and sent.strip() != digest:
            path.unlink(missing_ok=True)
            raise StorageError(400, "Md5Mismatch", "The MD5 value specified in the request did "
                               "not match with the MD5 value calculated by the server.")
        return path, digest

    @staticmethod
    def _blob_headers(found: "DatastoreFile") -> dict[str, str]:
        return {"ETag": etag_of(found), "Last-Modified": _http_date(found.modified),
                "x-ms-creation-time": _http_date(found.modified),
                "x-ms-blob-type": "BlockBlob", "x-ms-server-encrypted": "true",
                "x-ms-lease-status": "unlocked", "x-ms-lease-state": "available",
                "x-ms-access-tier": "Hot", "x-ms-access-tier-inferred": "true",
                "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}

    def _overwrite(self) -> bool:
        """Put Blob overwrites unless ``If-None-Match: *`` (the client's ``overwrite=False``)."""
        return (self.headers.get("If-None-Match") or "").strip() != "*"

    # --- container operations -----------------------------------------------------------------
    def _op_GetContainerProperties(self, info: Any, container: str, name: None,  # noqa: N802
                                   query: Any) -> int:
        now = datetime.now(timezone.utc)
        self._send(200, {"ETag": '"0x8' + hashlib.sha256(container.encode()).hexdigest()[:15]
                         .upper() + '"', "Last-Modified": _http_date(now),
                         "x-ms-lease-status": "unlocked", "x-ms-lease-state": "available",
                         "x-ms-has-immutability-policy": "false",
                         "x-ms-has-legal-hold": "false"})
        return 200

    def _op_CreateContainer(self, info: Any, container: str, name: None,  # noqa: N802
                            query: Any) -> int:
        raise StorageError(409, "ContainerAlreadyExists", "The specified container already "
                           "exists.")

    def _op_ListBlobs(self, info: Any, container: str, name: None,  # noqa: N802
                      query: dict[str, list[str]]) -> int:
        def arg(key: str) -> str | None:
            values = query.get(key)
            return values[0] if values else None

        prefix = arg("prefix") or ""
        delimiter = arg("delimiter") or ""
        marker_text = arg("marker") or ""
        try:
            max_results = int(arg("maxresults") or MAX_RESULTS)
            if not 1 <= max_results:
                raise ValueError(max_results)
        except ValueError as exc:
            raise StorageError(400, "OutOfRangeQueryParameterValue", "One of the query "
                               "parameters specified in the request URI is outside the "
                               "permissible range (maxresults).") from exc
        max_results = min(max_results, MAX_RESULTS)
        after = _decode_marker(marker_text)
        entries: list[tuple[str, Any]] = []   # (name, DatastoreFile | None for a prefix)
        seen_prefixes: set[str] = set()
        for found in self.server.service.listing(info, prefix):
            if delimiter:
                rest = found.path[len(prefix):]
                cut = rest.find(delimiter)
                if cut >= 0:
                    folder = prefix + rest[:cut + len(delimiter)]
                    if folder not in seen_prefixes:
                        seen_prefixes.add(folder)
                        entries.append((folder, None))
                    continue
            entries.append((found.path, found))
        entries.sort(key=lambda e: e[0])
        if after is not None:
            entries = [e for e in entries if e[0] > after]
        page, more = entries[:max_results], len(entries) > max_results
        next_marker = _encode_marker(page[-1][0]) if more and page else ""
        endpoint = f"https://{self.server.account}.blob.{BLOB_SUFFIX}/"
        parts = ['<?xml version="1.0" encoding="utf-8"?>',
                 f"<EnumerationResults ServiceEndpoint={quoteattr(endpoint)} "
                 f"ContainerName={quoteattr(container)}>"]
        if prefix:
            parts.append(f"<Prefix>{escape(prefix)}</Prefix>")
        if marker_text:
            parts.append(f"<Marker>{escape(marker_text)}</Marker>")
        parts.append(f"<MaxResults>{max_results}</MaxResults>")
        if delimiter:
            parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        parts.append("<Blobs>")
        for entry_name, found in page:
            if found is None:
                parts.append(f"<BlobPrefix>{_xml_name(entry_name)}</BlobPrefix>")
                continue
            when = _http_date(found.modified)
            parts.append(
                f"<Blob>{_xml_name(entry_name)}<Properties><Creation-Time>{when}</Creation-Time>"
                f"<Last-Modified>{when}</Last-Modified><Etag>{escape(etag_of(found))}</Etag>"
                f"<Content-Length>{found.size}</Content-Length>"
                "<Content-Type>application/octet-stream</Content-Type>"
                "<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier>"
                "<AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus>"
                "<LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted>"
                "</Properties></Blob>")
        parts.append("</Blobs>")
        parts.append(f"<NextMarker>{escape(next_marker)}</NextMarker>" if next_marker
                     else "<NextMarker />")
        parts.append("</EnumerationResults>")
        self._send(200, {"Content-Type": "application/xml"}, "".join(parts).encode())
        return 200

    # --- blob operations -----------------------------------------------------------------------
    def _op_PutBlob(self, info: Any, container: str, name: str,  # noqa: N802
                    query: Any) -> int:
        blob_type = self.headers.get("x-ms-blob-type")
        if blob_type is None:
            raise StorageError(400, "MissingRequiredHeader",
                               "An HTTP header that's mandatory for this request is not "
                               "specified (x-ms-blob-type).")
        if blob_type != "BlockBlob":
            raise StorageError(400, "InvalidHeaderValue", f"x-ms-blob-type {blob_type!r} is not "
                               "supported by the simml emulator (BlockBlob only).")
        received = self._receive(MAX_PUT_BLOB)
        if received is None:
            return 499  # the client went away mid-body: nothing was published
        body, md5 = received
        try:
            found = self.server.service.put(info, name, body, self._overwrite())
        finally:
            body.unlink(missing_ok=True)
        headers = self._blob_headers(found)
        self._send(201, {"ETag": headers["ETag"], "Last-Modified": headers["Last-Modified"],
                         "Content-MD5": md5, "x-ms-request-server-encrypted": "true"})
        return 201

    def _op_PutBlock(self, info: Any, container: str, name: str,  # noqa: N802
                     query: dict[str, list[str]]) -> int:
        block_id = (query.get("blockid") or [""])[0]
        try:
            decoded = base64.b64decode(block_id, validate=True)
        except ValueError:
            decoded = b""
        if not block_id or not decoded or len(decoded) > 64:
            raise StorageError(400, "InvalidQueryParameterValue",
                               "Value for one of the query parameters specified in the request "
                               "URI is invalid (blockid: base64, at most 64 bytes).")
        received = self._receive(MAX_BLOCK)
        if received is None:
            return 499
        body, md5 = received
        try:
            self.server.service.put_block(info, name, block_id, body)
        finally:
            body.unlink(missing_ok=True)
        self._send(201, {"Content-MD5": md5, "x-ms-request-server-encrypted": "true"})
        return 201

    def _op_PutBlockList(self, info: Any, container: str, name: str,  # noqa: N802
                         query: Any) -> int:
        import xml.etree.ElementTree as ElementTree
        received = self._receive(MAX_BLOCK_LIST)
        if received is None:
            return 499
        body, _ = received
        try:
            raw = body.read_bytes()
        finally:
            body.unlink(missing_ok=True)
        invalid = StorageError(400, "InvalidXmlDocument",
                               "XML specified is not syntactically valid (a BlockList of "
                               "Latest/Committed/Uncommitted block ids).")
        if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
            raise invalid
        try:
            root = ElementTree.fromstring(raw)
        except ElementTree.ParseError as exc:
            raise invalid from exc
        if root.tag != "BlockList":
            raise invalid
        ids: list[str] = []
        for child in root:
            if child.tag not in ("Latest", "Uncommitted", "Committed") or not child.text:
                raise invalid
            if child.tag == "Committed":
                raise StorageError(400, "InvalidBlockList", "The specified block list is "
                                   "invalid: the simml emulator keeps no committed blocks to "
                                   "reuse; upload every block again.")
            ids.append(child.text.strip())
        found = self.server.service.commit(info, name, ids, self._overwrite())
        self._send(201, {"ETag": etag_of(found), "Last-Modified": _http_date(found.modified),
                         "x-ms-request-server-encrypted": "true"})
        return 201

    def _op_GetBlobProperties(self, info: Any, container: str, name: str,  # noqa: N802
                              query: Any) -> int:
        found = self.server.service.stat(info, name)
        self._check_conditions(found)
        self._send(200, {**self._blob_headers(found), "Content-Length": str(found.size)})
        return 200

    def _check_conditions(self, found: "DatastoreFile") -> None:
        etag = etag_of(found)
        wanted = self.headers.get("If-Match")
        if wanted and wanted.strip() not in ("*", etag):
            raise StorageError(412, "ConditionNotMet", "The condition specified using HTTP "
                               "conditional header(s) is not met.")

    def _op_GetBlob(self, info: Any, container: str, name: str,  # noqa: N802
                    query: Any) -> int:
        svc = self.server.service
        found = svc.stat(info, name)
        self._check_conditions(found)
        size = found.size
        headers = self._blob_headers(found)
        text = self.headers.get("x-ms-range") or self.headers.get("Range")
        start, length, status = 0, size, 200
        if text:
            matched = _RANGE.match(text.strip())
            if matched is None:
                raise StorageError(400, "InvalidHeaderValue", f"The range {text!r} is not valid.")
            start = int(matched.group(1))
            end = int(matched.group(2)) if matched.group(2) else size - 1
            if start >= size or end < start:
                raise StorageError(416, "InvalidRange", "The range specified is invalid for the "
                                   "current size of the resource.",
                                   {"Content-Range": f"bytes */{size}"})
            end = min(end, size - 1)
            length, status = end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(length)
        self._send(status, headers)
        offset, remaining = start, length
        try:
            while remaining > 0:
                data = svc.read(info, name, offset, min(CHUNK, remaining))
                if not data:  # the blob shrank under us: cut the response short
                    self.close_connection = True
                    break
                self.wfile.write(data)
                offset += len(data)
                remaining -= len(data)
        except Exception:  # noqa: BLE001 - headers are sent: only cutting the body short is left
            logger.debug("emulator: blob read of %s ended early", name, exc_info=True)
            self.close_connection = True
        return status


def _xml_name(name: str) -> str:
    if _XML_BAD.search(name):
        return f'<Name Encoded="true">{escape(quote(name, safe="/"))}</Name>'
    return f"<Name>{escape(name)}</Name>"


def _encode_marker(name: str) -> str:
    return "simml1!" + base64.urlsafe_b64encode(name.encode()).decode()


def _decode_marker(marker: str) -> str | None:
    if not marker:
        return None
    if not marker.startswith("simml1!"):
        raise StorageError(400, "InvalidQueryParameterValue", "Value for one of the query "
                           "parameters specified in the request URI is invalid (marker).")
    try:
        return base64.urlsafe_b64decode(marker[len("simml1!"):]).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise StorageError(400, "InvalidQueryParameterValue", "Value for one of the query "
                           "parameters specified in the request URI is invalid (marker).") \
            from exc


__all__ = ["BlobHandler", "BlobService", "StorageError", "mint_sas", "verify_sas", "parse_path",
           "register", "service", "serve_connection", "derive_key", "BLOB_SUFFIX"]
