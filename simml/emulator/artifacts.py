"""Run artifacts, run files, live logs and content snapshots for the real ``azureml-core`` client.

Two kinds of route live here:

* the artifact service (``/artifact/v2.0/{WS}/artifacts/...``) and the content service
  (``/content/v{1,2}.0/{WS}/snapshots/...``): JSON, behind the emulator's bearer token, answering
  the client's DTOs (``ArtifactDto``, ``ArtifactContentInformationDto``, the snapshot dicts);
* "blob-ish" routes the answers point at (``/azureml/{origin}/{container}/{path}`` and
  ``/azureml-snapshots/...``): PUT / HEAD / GET of file contents. The client sends no bearer there
  (it talks to them as Azure Storage), so each URL carries a signature this emulator issued: an
  HMAC-SHA256 with the emulator's key over the permission, the decoded path and the expiry (``sp``,
  ``se``, ``sig`` query parameters, like a SAS). Missing, forged or expired: 403 in Azure
  Storage's XML shape. Reads are handed out as plain ``http://`` URLs of this server; writes as
  ``https://simmlartifacts.blob.core.windows.net/...`` URLs because the client's blob uploader
  only speaks https to ``{account}.blob.{suffix}`` (the emulator's TLS proxy, ``tlsproxy.py``,
  hands that host to this server's routes).

Origin ``ExperimentRun`` with container ``dcid.<run id>`` is simml's run files, through simml's API
(``Run.upload_file`` and the run-history store's ``list_files`` / ``open_file``): a file the
client uploads shows in ``simml run show``, and ``./outputs`` copied by simml's runner is listed
and downloadable by the client. Other origins (``LocalUpload`` of ``Model.register``) live in a
folder the emulator owns under the workspace folder (``<workspace>/emulator/artifacts``), written
atomically; other helpers can serve their own origin with ``emulator.artifacts.register_origin``.

Snapshots are content-addressed (``<workspace>/emulator/snapshots/blobs/<hash>``): a file is
keyed by the client's own Merkle hash (SHA-512 of its bytes, its name and ``File``), computed
here when it arrives, so the snapshot's ``DirTreeNode`` is verified file by file (a declared hash
with no arrived content is refused) and a file unchanged since an earlier snapshot is never sent
again (the client diffs against ``snapshots/latest/metadata``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import threading
import time
import uuid
import zipfile
from datetime import datetime, timezone
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Protocol
from urllib.parse import quote
from xml.etree import ElementTree

from simml._paths import TMP_PREFIX
from simml.emulator.protocol import ARM_SCOPE, AzureError, bad_request, not_found
from simml.exceptions import NotFoundException, UserErrorException

if TYPE_CHECKING:
    from simml.core.workspace import Workspace
    from simml.emulator.service import Emulator, Request

RUN_ORIGIN = "ExperimentRun"
ARTIFACT_ROOT = "azureml"             # blob-ish artifacts: /azureml/{origin}/{container}/...
SNAPSHOT_ROOT = "azureml-snapshots"   # snapshot uploads and zips
SAS_SECONDS = 3600
PAGE_SIZE = 500
MAX_SNAPSHOT_FILES = 10_000
STORAGE_VERSION = "2021-08-06"
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled"})
LIVE_LOG_PREFIXES = ("azureml-logs/", "logs/", "user_logs/", "system_logs/")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_HASH = re.compile(r"^[0-9a-f]{128}$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_URL_SPECIAL = re.compile(r"[%?#]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- errors --------------------------------------------------------------------------------------

class StorageError(Exception):
    """An error on a blob-ish route, answered in Azure Storage's shape (XML body and the
    ``x-ms-error-code`` header), which the client's vendored blob library understands."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> Any:
        from simml.emulator.service import Response
        request_id = str(uuid.uuid4())
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{self.code}</Code>'
                f"<Message>{_xml_escape(self.message)}\nRequestId:{request_id}\nTime:"
                f"{datetime.now(timezone.utc).isoformat()}</Message></Error>").encode()
        return Response(self.status, body, {"x-ms-error-code": self.code,
                                            "x-ms-request-id": request_id,
                                            "x-ms-version": STORAGE_VERSION})


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _bad_path(what: str, value: Any, why: str) -> AzureError:
    return AzureError(400, "UserError", f"Invalid {what} {value!r}: {why}.", inner="InvalidPath")


# --- path rules ----------------------------------------------------------------------------------

def artifact_path(name: Any, what: str = "artifact path", allow_empty: bool = False) -> str:
    """The normal form of a client-supplied artifact path, or ``AzureError`` 400.

    ``./`` and empty segments go (the client sends ``./outputs/model.joblib``); refused: control
    characters, backslashes, absolute and drive paths, any ``..`` segment, ``%`` (a second
    decoding must never change the path), ``?`` and ``#`` (write URLs carry the path unquoted)
    and simml's temporary-name prefix."""
    if not isinstance(name, str):
        raise _bad_path(what, name, "it must be a string")
    if "\\" in name or _CONTROL.search(name):
        raise _bad_path(what, name, "backslashes and control characters are not allowed")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise _bad_path(what, name, "it is absolute")
    if _URL_SPECIAL.search(name):
        raise _bad_path(what, name, "'%', '?' and '#' are not allowed (percent-escapes could "
                        "decode into another path)")
    parts = []
    for segment in name.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            raise _bad_path(what, name, "'..' is not allowed")
        if segment.startswith(TMP_PREFIX):
            raise _bad_path(what, name, f"the prefix {TMP_PREFIX!r} is reserved")
        parts.append(segment)
    if not parts and not allow_empty:
        raise _bad_path(what, name, "it is empty")
    return "/".join(parts)


def _segment(value: str, what: str, pattern: re.Pattern[str] = _SEGMENT) -> str:
    if not isinstance(value, str) or not pattern.match(value) or value in (".", ".."):
        raise _bad_path(what, value, "not a valid name")
    return value


