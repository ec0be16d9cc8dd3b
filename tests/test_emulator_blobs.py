"""`simml serve`'s HTTPS proxy, blob service and datastore routes (`simml/emulator/tlsproxy.py`,
`blobs.py`, `ambient.py`): the real azureml-core client (its own venv) uploading to and
downloading from the workspace's datastores through the proxy, plain `Workspace.from_config()`
with nothing but the printed environment, and the blob protocol over plain sockets (traversal,
a client that disconnects mid-upload, trust, tunnelling, credentials)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import uuid
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from _emulator_server import SCOPE, Emulator
from _waiting import eventually
from simml.emulator.protocol import mint_token

DATASTORE = f"/datastore/v1.0{SCOPE}"


# --- helpers -------------------------------------------------------------------------------------

def _default(emulator: Emulator) -> dict[str, str]:
    status, body = emulator.request("GET", f"{DATASTORE}/default")
    assert status == 200, body
    section = body["azureStorageSection"]
    return {"account": section["accountName"], "container": section["containerName"],
            "sas": section["sasToken"], "name": body["name"],
            "host": f"{section['accountName']}.blob.{section['endpoint']}"}


def _simml_datastore(emulator: Emulator, name: str = "workspaceblobstore") -> Any:
    from simml.core.datastore import Datastore
    return Datastore.get(emulator.workspace(), name)


def _proxy(emulator: Emulator) -> tuple[str, int]:
    split = urlsplit(emulator.client_env["HTTPS_PROXY"])
    assert split.hostname and split.port
    return split.hostname, split.port


def _trusting_bundle(emulator: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=emulator.client_env["REQUESTS_CA_BUNDLE"])


def _blob(emulator: Emulator, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None, host: str | None = None,
          context: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """One HTTPS request to a blob host through the emulator's proxy, as the client makes it."""
    ds = _default(emulator)
    connection = http.client.HTTPSConnection(*_proxy(emulator), timeout=30,
                                             context=context or _trusting_bundle(emulator))
    connection.set_tunnel(host or ds["host"], 443)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _put(emulator: Emulator, name: str, data: bytes, sas: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    ds = _default(emulator)
    return _blob(emulator, "PUT", f"/{ds['container']}/{name}?{sas or ds['sas']}", data,
                 {"x-ms-blob-type": "BlockBlob", **(headers or {})})


def _code(body: bytes) -> str:
    return ElementTree.fromstring(body).findtext("Code") or ""


def _files_named(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if needle in p.name]


def _connect(emulator: Emulator, target: str) -> tuple[socket.socket, bytes]:
    """A raw CONNECT through the proxy: the socket and the proxy's answer head."""
    sock = socket.create_connection(_proxy(emulator), timeout=30)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return sock, head


def _make_ca(common_name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _make_leaf(ca_cert: Any, ca_key: Any, dns: str | None = None,
               ip: str | None = None) -> tuple[bytes, bytes]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[Any] = [x509.DNSName(dns)] if dns else []
    if ip:
        names.append(x509.IPAddress(ipaddress.ip_address(ip)))
    now = datetime.now(timezone.utc)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns or ip or "x")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


class _TLSEcho:
    """A TLS echo server on 127.0.0.1 with the given certificate (one connection at a time)."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, folder: Path) -> None:
        (folder / "echo.pem").write_bytes(cert_pem)
        (folder / "echo.key").write_bytes(key_pem)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(folder / "echo.pem", folder / "echo.key")
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    data = tls.recv(4096)
                    tls.sendall(b"echo:" + data)
            except (OSError, ssl.SSLError):
                pass

    def close(self) -> None:
        self.listener.close()


# --- the real client -----------------------------------------------------------------------------

def test_datastore_upload_and_download_through_the_real_client(
        emulator: Emulator, azureml_venv: Path, tmp_path: Path) -> None:
    prefix = f"blobs-{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    files = {
        "data-dir/iris.csv": b"sepal,petal\n5.1,1.4\n",
        "data-dir/nested/deep/notes with space.txt": "h\u00e9llo w\u00f6rld\n".encode(),
        # larger than the client's first ranged GET (32 MiB): a multi-chunk download
        "data-dir/big.bin": os.urandom(1 << 16) * 520 + b"tail",
        "extra/one.txt": b"one\n",
        "extra/two.txt": b"two\n",
    }
    for rel, data in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    # a file written through simml's API, to be read by the client
    simml_source = tmp_path / "simml-side"
    simml_source.mkdir()
    (simml_source / "from-simml.txt").write_bytes(b"written by simml\n")
    _simml_datastore(emulator).upload_files([str(simml_source / "from-simml.txt")],
                                            relative_root=str(simml_source),
                                            target_path=f"{prefix}/simml", overwrite=True,
                                            show_progress=False)

    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "blobs_datastore.py", str(work), prefix)
    entries = emulator.log()[before:]
    out = result["_stdout"]

    name, account, container, endpoint, credential = result["default"]
    assert name == "workspaceblobstore" and endpoint == "core.windows.net"
    assert credential == "Sas" and account.startswith("simml")
    # the seed doc's progress lines, and the skip of the second upload_files
    assert "Uploading an estimated of 3 files" in out
    assert "Uploaded 3 files" in out
    assert f"Target already exists. Skipping upload for {prefix}/extra/one.txt" in out
    # the client's blobs are simml's files, byte for byte
    ws_store = _simml_datastore(emulator)
    expected = {f"{prefix}/iris/iris.csv": files["data-dir/iris.csv"],
                f"{prefix}/iris/nested/deep/notes with space.txt":
                    files["data-dir/nested/deep/notes with space.txt"],
                f"{prefix}/iris/big.bin": files["data-dir/big.bin"],
                f"{prefix}/extra/one.txt": b"one\n", f"{prefix}/extra/two.txt": b"two\n",
                f"{prefix}/simml/from-simml.txt": b"written by simml\n"}
    assert sorted(ws_store.list_files(prefix)) == sorted(expected)
    back = tmp_path / "simml-download"
    assert ws_store.download(str(back), prefix=prefix, show_progress=False) == len(expected)
    for rel, data in expected.items():
        assert (back / rel).read_bytes() == data, rel
    # and the client read back every file, including the one simml's API wrote
    assert result["count"] == len(expected)
    assert result["hashes"] == {rel: hashlib.sha256(data).hexdigest()
                                for rel, data in expected.items()}
    # a blob container registered through the client is a simml datastore, served the same way
    assert result["other"] == ["blobs_extra", "simmlblobsextra", "extra-container"]
    assert "blobs_extra" in result["datastores"] and "workspaceblobstore" in result["datastores"]
    assert _simml_datastore(emulator, "blobs_extra").list_files(prefix) == [f"{prefix}/one.txt"]
    # every request matched a route; the blob traffic went through the proxy's TLS
    assert all(e["template"] != "unknown" for e in entries), entries
    seen = {e["template"] for e in entries}
    assert {"blob:PutBlob", "blob:GetBlobProperties", "blob:ListBlobs", "blob:GetBlob",
            "CONNECT terminate"} <= seen
    ranged = [e for e in entries if e["template"] == "blob:GetBlob" and e["status"] == 206
              and e["path"].endswith("/big.bin")]
    assert len(ranged) >= 2  # 32 MiB, then the rest


def test_plain_workspace_from_config_with_only_the_environment(
        emulator: Emulator, azureml_venv: Path, tmp_path: Path) -> None:
    prefix = f"plain-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "plain.txt"
    source.write_bytes(b"no emulator code in the script\n")
    before = len(emulator.log())
    result = emulator.run_client(azureml_venv, "blobs_plain.py", str(source), prefix)
    entries = emulator.log()[before:]
    assert result["auth"] == "InteractiveLoginAuthentication"
    assert result["ambient"] == "MsiAuthentication"
    assert result["workspace"] == ["ws1", "00000000-0000-0000-0000-000000000000", "rg1"]
    assert result["status"] == "Completed"
    assert _simml_datastore(emulator).list_files(prefix) == [f"{prefix}/plain.txt"]
    from simml.core.run import Run
    assert Run.get(emulator.workspace(), result["run_id"]).get_metrics() == {"answer": 42}
    templates = {e["template"] for e in entries}
    assert {"/simml/msi/token", "/subscriptions"} <= templates
    arm = [e for e in entries if e["method"] == "CONNECT" and
           e["path"] == "management.azure.com:443"]
    assert arm and all(e["template"] == "CONNECT terminate" for e in arm)
    # nothing left the machine, and every request matched a route
    assert not [e for e in entries if e["template"] == "CONNECT tunnel"], entries
    assert all(e["template"] != "unknown" for e in entries), entries


# --- the MSI endpoint and the datastore routes (plain HTTP) ---------------------------------------

def test_msi_endpoint_requires_the_secret(emulator: Emulator) -> None:
    from simml.emulator.protocol import verify_token
    path = "/simml/msi/token/?resource=https://management.core.windows.net/&api-version=2017-09-01"
    status, body = emulator.request("GET", path, token=None)
    assert status == 401 and body["error"]["code"] == "AuthenticationFailed"
    status, body = emulator.request("GET", path, token=None, headers={"secret": "guess"})
    assert status == 401
    status, body = emulator.request("GET", path, token=None,
                                    headers={"secret": emulator.client_env["MSI_SECRET"]})
    assert status == 200 and body["token_type"] == "Bearer"
    assert verify_token(emulator.key, body["access_token"])["sub"] == "msi"
    assert body["resource"] == "https://management.core.windows.net/"


def test_datastore_routes(emulator: Emulator) -> None:
    status, body = emulator.request("GET", f"{DATASTORE}/datastores")
    assert status == 200
    names = {d["name"]: d for d in body["value"]}
    assert names["workspaceblobstore"]["azureStorageSection"]["sasToken"]
    assert names["workspacefilestore"]["dataStoreType"] == "AzureFile"
    status, body = emulator.request("GET", f"{DATASTORE}/datastores?includeSecret=false")
    assert all(d.get("azureStorageSection", {}).get("sasToken") is None for d in body["value"])
    status, body = emulator.request("GET", f"{DATASTORE}/datastores/nope")
    assert status == 404 and body["error"]["innerError"]["code"] == "DatastoreNotFound"
    bad = {"name": "bad_one", "dataStoreType": "AzureBlob",
           "azureStorageSection": {"accountName": "../x", "containerName": "c1c"}}
    status, body = emulator.request("POST", f"{DATASTORE}/datastores", json.dumps(bad).encode())
    assert status == 400 and body["error"]["code"] == "UserError"
    reserved = {**bad, "azureStorageSection": {"accountName": "simmlartifacts",
                                               "containerName": "c1c"}}
    status, _ = emulator.request("POST", f"{DATASTORE}/datastores",
                                 json.dumps(reserved).encode())
    assert status == 400
    assert "bad_one" not in {d.name for d in emulator.workspace()._backend.datastore_list(
        emulator.workspace()._info)}
    status, body = emulator.request("GET", f"{DATASTORE}/datastores", token=None)
    assert status == 401


# --- the blob protocol over plain sockets ----------------------------------------------------------

BAD_NAMES = ["../escape1.txt", "sub/../../escape2.txt", "%2e%2e/escape3.txt",
             "%2E%2E%2Fescape4.txt", "..%5cescape5.txt", "sub\\..\\escape6.txt",
             "%252e%252e/escape7.txt", "/escape8.txt", "sub//escape9.txt", "%00escape10.txt",
             "./escape11.txt", "sub/%2e/escape12.txt"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_traversal_in_blob_names_is_refused(emulator: Emulator, name: str) -> None:
    status, headers, body = _put(emulator, name, b"evil")
    assert status == 400, body
    assert headers["x-ms-error-code"] == "InvalidResourceName"
    assert _code(body) == "InvalidResourceName"
    status, headers, _ = _blob(emulator, "GET",
                               f"/{_default(emulator)['container']}/{name}?"
                               f"{_default(emulator)['sas']}")
    assert status == 400 and headers["x-ms-error-code"] == "InvalidResourceName"
    assert not _files_named(emulator.home, "escape"), "a refused name was written"
    assert not [f for f in _simml_datastore(emulator).list_files() if "escape" in f]


def test_traversal_through_the_container_segment_is_refused(emulator: Emulator) -> None:
    ds = _default(emulator)
    for path in ("/../escape13.txt", "/%2e%2e/escape13.txt", f"/{ds['container']}/.."):
        status, headers, body = _blob(emulator, "PUT", f"{path}?{ds['sas']}", b"evil",
                                      {"x-ms-blob-type": "BlockBlob"})
        assert status == 400 and _code(body) == "InvalidResourceName", (path, body)
    assert not _files_named(emulator.home, "escape13")


def test_a_client_that_disconnects_mid_upload_leaves_no_blob(emulator: Emulator) -> None:
    ds = _default(emulator)
    name = f"partial-{uuid.uuid4().hex[:8]}.bin"
    sock, head = _connect(emulator, f"{ds['host']}:443")
    assert head.startswith(b"HTTP/1.1 200")
    tls = _trusting_bundle(emulator).wrap_socket(sock, server_hostname=ds["host"])
    tls.sendall(f"PUT /{ds['container']}/{name}?{ds['sas']} HTTP/1.1\r\nHost: {ds['host']}\r\n"
                "x-ms-blob-type: BlockBlob\r\nContent-Length: 1000000\r\n\r\n".encode()
                + b"x" * 200_000)
    tls.close()
    eventually(lambda: any(e["path"].endswith("/" + name) and e["status"] == 499
                           for e in emulator.log()), "the server to see the short body")
    assert name not in _simml_datastore(emulator).list_files()
    staging = Path(emulator.home).rglob("staging/*/body-*")
    assert not list(staging), "the partial body was kept"
    # the server keeps serving: the same name uploads and reads back whole
    status, _, _ = _put(emulator, name, b"whole")
    assert status == 201
    status, _, body = _blob(emulator, "GET", f"/{ds['container']}/{name}?{ds['sas']}")
    assert (status, body) == (200, b"whole")


def test_credentials_issued_by_the_emulator_only(emulator: Emulator) -> None:
    from simml.emulator.blobs import mint_sas
    ds = _default(emulator)
    name = f"auth-{uuid.uuid4().hex[:8]}.txt"
    assert _put(emulator, name, b"secret data")[0] == 201
    path = f"/{ds['container']}/{name}"

    def get(query: str = "", headers: dict[str, str] | None = None) -> tuple[int, str]:
        status, response_headers, _ = _blob(emulator, "GET", path + query, headers=headers)
        return status, response_headers.get("x-ms-error-code", "")

    assert get() == (401, "NoAuthenticationInformation")
    tampered = ds["sas"].replace("sig=", "sig=A")
    assert get("?" + tampered) == (403, "AuthenticationFailed")
    other = mint_sas(emulator.key, ds["account"], "another-container")
    assert get("?" + other) == (403, "AuthenticationFailed")
    past = datetime.now(timezone.utc) - timedelta(days=30)
    expired = mint_sas(emulator.key, ds["account"], ds["container"], now=past)
    assert get("?" + expired) == (403, "AuthenticationFailed")
    foreign = mint_sas("not-the-emulator-key", ds["account"], ds["container"])
    assert get("?" + foreign) == (403, "AuthenticationFailed")
    assert get(headers={"Authorization": f"SharedKey {ds['account']}:c2lnbmF0dXJl"}) == (
        403, "AuthenticationFailed")
    assert get(headers={"Authorization": "Bearer " + mint_token("other-key")}) == (
        403, "AuthenticationFailed")
    assert get(headers={"Authorization": "Bearer " + mint_token(emulator.key)}) == (200, "")
    assert get("?" + ds["sas"]) == (200, "")
    # a read-only SAS cannot write, and nothing is written
    read_only = mint_sas(emulator.key, ds["account"], ds["container"], permissions="rl")
    status, headers, _ = _put(emulator, name, b"overwritten", sas=read_only)
    assert (status, headers["x-ms-error-code"]) == (403, "AuthorizationPermissionMismatch")
    assert _blob(emulator, "GET", f"{path}?{ds['sas']}")[2] == b"secret data"


def test_blob_operations_the_client_uses(emulator: Emulator) -> None:
    ds = _default(emulator)
    prefix = f"ops-{uuid.uuid4().hex[:8]}"
    container = ds["container"]
    # Put Blob, then If-None-Match: * (the client's overwrite=False) on an existing blob
    assert _put(emulator, f"{prefix}/a.txt", b"0123456789")[0] == 201
    status, headers, body = _put(emulator, f"{prefix}/a.txt", b"x", headers={"If-None-Match": "*"})
    assert (status, headers["x-ms-error-code"]) == (409, "BlobAlreadyExists")
    # ranged reads (Get Blob), properties (HEAD), a missing blob
    status, headers, body = _blob(emulator, "GET", f"/{container}/{prefix}/a.txt?{ds['sas']}",
                                  headers={"x-ms-range": "bytes=2-5"})
    assert (status, body, headers["content-range"]) == (206, b"2345", "bytes 2-5/10")
    status, headers, _ = _blob(emulator, "GET", f"/{container}/{prefix}/a.txt?{ds['sas']}",
                               headers={"x-ms-range": "bytes=10-20"})
    assert (status, headers["x-ms-error-code"]) == (416, "InvalidRange")
    status, headers, _ = _blob(emulator, "HEAD", f"/{container}/{prefix}/a.txt?{ds['sas']}")
    assert (status, headers["content-length"], headers["x-ms-blob-type"]) == (200, "10",
                                                                              "BlockBlob")
    status, headers, _ = _blob(emulator, "GET", f"/{container}/{prefix}/a.txt?{ds['sas']}",
                               headers={"If-Match": '"0xother"'})
    assert (status, headers["x-ms-error-code"]) == (412, "ConditionNotMet")
    status, headers, _ = _blob(emulator, "HEAD", f"/{container}/{prefix}/none.txt?{ds['sas']}")
    assert (status, headers["x-ms-error-code"]) == (404, "BlobNotFound")
    # Put Block x2 + Put Block List: one blob, only after the commit
    ids = [base64.b64encode(f"block-{i:04d}".encode()).decode() for i in range(2)]
    for block_id, data in zip(ids, (b"first-", b"second")):
        status, _, _ = _blob(emulator, "PUT", f"/{container}/{prefix}/blocks.bin?comp=block&"
                             f"blockid={quote(block_id)}&{ds['sas']}", data)
        assert status == 201
    assert f"{prefix}/blocks.bin" not in _simml_datastore(emulator).list_files(prefix)
    missing = base64.b64encode(b"never-sent").decode()
    listing = ("<?xml version='1.0' encoding='utf-8'?><BlockList>" +
               "".join(f"<Latest>{b}</Latest>" for b in (*ids, missing)) + "</BlockList>")
    status, headers, _ = _blob(emulator, "PUT", f"/{container}/{prefix}/blocks.bin?"
                               f"comp=blocklist&{ds['sas']}", listing.encode())
    assert (status, headers["x-ms-error-code"]) == (400, "InvalidBlockList")
    listing = ("<?xml version='1.0' encoding='utf-8'?><BlockList>" +
               "".join(f"<Latest>{b}</Latest>" for b in ids) + "</BlockList>")
    status, _, _ = _blob(emulator, "PUT", f"/{container}/{prefix}/blocks.bin?comp=blocklist&"
                         f"{ds['sas']}", listing.encode())
    assert status == 201
    assert _blob(emulator, "GET", f"/{container}/{prefix}/blocks.bin?{ds['sas']}")[2] == \
        b"first-second"
    # List Blobs: pages by marker, and a delimiter folds folders into prefixes
    assert _put(emulator, f"{prefix}/sub/c.txt", b"c")[0] == 201
    seen, marker = [], ""
    while True:
        status, _, body = _blob(emulator, "GET", f"/{container}?restype=container&comp=list&"
                                f"prefix={prefix}/&maxresults=2&marker={quote(marker)}&"
                                f"{ds['sas']}")
        assert status == 200
        root = ElementTree.fromstring(body)
        seen += [b.findtext("Name") for b in root.iter("Blob")]
        marker = root.findtext("NextMarker") or ""
        if not marker:
            break
    assert seen == [f"{prefix}/a.txt", f"{prefix}/blocks.bin", f"{prefix}/sub/c.txt"]
    status, _, body = _blob(emulator, "GET", f"/{container}?restype=container&comp=list&"
                            f"prefix={prefix}/&delimiter=/&{ds['sas']}")
    root = ElementTree.fromstring(body)
    assert [p.findtext("Name") for p in root.iter("BlobPrefix")] == [f"{prefix}/sub/"]
    assert [b.findtext("Name") for b in root.iter("Blob")] == [f"{prefix}/a.txt",
                                                               f"{prefix}/blocks.bin"]
    # an unknown container, an operation the emulator does not implement
    status, headers, _ = _blob(emulator, "GET", f"/no-such-container/x.txt?{ds['sas']}")
    assert status == 403  # the SAS names another container: refused before the lookup
    status, headers, _ = _blob(emulator, "DELETE", f"/{container}/{prefix}/a.txt?{ds['sas']}")
    assert (status, headers["x-ms-error-code"]) == (501, "NotImplemented")


# --- trust and tunnelling ---------------------------------------------------------------------------

def test_untrusted_clients_and_foreign_certificates_are_refused(emulator: Emulator,
                                                                tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    ds = _default(emulator)
    # a client that trusts only the host's bundle does not accept the emulator's leaf
    with pytest.raises(ssl.SSLCertVerificationError):
        _blob(emulator, "GET", f"/{ds['container']}/x?{ds['sas']}",
              context=ssl.create_default_context())
    # the emulator's CA is name-constrained: even a certificate it signed for another host is
    # refused by a client trusting the bundle (the key never vouches for anything else)
    tls = next(Path(emulator.home).rglob("emulator/tls"))
    assert oct((tls / "ca.key").stat().st_mode & 0o777) == "0o600"
    ca_cert = x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), password=None)
    for host, trusted in (("example.com", False), ("other.blob.core.windows.net", True)):
        cert, key = _make_leaf(ca_cert, ca_key, dns=host)
        folder = tmp_path / host
        folder.mkdir()
        server = _TLSEcho(cert, key, folder)
        try:
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            if trusted:
                with _trusting_bundle(emulator).wrap_socket(raw, server_hostname=host) as conn:
                    conn.sendall(b"hi")
                    assert conn.recv(100) == b"echo:hi"
            else:
                with pytest.raises(ssl.SSLCertVerificationError):
                    _trusting_bundle(emulator).wrap_socket(raw, server_hostname=host)
                raw.close()
        finally:
            server.close()
    # a certificate from a foreign CA for the blob host is not trusted either
    foreign_cert, foreign_key = _make_ca("not simml")
    cert, key = _make_leaf(foreign_cert, foreign_key, dns=ds["host"])
    server = _TLSEcho(cert, key, tmp_path)
    try:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        with pytest.raises(ssl.SSLCertVerificationError):
            _trusting_bundle(emulator).wrap_socket(raw, server_hostname=ds["host"])
        raw.close()
    finally:
        server.close()


def test_other_connect_targets_are_tunnelled_unchanged(emulator: Emulator,
                                                        tmp_path: Path) -> None:
    # a local TLS server with its own CA: the client verifies ITS certificate through the
    # tunnel (the proxy did not terminate it)
    ca_cert, ca_key = _make_ca("test CA")
    cert, key = _make_leaf(ca_cert, ca_key, ip="127.0.0.1")
    server = _TLSEcho(cert, key, tmp_path)
    from cryptography.hazmat.primitives import serialization
    (tmp_path / "test-ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    try:
        target = f"127.0.0.1:{server.port}"
        sock, head = _connect(emulator, target)
        assert head.startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=str(tmp_path / "test-ca.pem"))
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"through the tunnel")
            assert conn.recv(100) == b"echo:through the tunnel"
    finally:
        server.close()
    eventually(lambda: any(e["method"] == "CONNECT" and e["path"] == target and
                           e["template"] == "CONNECT tunnel" and e["status"] == 200
                           for e in emulator.log()), "the tunnel in the request log")
    # a blob host that is not one of the workspace's accounts is not terminated either
    host = f"stranger{uuid.uuid4().hex[:8]}.blob.core.windows.net:443"
    sock, head = _connect(emulator, host)
    sock.close()
    eventually(lambda: any(e["path"] == host and e["template"] == "CONNECT tunnel"
                           for e in emulator.log()), "the stranger's tunnel in the log")
    # a nowhere target is a 502 from the proxy; a plain (non-CONNECT) request a 405
    with socket.create_server(("127.0.0.1", 0)) as closed:
        dead = closed.getsockname()[1]
    sock, head = _connect(emulator, f"127.0.0.1:{dead}")
    sock.close()
    assert head.startswith(b"HTTP/1.1 502")
    with socket.create_connection(_proxy(emulator), timeout=30) as sock:
        sock.sendall(b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 405")


# --- serving ---------------------------------------------------------------------------------------

def test_serve_without_the_emulator_extra_names_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['cryptography'] = None\n"
            "from simml.cli import main\n"
            "main(['serve', '--port', '0'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={**os.environ, "SIMML_HOME": str(tmp_path / "home")})
    assert done.returncode != 0
    assert "'emulator' extra" in done.stderr and "simml[emulator]" in done.stderr, done.stderr


def test_the_ca_is_made_once_per_workspace(emulator: Emulator, tmp_path: Path) -> None:
    from simml.emulator.tlsproxy import WorkspaceCA
    folder = Path(emulator.client_env["REQUESTS_CA_BUNDLE"]).parent
    assert folder.is_relative_to(emulator.home)  # under the workspace's folder in SIMML_HOME
    first = (folder / "ca.pem").read_bytes()
    again = WorkspaceCA(folder)  # what a second `simml serve` of the workspace does
    assert again.cert_pem == first
    bundle = Path(emulator.client_env["REQUESTS_CA_BUNDLE"]).read_bytes()
    assert bundle.endswith(first) and bundle.count(b"BEGIN CERTIFICATE") > 1
    assert oct((folder / "leaf.key").stat().st_mode & 0o777) == "0o600"


# --- the datastore hooks the blob service reads through --------------------------------------------

def test_local_backend_stat_and_read_hooks(ws: Any, tmp_path: Path) -> None:
    from simml.exceptions import NotFoundException, UnsafePathException
    source = tmp_path / "src"
    (source / "data").mkdir(parents=True)
    (source / "data" / "a.bin").write_bytes(b"0123456789")
    (source / "data2.txt").write_bytes(b"x")
    ds = ws.get_default_datastore()
    ds.upload(str(source), show_progress=False)
    backend, info = ws._backend, ws._info
    found = backend.datastore_stat(info, ds.name, "data")  # Azure's string prefix
    assert [(f.path, f.size) for f in found] == [("data/a.bin", 10), ("data2.txt", 1)]
    assert all(f.modified.tzinfo is not None for f in found)
    assert backend.datastore_stat(info, ds.name, "data/") == found[:1]
    assert backend.datastore_read(info, ds.name, "data/a.bin", 3, 4) == b"3456"
    assert backend.datastore_read(info, ds.name, "data/a.bin", 8, 100) == b"89"
    with pytest.raises(NotFoundException):
        backend.datastore_read(info, ds.name, "data/missing.bin", 0, 1)
    with pytest.raises(NotFoundException):
        backend.datastore_read(info, ds.name, "data", 0, 1)  # a folder is not a file
    with pytest.raises(UnsafePathException):
        backend.datastore_read(info, ds.name, "../workspace.json", 0, 100)
    with pytest.raises(UnsafePathException):
        backend.datastore_stat(info, ds.name, "../")


def test_the_proxy_tunnels_only_for_this_machine(tmp_path: Path) -> None:
    from simml.emulator.tlsproxy import ConnectProxy, WorkspaceCA
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the source address
        address = probe.getsockname()[0]
    except OSError:
        address = "127.0.0.1"
    finally:
        probe.close()
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    proxy = ConnectProxy(("0.0.0.0", 0), WorkspaceCA(tmp_path / "tls"), lambda host, port: None)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_server(("127.0.0.1", 0)) as target:
            port = target.getsockname()[1]
            for source, expected in ((address, b"HTTP/1.1 403"), ("127.0.0.1", b"HTTP/1.1 200")):
                with socket.create_connection((source, proxy.server_address[1]),
                                              timeout=30) as sock:
                    sock.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
                    assert sock.recv(100).startswith(expected), source
    finally:
        proxy.shutdown()
        proxy.server_close()