def _under(prefix: str, names: Iterable[str]) -> list[str]:
    """Names inside ``prefix`` taken as a folder or a file (``outputs`` matches ``outputs`` and
    ``outputs/x``, never ``outputs2``); the empty prefix is everything."""
    if not prefix:
        return list(names)
    return [n for n in names if n == prefix or n.startswith(prefix + "/")]


# --- atomic files --------------------------------------------------------------------------------

def _atomic_write(target: Path, source: bytes | BinaryIO | Path) -> int:
    """Write ``target`` through a temporary in the same folder and a rename: a reader sees the
    old file or the whole new one, never a part. Returns the size written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / (f"{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}-"
                           f"{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as out:
            if isinstance(source, (bytes, bytearray, memoryview)):
                out.write(source)
            elif isinstance(source, Path):
                with open(source, "rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
            else:
                shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, target)
        return size
    finally:
        tmp.unlink(missing_ok=True)


def _walk(root: Path) -> list[str]:
    """Relative POSIX paths of the files under ``root`` (temporaries skipped), sorted."""
    if not root.is_dir():
        return []
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(TMP_PREFIX)]
        for name in files:
            if not name.startswith(TMP_PREFIX):
                found.append(Path(folder, name).relative_to(root).as_posix())
    return sorted(found)


# --- signatures ----------------------------------------------------------------------------------

class Signer:
    """SAS-like signatures for the blob-ish routes: ``sp`` (``r`` read, ``rw`` read and write),
    ``se`` (expiry, ISO 8601 UTC) and ``sig`` = HMAC-SHA256(key, ``sp\\npath\\nse``) over the
    decoded path. The key is the emulator's (``emulator.key``, set by the server), else one
    random key for this process."""

    def __init__(self, key: Callable[[], str | None]) -> None:
        self._key = key
        self._fallback = secrets.token_urlsafe(32)

    def _mac(self, permission: str, path: str, expiry: str) -> str:
        key = (self._key() or self._fallback).encode()
        message = f"{permission}\n{path}\n{expiry}".encode()
        return base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()
                                        ).rstrip(b"=").decode()

    def query(self, permission: str, path: str, seconds: int = SAS_SECONDS) -> str:
        expiry = datetime.fromtimestamp(int(time.time()) + seconds, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        return (f"sv={STORAGE_VERSION}&sr=b&sp={permission}&se={quote(expiry)}"
                f"&sig={self._mac(permission, path, expiry)}")

    def verify(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        """Raise ``StorageError`` 403 unless the query signs ``path`` for ``method``, unexpired."""
        def one(name: str) -> str:
            values = query.get(name) or [""]
            return values[0]
        permission, expiry, signature = one("sp"), one("se"), one("sig")
        if not signature:
            raise StorageError(403, "AuthenticationFailed", "Server failed to authenticate the "
                               "request: no signature (sig) on this URL.")
        expected = self._mac(permission, path, expiry)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise StorageError(403, "AuthenticationFailed", "Server failed to authenticate the "
                               "request: the signature was not issued by this emulator.")
        try:
            ends = datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError as exc:
            raise StorageError(403, "AuthenticationFailed", "Invalid expiry (se).") from exc
        if ends.timestamp() <= time.time():
            raise StorageError(403, "AuthenticationFailed", "Signed expiry time has passed.")
        needed = "w" if method in ("PUT", "POST", "DELETE") else "r"
        if needed not in permission:
            raise StorageError(403, "AuthorizationPermissionMismatch", "This request is not "
                               f"authorized to perform this operation ({method} needs '{needed}').")


# --- origins -------------------------------------------------------------------------------------

class OriginResolver(Protocol):
    """What ``register_origin`` takes: read access to one origin's containers."""

    def resolve(self, container: str, path: str) -> Path: ...

    def list(self, container: str, prefix: str = "") -> list[str]: ...


class RunFilesOrigin:
    """``ExperimentRun``: container ``dcid.<run id>`` is simml's run files, through its API."""

    writable = True

    def __init__(self, workspace: "Workspace", cache: Path) -> None:
        self.workspace = workspace
        self.cache = cache

    def run_id(self, container: str) -> str:
        run_id = container[5:] if container.startswith("dcid.") else ""
        try:
            if not run_id:
                raise NotFoundException(container)
            self.workspace._history().get_run(run_id)
        except NotFoundException as exc:
            raise not_found(f"Run {run_id or container} was not found (container {container}).",
                            inner="RunNotFound") from exc
        return run_id

    def status(self, container: str) -> str:
        return str(self.workspace._history().get_run(self.run_id(container)).status)

    def list(self, container: str, prefix: str = "") -> list[str]:
        return _under(prefix, self.workspace._history().list_files(self.run_id(container)))

    def exists(self, container: str, path: str) -> bool:
        return path in self.workspace._history().list_files(self.run_id(container))

    def resolve(self, container: str, path: str) -> Path:
        run_id = self.run_id(container)
        store = self.workspace._history()
        try:
            located = getattr(store, "file_path", None)
            if located is not None:  # the local store keeps run files as files: no copy
                return Path(located(run_id, path))
            with store.open_file(run_id, path) as stream:  # another store: a cached copy
                target = self.cache / run_id / path
                _atomic_write(target, stream)
                return target
        except NotFoundException as exc:
            raise not_found(f"Artifact {RUN_ORIGIN}/{container}/{path} was not found.",
                            inner="ArtifactNotFound") from exc

    def write(self, container: str, path: str, source: bytes | Path) -> None:
        from simml.core.run import Run
        run = Run._from_id(self.workspace, self.run_id(container))
        if isinstance(source, Path):
            with open(source, "rb") as stream:
                run.upload_file(path, stream)
        else:
            run.upload_file(path, io.BytesIO(source))


class FolderOrigin:
    """Any other origin (``LocalUpload`` ...): ``<root>/<origin>/<container>/<path>``."""

    writable = True

    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder(self, container: str) -> Path:
        return self.root / _segment(container, "container")

    def list(self, container: str, prefix: str = "") -> list[str]:
        return _under(prefix, _walk(self._folder(container)))

    def exists(self, container: str, path: str) -> bool:
        return (self._folder(container) / path).is_file()

    def resolve(self, container: str, path: str) -> Path:
        target = self._folder(container) / path
        if not target.is_file():
            raise not_found(f"Artifact {self.root.name}/{container}/{path} was not found.",
                            inner="ArtifactNotFound")
        return target

    def write(self, container: str, path: str, source: bytes | Path) -> None:
        folder = self._folder(container)
        target = folder / path  # ``path`` is normal (no ``..``); the folder is the emulator's
        if not os.path.realpath(target).startswith(os.path.realpath(folder) + os.sep):
            raise _bad_path("artifact path", path, "it leaves its container")
        _atomic_write(target, source)


class Artifacts:
    """``emulator.artifacts``: the origins, and the read interface other helpers use
    (``resolve``, ``list``, ``register_origin``)."""

    def __init__(self, workspace: "Workspace", root: Path) -> None:
        self.root = root
        self._runs = RunFilesOrigin(workspace, root / "cache")
        self._registered: dict[str, Any] = {}
        self._folders: dict[str, FolderOrigin] = {}

    def register_origin(self, origin: str, resolver: OriginResolver) -> None:
        """Serve ``origin`` from ``resolver`` (read-only: ``resolve`` and ``list``)."""
        self._registered[_segment(origin, "origin", _ORIGIN)] = resolver

    def is_registered(self, origin: str) -> bool:
        return origin in self._registered

    def origin(self, origin: str) -> Any:
        if origin == RUN_ORIGIN:
            return self._runs
        if origin in self._registered:
            return self._registered[origin]
        _segment(origin, "origin", _ORIGIN)
        folder = self._folders.get(origin)
        if folder is None:
            folder = self._folders[origin] = FolderOrigin(self.root / "artifacts" / origin)
        return folder

    def resolve(self, origin: str, container: str, path: str) -> Path:
        """A readable local file for ``origin/container/path``; ``AzureError`` 404 otherwise."""
        path = artifact_path(path)
        try:
            return Path(self.origin(origin).resolve(container, path))
        except (NotFoundException, FileNotFoundError) as exc:
            raise not_found(f"Artifact {origin}/{container}/{path} was not found.",
                            inner="ArtifactNotFound") from exc

    def list(self, origin: str, container: str, prefix: str = "") -> list[str]:
        """The paths in ``origin/container`` inside ``prefix`` (a folder or a file), sorted."""
        prefix = artifact_path(prefix, "prefix", allow_empty=True)
        try:
            found = self.origin(origin).list(container, prefix)
        except NotFoundException as exc:
            if origin == RUN_ORIGIN:
                raise
            raise not_found(f"Container {origin}/{container} was not found.",
                            inner="ContainerNotFound") from exc
        return sorted(_under(prefix, found))

    def exists(self, origin: str, container: str, path: str) -> bool:
        handler = self.origin(origin)
        check = getattr(handler, "exists", None)
        if check is not None:
            return bool(check(container, path))
        return path in handler.list(container, path)

    def write(self, origin: str, container: str, path: str, source: bytes | Path) -> None:
        handler = self.origin(origin)
        if not getattr(handler, "writable", False):
            raise StorageError(403, "AuthorizationPermissionMismatch",
                               f"Origin {origin} is read-only.")
        handler.write(container, path, source)

    def read(self, origin: str, container: str, path: str) -> bytes:
        return self.resolve(origin, container, path).read_bytes()

    def is_live_log(self, origin: str, container: str, path: str) -> bool:
        """A log of a run that has not ended: served up to its last complete line, because the
        client re-reads the whole file and prints the lines it has not printed yet."""
        if origin != RUN_ORIGIN or not path.startswith(LIVE_LOG_PREFIXES):
            return False
        return self._runs.status(container) not in TERMINAL_STATUSES


# --- snapshots -----------------------------------------------------------------------------------

def merkle_hash(data: bytes, name: str) -> str:
    """The client's hash of a snapshot file (``merkle_tree._get_hash``): SHA-512 of its bytes,
    then its name, then ``File``."""
    digest = hashlib.sha512(data)
    digest.update(name.encode("utf-8"))
    digest.update(b"File")
    return digest.hexdigest()


class Snapshots:
    """``emulator.snapshots``: content-addressed snapshot files and manifests.

    ``blobs/<hash>`` (the Merkle hash computed on arrival), ``manifests/<id>.json`` (the client's
    ``DirTreeNode`` and the flat ``{path: hash}`` list), ``latest`` (the newest snapshot id),
    ``trees/<id>/`` (materialised once for execution), ``zips/<id>.zip`` (``restore_snapshot``)
    and ``uploads/<upload id>/<path>`` (the hash that arrived at each upload URL)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _blob(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest

    def _manifest_path(self, snapshot_id: str) -> Path:
        return self.root / "manifests" / f"{snapshot_id}.json"

    def has_blob(self, digest: str) -> bool:
        return self._blob(digest).is_file()

    def add_blob(self, source: bytes | Path, name: str) -> str:
        """Store an arrived file (bytes, or a staged file for block uploads) under its Merkle
        hash (``name`` is the file's basename)."""
        if isinstance(source, Path):
            digest_state = hashlib.sha512()
            with open(source, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest_state.update(chunk)
            digest_state.update(name.encode("utf-8"))
            digest_state.update(b"File")
            digest = digest_state.hexdigest()
        else:
            digest = merkle_hash(source, name)
        target = self._blob(digest)
        if not target.is_file():
            _atomic_write(target, source)
        return digest

    def record_upload(self, upload: str, path: str, digest: str) -> None:
        """``uploads/<upload id>/<path>`` names the hash that arrived for that upload URL."""
        _atomic_write(self.root / "uploads" / upload / path, digest.encode())

    def uploaded(self, upload: str, path: str) -> Path:
        try:
            digest = (self.root / "uploads" / upload / path).read_text("ascii").strip()
        except (FileNotFoundError, NotADirectoryError):
            raise StorageError(404, "BlobNotFound", "The specified blob does not exist.") from None
        return self._blob(digest)

    def manifest(self, snapshot_id: str) -> dict[str, Any]:
        if not isinstance(snapshot_id, str) or not _SEGMENT.match(snapshot_id):
            raise AzureError(404, "UserError", f"Snapshot {snapshot_id!r} was not found.",
                             inner="SnapshotNotFound")
        try:
            return json.loads(self._manifest_path(snapshot_id).read_text("utf-8"))
        except FileNotFoundError:
            raise AzureError(404, "UserError", f"Snapshot {snapshot_id} was not found.",
                             inner="SnapshotNotFound") from None

    def latest(self) -> dict[str, Any] | None:
        try:
            snapshot_id = (self.root / "latest").read_text("utf-8").strip()
        except FileNotFoundError:
            return None
        return self.manifest(snapshot_id) if snapshot_id else None

    def create(self, snapshot_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Record snapshot ``snapshot_id`` from the client's create body, after checking that
        every file of its ``DirTreeNode`` arrived with the declared hash; nothing is written
        otherwise."""
        _segment(snapshot_id, "snapshot id")
        if self._manifest_path(snapshot_id).exists():
            raise AzureError(409, "UserError", f"Snapshot {snapshot_id} already exists.",
                             inner="SnapshotExists")
        tree = body.get("DirTreeNode")
        if not isinstance(tree, dict):
            raise bad_request("The snapshot needs a DirTreeNode object.")
        files: dict[str, str] = {}
        self._collect(tree, "", files, depth=0)
        missing = [path for path, digest in files.items() if not self.has_blob(digest)]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise AzureError(400, "UserError", "These snapshot files did not arrive with their "
                             f"declared hash (upload them first): {shown}.",
                             inner="SnapshotFileHashMismatch")
        manifest = {"id": snapshot_id, "parentSnapshotId": body.get("ParentSnapshotId"),
                    "createdTime": datetime.now(timezone.utc).isoformat(),
                    "properties": body.get("Properties") or {}, "tags": body.get("Tags") or {},
                    "root": _sorted_tree(tree), "files": files}
        with self._lock:
            _atomic_write(self._manifest_path(snapshot_id), json.dumps(manifest).encode())
            _atomic_write(self.root / "latest", snapshot_id.encode())
        return manifest

    def _collect(self, node: dict[str, Any], prefix: str, files: dict[str, str],
                 depth: int) -> None:
        if depth > 64:
            raise bad_request("The snapshot's DirTreeNode is nested too deeply.")
        children = node.get("children") or {}
        if isinstance(children, list):
            children = {c.get("name"): c for c in children if isinstance(c, dict)}
        if not isinstance(children, dict):
            raise bad_request("DirTreeNode children must be an object.")
        for key, child in children.items():
            if not isinstance(child, dict):
                raise bad_request(f"DirTreeNode child {key!r} is not an object.")
            name = child.get("name", key)
            if name != key or not _safe_node_name(name):
                raise _bad_path("snapshot file name", name, "it must be one plain path segment")
            path = f"{prefix}{name}"
            kind = child.get("type")
            if kind == "File":
                digest = child.get("hash")
                if not isinstance(digest, str) or not _HASH.match(digest):
                    raise bad_request(f"Snapshot file {path!r} has no valid SHA-512 hash.")
                files[path] = digest
                if len(files) > MAX_SNAPSHOT_FILES:
                    raise bad_request(f"A snapshot holds at most {MAX_SNAPSHOT_FILES} files.")
            elif kind == "Directory":
                self._collect(child, path + "/", files, depth + 1)
            else:
                raise bad_request(f"Snapshot node {path!r} has an unknown type {kind!r}.")

    def files(self, snapshot_id: str) -> dict[str, str]:
        return dict(self.manifest(snapshot_id)["files"])

    def source_directory(self, snapshot_id: str) -> Path:
        """A folder holding exactly the snapshot's files, materialised once (for read-only use
        by execution); ``AzureError`` 404 (``SnapshotNotFound``) when unknown."""
        files = self.files(snapshot_id)
        target = self.root / "trees" / snapshot_id
        if target.is_dir():
            return target
        staging = target.parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{snapshot_id}"
        try:
            staging.mkdir(parents=True)
            for path, digest in files.items():
                destination = staging / path
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self._blob(digest), destination)
            try:
                os.rename(staging, target)
            except OSError:
                if not target.is_dir():  # lost a race to another materialiser: theirs is whole
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def zip_path(self, snapshot_id: str) -> Path:
        """``zips/<id>.zip`` of the snapshot's files, built once."""
        files = self.files(snapshot_id)
        target = self.root / "zips" / f"{snapshot_id}.zip"
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.zip"
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
                for path, digest in sorted(files.items()):
                    archive.write(self._blob(digest), path)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target


def _safe_node_name(name: Any) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and not _CONTROL.search(name) and not _URL_SPECIAL.search(name)
            and not name.startswith(TMP_PREFIX) and len(name) <= 255)


def _sorted_tree(node: dict[str, Any]) -> dict[str, Any]:
    """The tree with children keyed and ordered by name (the client's differ walks siblings in
    sorted order)."""
    children = node.get("children") or {}
    if isinstance(children, list):
        children = {c.get("name"): c for c in children if isinstance(c, dict)}
    out = {k: v for k, v in node.items() if k != "children"}
    out["children"] = {name: _sorted_tree(children[name]) for name in sorted(children)}
    return out


# --- the routes ----------------------------------------------------------------------------------

def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")


def _etag(path: Path) -> str:
    stat = path.stat()
    return f'"0x{stat.st_mtime_ns:X}{stat.st_size:X}"'


class ArtifactRoutes:
    """The handlers; one instance per emulator, created by ``register``."""

    def __init__(self, emulator: "Emulator", root: Path) -> None:
        self.emulator = emulator
        self.workspace = emulator.workspace
        self.root = root
        self.artifacts = Artifacts(emulator.workspace, root)
        self.snapshots = Snapshots(root / "snapshots")
        self.signer = Signer(lambda: getattr(emulator, "key", None))
        self._staging = root / "staging"

    # --- URLs ------------------------------------------------------------------------------------
    def read_url(self, req: "Request", path: str) -> str:
        """A signed plain-http URL of this server reading ``path`` (decoded, ``/``-rooted)."""
        return f"{req.base_url}{quote(path)}?{self.signer.query('r', path)}"

    def write_url(self, req: "Request", path: str) -> str:
        """A signed URL the client's blob uploader can PUT to: https on the emulator's own blob
        host (``blobs.BlobService.account_url``), which the TLS proxy hands to this server's
        routes. The path is left unquoted: the client splits it off the URL and quotes it
        itself (names with ``%``, ``?``, ``#`` or control characters are refused earlier)."""
        return f"{self.blob_endpoint()}{path}?{self.signer.query('rw', path)}"

    @staticmethod
    def blob_endpoint() -> str:
        """``https://simmlartifacts.blob.core.windows.net``: the blob host the proxy routes to
        the emulator's router rather than to a datastore."""
        try:
            from simml.emulator.blobs import BlobService
            return str(BlobService.account_url).rstrip("/")
        except (ImportError, AttributeError):  # the blob service is not part of this build
            return "https://simmlartifacts.blob.core.windows.net"

    def artifact_blob_path(self, origin: str, container: str, path: str) -> str:
        return f"/{ARTIFACT_ROOT}/{origin}/{container}/{path}"

    # --- DTOs ------------------------------------------------------------------------------------
    def _artifact_dto(self, origin: str, container: str, path: str) -> dict[str, Any]:
        created = None
        if not self.artifacts.is_registered(origin):  # (a registered origin may copy to resolve)
            try:
                created = _iso(self.artifacts.resolve(origin, container, path).stat().st_mtime)
            except (AzureError, OSError):
                pass
        return {"artifactId": f"{origin}/{container}/{path}", "origin": origin,
                "container": container, "path": path, "etag": None, "createdTime": created,
                "dataPath": None}

    def _content_dto(self, req: "Request", origin: str, container: str, path: str
                     ) -> dict[str, Any]:
        return {"contentUri": self.read_url(req, self.artifact_blob_path(origin, container, path)),
                "origin": origin, "container": container, "path": path}

    @staticmethod
    def _page(names: list[str], req: "Request") -> tuple[list[str], str | None]:
        """One page of sorted names after the continuation token (the last name sent, encoded)."""
        token = req.arg("continuationToken")
        if token:
            try:
                after = base64.urlsafe_b64decode(
                    token + "=" * (-len(token) % 4)).decode("utf-8")
            except (ValueError, UnicodeDecodeError) as exc:
                raise bad_request("Invalid continuationToken.") from exc
            names = [n for n in names if n > after]
        page = names[:PAGE_SIZE]
        more = len(names) > PAGE_SIZE
        next_token = base64.urlsafe_b64encode(page[-1].encode()).decode().rstrip("=") \
            if more and page else None
        return page, next_token

    # --- artifact service (bearer token) ---------------------------------------------------------
    def batch_create(self, req: "Request") -> dict[str, Any]:
        """``batch/metadata``: check every path, then answer each with a write URL (the file
        shows once its upload completes); a path that exists already is a conflict, as on
        Azure."""
        origin, container = self._origin_container(req)
        body = req.json_object()
        entries = body.get("paths")
        if not isinstance(entries, list) or not entries:
            raise bad_request("batch/metadata needs a non-empty 'paths' list.")
        names = []
        for entry in entries:
            name = entry.get("path") if isinstance(entry, dict) else None
            names.append((name, artifact_path(name)))
        handler = self.artifacts.origin(origin)
        if not getattr(handler, "writable", False):
            raise bad_request(f"Origin {origin} is read-only.", inner="ReadOnlyOrigin")
        artifacts, infos, errors = {}, {}, {}
        for name, path in names:
            if self.artifacts.exists(origin, container, path):
                errors[name] = {"error": {
                    "code": "UserError", "message": f"Resource Conflict: ArtifactId {origin}/"
                    f"{container}/{path} already exists.", "innerError": {"code": "Conflict"}}}
                continue
            artifacts[name] = {"artifactId": f"{origin}/{container}/{path}", "origin": origin,
                               "container": container, "path": path, "etag": None,
                               "createdTime": None, "dataPath": None}
            infos[name] = {"contentUri": self.write_url(
                req, self.artifact_blob_path(origin, container, path)),
                "origin": origin, "container": container, "path": path}
        return {"artifacts": artifacts, "artifactContentInformation": infos, "errors": errors}

    def list_container(self, req: "Request") -> dict[str, Any]:
        origin, container = self._origin_container(req)
        prefix = artifact_path(req.params.get("path", ""), "prefix", allow_empty=True)
        page, token = self._page(self.artifacts.list(origin, container, prefix), req)
        return {"value": [self._artifact_dto(origin, container, p) for p in page],
                "continuationToken": token}

    def _one_path(self, req: "Request") -> str:
        raw = req.params.get("path") or req.arg("path")
        if raw is None:
            raise bad_request("An artifact path is required.")
        return artifact_path(raw)

    def content_info(self, req: "Request") -> dict[str, Any]:
        origin, container = self._origin_container(req)
        path = self._one_path(req)
        self.artifacts.resolve(origin, container, path)  # 404 when missing
        return self._content_dto(req, origin, container, path)

    def write_sas(self, req: "Request") -> dict[str, Any]:
        origin, container = self._origin_container(req)
        path = self._one_path(req)
        if origin == RUN_ORIGIN:
            self.artifacts.origin(origin).run_id(container)
        return {"contentUri": self.write_url(req, self.artifact_blob_path(origin, container,
                                                                          path)),
                "origin": origin, "container": container, "path": path}

    def metadata(self, req: "Request") -> dict[str, Any]:
        origin, container = self._origin_container(req)
        path = self._one_path(req)
        self.artifacts.resolve(origin, container, path)
        return self._artifact_dto(origin, container, path)

    def content(self, req: "Request") -> Any:
        from simml.emulator.service import Response
        origin, container = self._origin_container(req)
        path = self._one_path(req)
        return Response(200, self._read(origin, container, path))

    def prefix_content_info(self, req: "Request") -> dict[str, Any]:
        origin, container = self._origin_container(req)
        prefix = artifact_path(req.params.get("path", ""), "prefix", allow_empty=True)
        page, token = self._page(self.artifacts.list(origin, container, prefix), req)
        return {"value": [self._content_dto(req, origin, container, p) for p in page],
                "continuationToken": token}

    def _origin_container(self, req: "Request") -> tuple[str, str]:
        origin = _segment(req.params["origin"], "origin", _ORIGIN)
        container = _segment(req.params["container"], "container")
        if origin == RUN_ORIGIN:
            self.artifacts.origin(origin).run_id(container)  # 404 RunNotFound
        return origin, container

    def _read(self, origin: str, container: str, path: str) -> bytes:
        data = self.artifacts.read(origin, container, path)
        if self.artifacts.is_live_log(origin, container, path):
            end = data.rfind(b"\n")
            data = data[: end + 1] if end >= 0 else b""
        return data

    def log_files(self, req: "Request", info: Any) -> dict[str, str]:
        """The run details' ``logFiles``: the run's ``azureml-logs/`` files (the driver log the
        client streams in ``wait_for_completion(show_output=True)``), as signed read URLs."""
        container = f"dcid.{info.id}"
        try:
            names = self.workspace._history().list_files(info.id)
        except NotFoundException:
            return {}
        return {name: self.read_url(req, self.artifact_blob_path(RUN_ORIGIN, container, name))
                for name in names if name.startswith("azureml-logs/")}

    # --- blob-ish artifact routes (signed URLs) --------------------------------------------------
    def _blob_target(self, req: "Request") -> tuple[str, str, str, str]:
        """(origin, container, path, signed path) of a blob-ish artifact URL; path checked before
        the signature so traversal is refused whatever the URL carries."""
        origin, container = req.params["origin"], req.params["container"]
        raw = req.params["path"]
        try:
            _segment(origin, "origin", _ORIGIN)
            _segment(container, "container")
            path = artifact_path(raw)
        except AzureError as exc:
            raise StorageError(400, "InvalidUri", exc.message) from exc
        if path != raw:
            raise StorageError(400, "InvalidUri", f"The blob path {raw!r} is not normal.")
        signed = self.artifact_blob_path(origin, container, path)
        self.signer.verify(req.method, signed, req.query)
        return origin, container, path, signed

    def _storage(self, handler: Callable[["Request"], Any]) -> Callable[["Request"], Any]:
        """Blob-ish handlers answer Azure Storage's error shape."""
        def wrapped(req: "Request") -> Any:
            try:
                return handler(req)
            except StorageError as exc:
                return exc.response()
            except AzureError as exc:
                code = {404: "BlobNotFound", 409: "BlobAlreadyExists"}.get(exc.status,
                                                                             "InvalidInput")
                if exc.inner == "RunNotFound":
                    code = "ContainerNotFound"
                return StorageError(exc.status, code, exc.message).response()
            except NotFoundException as exc:
                return StorageError(404, "BlobNotFound", str(exc)).response()
            except UserErrorException as exc:  # simml refused a value: nothing was written
                return StorageError(400, "InvalidInput", str(exc)).response()
        wrapped.__name__ = getattr(handler, "__name__", "storage")
        return wrapped

    def blob_put(self, req: "Request") -> Any:
        origin, container, path, signed = self._blob_target(req)
        return self._put(req, signed, lambda: self.artifacts.exists(origin, container, path),
                         lambda source: self.artifacts.write(origin, container, path, source),
                         lambda: self.artifacts.resolve(origin, container, path))

    def blob_head(self, req: "Request") -> Any:
        origin, container, path, _signed = self._blob_target(req)
        return self._blob_response(req, self.artifacts.resolve(origin, container, path),
                                   self._read(origin, container, path), head=True)

    def blob_get(self, req: "Request") -> Any:
        origin, container, path, _signed = self._blob_target(req)
        return self._blob_response(req, self.artifacts.resolve(origin, container, path),
                                   self._read(origin, container, path))

    def _put(self, req: "Request", signed: str, exists: Callable[[], bool],
             write: Callable[[bytes | Path], None], resolve: Callable[[], Path],
             conditional: bool = True) -> Any:
        """Azure Storage's Put Blob (block or append), Put Block, Put Block List and Append
        Block onto one writer; blocks are staged in the emulator's folder and only a committed
        blob becomes visible."""
        from simml.emulator.service import Response
        comp = req.arg("comp")
        body = req.body
        _check_md5(req, body)
        if comp == "block":
            block = _block_id(req.arg("blockid"))
            _atomic_write(self._stage(signed) / block, body)
            return Response(201, None, _write_headers(body, req))
        if comp == "blocklist":
            blocks = _block_list(body)
            if conditional and req.headers.get("If-None-Match") == "*" and exists():
                raise StorageError(409, "BlobAlreadyExists", "The specified blob already exists.")
            stage = self._stage(signed)
            missing = [b for b in blocks if not (stage / b).is_file()]
            if missing:
                raise StorageError(400, "InvalidBlockList", "The specified block list is "
                                   f"invalid: {len(missing)} block(s) were never staged.")
            joined = stage / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-joined"
            try:
                with open(joined, "wb") as out:
                    for block in blocks:
                        with open(stage / block, "rb") as part:
                            shutil.copyfileobj(part, out, 1 << 20)
                write(joined)
            finally:
                joined.unlink(missing_ok=True)
            shutil.rmtree(stage, ignore_errors=True)
            return Response(201, None, _write_headers(b"", req, resolve()))
        if comp == "appendblock":
            if not exists():
                raise StorageError(404, "BlobNotFound", "The specified blob does not exist.")
            current = resolve().read_bytes()
            write(current + body)
            return Response(201, None, _write_headers(body, req, resolve()))
        if comp:
            raise StorageError(400, "UnsupportedQueryParameter",
                               f"comp={comp} is not supported by the emulator.")
        blob_type = req.headers.get("x-ms-blob-type") or "BlockBlob"
        if blob_type not in ("BlockBlob", "AppendBlob"):
            raise StorageError(400, "InvalidHeaderValue", f"x-ms-blob-type {blob_type} is not "
                               "supported by the emulator.")
        if conditional and req.headers.get("If-None-Match") == "*" and exists():
            raise StorageError(409, "BlobAlreadyExists", "The specified blob already exists.")
        write(body if blob_type == "BlockBlob" else b"")
        return Response(201, None, _write_headers(body, req, resolve()))

    def _stage(self, signed: str) -> Path:
        return self._staging / hashlib.sha256(signed.encode()).hexdigest()

    def _blob_response(self, req: "Request", path: Path, data: bytes, head: bool = False) -> Any:
        from simml.emulator.service import Response
        stat = path.stat()
        headers = {"Last-Modified": formatdate(stat.st_mtime, usegmt=True), "ETag": _etag(path),
                   "x-ms-blob-type": "BlockBlob", "x-ms-creation-time":
                   formatdate(stat.st_mtime, usegmt=True), "x-ms-lease-status": "unlocked",
                   "x-ms-lease-state": "available", "x-ms-server-encrypted": "false",
                   "x-ms-version": STORAGE_VERSION, "Accept-Ranges": "bytes"}
        ranged = _range(req, len(data))
        if ranged is not None and not head:
            start, end = ranged
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Response(206, data[start:end + 1], headers)
        return Response(200, data, headers)

    # --- snapshots (bearer token) ----------------------------------------------------------------
    def snapshot_latest(self, req: "Request") -> dict[str, Any]:
        """The newest snapshot's tree: the client diffs its folder against it and uploads only
        what changed."""
        latest = self.snapshots.latest()
        if latest is None:
            return {"id": None, "root": {}}
        return {"id": latest["id"], "root": latest["root"]}

    def snapshot_getblob(self, req: "Request") -> dict[str, Any]:
        """A write URL per file the client will upload (the ones its diff found new or changed);
        names are checked first, nothing is handed out when one is unsafe."""
        body = req.json_object()
        names = body.get("FileNames")
        if not isinstance(names, list):
            raise bad_request("getblob needs a 'FileNames' list.")
        if len(names) > MAX_SNAPSHOT_FILES:
            raise bad_request(f"A snapshot holds at most {MAX_SNAPSHOT_FILES} files.")
        paths = []
        for name in names:
            path = artifact_path(name, "snapshot file name")
            if path != name:
                raise _bad_path("snapshot file name", name, "it must be a normal relative path")
            paths.append((name, path))
        upload = uuid.uuid4().hex
        return {"fileNodes": [{"fullName": name, "blobUri": self.write_url(
            req, f"/{SNAPSHOT_ROOT}/{upload}/{path}")} for name, path in paths]}

    def snapshot_create(self, req: "Request") -> dict[str, Any]:
        manifest = self.snapshots.create(req.params["snapshot"], req.json_object())
        return {"id": manifest["id"], "root": manifest["root"],
                "parentSnapshotId": manifest["parentSnapshotId"],
                "createdTime": manifest["createdTime"], "tags": manifest["tags"],
                "properties": manifest["properties"]}

    def snapshot_get(self, req: "Request") -> dict[str, Any]:
        manifest = self.snapshots.manifest(req.params["snapshot"])
        return {key: manifest[key] for key in ("id", "root", "parentSnapshotId", "createdTime",
                                               "tags", "properties")}

    def snapshot_zip(self, req: "Request") -> dict[str, Any]:
        """``restore_snapshot``: a signed read URL of the snapshot's zip (built once)."""
        snapshot_id = req.params["snapshot"]
        self.snapshots.zip_path(snapshot_id)
        return {"zipSasUri": self.read_url(req, f"/{SNAPSHOT_ROOT}/zip/{snapshot_id}.zip")}

    # --- blob-ish snapshot routes ----------------------------------------------------------------
    def snapshot_blob_put(self, req: "Request") -> Any:
        upload, raw = req.params["upload"], req.params["path"]
        try:
            if not _UPLOAD_ID.match(upload):
                raise _bad_path("upload id", upload, "not an upload id")
            path = artifact_path(raw, "snapshot file name")
        except AzureError as exc:
            raise StorageError(400, "InvalidUri", exc.message) from exc
        if path != raw:
            raise StorageError(400, "InvalidUri", f"The blob path {raw!r} is not normal.")
        signed = f"/{SNAPSHOT_ROOT}/{upload}/{path}"
        self.signer.verify(req.method, signed, req.query)
        name = path.rsplit("/", 1)[-1]

        def write(source: bytes | Path) -> None:
            self.snapshots.record_upload(upload, path, self.snapshots.add_blob(source, name))

        def resolve() -> Path:
            return self.snapshots.uploaded(upload, path)

        # each getblob answer is a fresh upload id, so "create only" is always satisfied
        return self._put(req, signed, lambda: False, write, resolve, conditional=False)

    def snapshot_blob_head(self, req: "Request") -> Any:
        """The client reads the properties of what it just uploaded."""
        upload, raw = req.params["upload"], req.params["path"]
        if not _UPLOAD_ID.match(upload):
            raise StorageError(400, "InvalidUri", f"Invalid upload id {upload!r}.")
        try:
            path = artifact_path(raw, "snapshot file name")
        except AzureError as exc:
            raise StorageError(400, "InvalidUri", exc.message) from exc
        self.signer.verify(req.method, f"/{SNAPSHOT_ROOT}/{upload}/{path}", req.query)
        blob = self.snapshots.uploaded(upload, path)
        return self._blob_response(req, blob, blob.read_bytes(), head=True)

    def snapshot_zip_get(self, req: "Request") -> Any:
        snapshot_id = req.params["snapshot"]
        signed = f"/{SNAPSHOT_ROOT}/zip/{snapshot_id}.zip"
        self.signer.verify(req.method, signed, req.query)
        path = self.snapshots.zip_path(snapshot_id)
        return self._blob_response(req, path, path.read_bytes())


# --- storage helpers -----------------------------------------------------------------------------

def _check_md5(req: "Request", body: bytes) -> None:
    declared = req.headers.get("Content-MD5")
    if declared and base64.b64encode(hashlib.md5(body).digest()).decode() != declared.strip():
        raise StorageError(400, "Md5Mismatch", "The MD5 value specified in the request did not "
                           "match the MD5 value calculated by the server.")


def _write_headers(body: bytes, req: "Request", path: Path | None = None) -> dict[str, str]:
    headers = {"x-ms-request-server-encrypted": "false", "x-ms-version": STORAGE_VERSION,
               "Last-Modified": formatdate(time.time(), usegmt=True),
               "ETag": _etag(path) if path is not None else f'"0x{time.time_ns():X}"'}
    if req.headers.get("Content-MD5"):
        headers["Content-MD5"] = req.headers["Content-MD5"]
    return headers


def _block_id(value: str | None) -> str:
    """A staged block's file name: the hex of the (base64) block id."""
    if not value:
        raise StorageError(400, "InvalidQueryParameterValue", "blockid is required.")
    return hashlib.sha256(value.encode()).hexdigest()


def _block_list(body: bytes) -> list[str]:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise StorageError(400, "InvalidXmlDocument", f"Invalid block list: {exc}.") from exc
    blocks = [_block_id((child.text or "").strip()) for child in root
              if child.tag in ("Latest", "Uncommitted", "Committed")]
    if len(blocks) > 50_000:
        raise StorageError(400, "InvalidBlockList", "At most 50,000 blocks.")
    return blocks


def _range(req: "Request", size: int) -> tuple[int, int] | None:
    header = req.headers.get("x-ms-range") or req.headers.get("Range")
    if not header:
        return None
    found = re.fullmatch(r"bytes=(\d+)-(\d*)", header.strip())
    if not found:
        return None
    start = int(found.group(1))
    end = int(found.group(2)) if found.group(2) else size - 1
    if start >= size:
        raise StorageError(416, "InvalidRange", "The range specified is invalid for the current "
                           "size of the resource.")
    return start, min(end, size - 1)


# --- registration --------------------------------------------------------------------------------

def emulator_folder(workspace: "Workspace") -> Path:
    """``<SIMML_HOME>/workspaces/<sub>/<rg>/<name>/emulator``: files only the emulator owns."""
    from simml.settings import simml_home
    info = workspace._info
    return (simml_home(workspace._config) / "workspaces" / info.subscription_id /
            info.resource_group / info.name / "emulator")


def _prune_staging(folder: Path, older_than: float = 86400.0) -> None:
    """Uncommitted blocks older than a day are dropped (Azure keeps them a week)."""
    if not folder.is_dir():
        return
    cutoff = time.time() - older_than
    for entry in folder.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def register(emulator: "Emulator") -> None:
    """Add the artifact, content and blob-ish routes; attach ``emulator.artifacts`` and
    ``emulator.snapshots`` (interfaces other parts of the emulator use)."""
    root = emulator_folder(emulator.workspace)
    routes = ArtifactRoutes(emulator, root)
    _prune_staging(routes._staging)
    _prune_staging(routes.snapshots.root / "uploads")
    emulator.artifacts = routes.artifacts
    emulator.snapshots = routes.snapshots
    emulator.artifact_routes = routes
    add = emulator.router.add
    artifact = "/artifact/v2.0" + ARM_SCOPE + "/artifacts"
    add("POST", artifact + "/batch/metadata/{origin}/{container}", routes.batch_create)
    for base, handler in (("/contentinfo", routes.content_info), ("/write", routes.write_sas),
                          ("/metadata", routes.metadata), ("/content", routes.content)):
        add("GET", artifact + base + "/{origin}/{container}/{path*}", handler)
        add("GET", artifact + base + "/{origin}/{container}", handler)  # ?path=
    add("GET", artifact + "/prefix/contentinfo/{origin}/{container}/{path*}",
        routes.prefix_content_info)
    add("GET", artifact + "/prefix/contentinfo/{origin}/{container}", routes.prefix_content_info)
    add("GET", artifact + "/{origin}/{container}/{path*}", routes.list_container)
    add("GET", artifact + "/{origin}/{container}", routes.list_container)
    content = ARM_SCOPE + "/snapshots"
    add("GET", "/content/v1.0" + content + "/latest/metadata", routes.snapshot_latest)
    add("GET", "/content/v2.0" + content + "/latest/metadata", routes.snapshot_latest)
    add("POST", "/content/v2.0" + content + "/getblob", routes.snapshot_getblob)
    add("POST", "/content/v2.0" + content + "/{snapshot}/zip", routes.snapshot_zip)
    add("POST", "/content/v2.0" + content + "/{snapshot}", routes.snapshot_create)
    add("GET", "/content/v1.0" + content + "/{snapshot}", routes.snapshot_get)
    add("GET", "/content/v2.0" + content + "/{snapshot}", routes.snapshot_get)
    storage = routes._storage
    add("GET", f"/{SNAPSHOT_ROOT}/zip/{{snapshot}}.zip", storage(routes.snapshot_zip_get),
        public=True)
    add("PUT", f"/{SNAPSHOT_ROOT}/{{upload}}/{{path*}}", storage(routes.snapshot_blob_put),
        public=True)
    add("HEAD", f"/{SNAPSHOT_ROOT}/{{upload}}/{{path*}}", storage(routes.snapshot_blob_head),
        public=True)
    blob = f"/{ARTIFACT_ROOT}/{{origin}}/{{container}}/{{path*}}"
    add("PUT", blob, storage(routes.blob_put), public=True)
    add("HEAD", blob, storage(routes.blob_head), public=True)
    add("GET", blob, storage(routes.blob_get), public=True)
