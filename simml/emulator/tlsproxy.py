"""The emulator's HTTPS side: a CONNECT proxy on 127.0.0.1 (``HTTPS_PROXY`` for the client) that
terminates the hosts the emulator answers for and tunnels everything else unchanged.

The real client sends blob traffic to ``https://{account}.blob.core.windows.net`` (hard-coded,
with certificate verification) and, without an explicit auth object, ARM traffic to
``https://management.azure.com``. Nothing on the host changes (no ``/etc/hosts``, no system trust
store): the client's ``HTTPS_PROXY`` sends those connections here, and its
``REQUESTS_CA_BUNDLE`` (the host's bundle + this workspace's CA) makes it trust the leaf
certificates this proxy presents for them. Every other CONNECT (pip, a real storage account, ...)
is tunnelled byte for byte, so other TLS keeps working and keeps being verified end to end.

The CA is made once per workspace with the ``cryptography`` library (the ``emulator`` extra) and
kept under the workspace's folder in SIMML_HOME (``emulator/tls/``, keys 0600). It carries X.509
name constraints: it can only vouch for ``*.blob.core.windows.net`` and ``management.azure.com``,
so trusting it cannot expose any other host even if its key leaks. Leaf certificates are made on
demand, one per host, and cached (memory and disk).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import select
import selectors
import socket
import socketserver
import ssl
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from simml.exceptions import UserErrorException

if TYPE_CHECKING:
    from simml.core.workspace import Workspace
    from simml.emulator.server import EmulatorHTTPServer

logger = logging.getLogger(__name__)

ARM_HOST = "management.azure.com"
BLOB_SUFFIX = "core.windows.net"
PERMITTED_DNS = ("blob." + BLOB_SUFFIX, ARM_HOST)
"""The CA's name constraints: the only names it may certify (and their subdomains)."""
CA_VALID_DAYS = 3650
LEAF_VALID_DAYS = 365
LEAF_RENEW_DAYS = 30
HEAD_LIMIT = 16 * 1024
CONNECT_TIMEOUT = 30.0
TUNNEL_IDLE_SECONDS = 600.0
KEEPALIVE_SECONDS = 120.0
EXTRA_HINT = "pip install 'simml[emulator]'"

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                   r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")

Serve = Callable[[socket.socket, Any], None]
"""Serves one decrypted connection (an HTTP handler over the TLS socket)."""


class EmulatorExtraMissing(UserErrorException):
    """The ``emulator`` extra (``cryptography``) is not installed."""


def _crypto() -> Any:
    """``cryptography.x509``, imported only when serving; a clear error naming the extra."""
    try:
        from cryptography import x509
    except ImportError as exc:
        raise EmulatorExtraMissing(
            "simml serve's HTTPS proxy needs the 'emulator' extra (the cryptography package, "
            f"to make the workspace's CA): {EXTRA_HINT}; or serve without it: --no-proxy"
        ) from exc
    return x509


def emulator_dir(workspace: "Workspace") -> Path:
    """The emulator's own state for a workspace: ``<SIMML_HOME>/workspaces/<sub>/<rg>/<ws>/
    emulator`` (the CA, staged uploads). Kept beside the workspace, not in the backend's data."""
    from simml.settings import simml_home
    info = workspace._info
    return (simml_home(getattr(workspace, "_config", None)) / "workspaces" / info.subscription_id
            / info.resource_group / info.name / "emulator")


# --- files -----------------------------------------------------------------------------------------

def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically with ``mode`` from the first byte (no window where a
    key is readable by others)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- the workspace's CA ----------------------------------------------------------------------------

class WorkspaceCA:
    """A workspace's certificate authority and the leaf certificates it signs.

    ``folder`` holds ``ca.pem``, ``ca.key`` (0600), ``leaf.key`` (0600, one key for every leaf),
    ``leaves/<host>.pem`` and ``ca-bundle.pem``. Creation happens once, under a lock, so two
    servers starting together agree on one CA.
    """

    def __init__(self, folder: Path) -> None:
        x509 = _crypto()
        from cryptography.hazmat.primitives import serialization
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        (self.folder / "leaves").mkdir(exist_ok=True)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        with _locked(self.folder):
            if not self._usable():
                self._create_ca()
            self.cert = x509.load_pem_x509_certificate((self.folder / "ca.pem").read_bytes())
            self._key = serialization.load_pem_private_key(
                (self.folder / "ca.key").read_bytes(), password=None)
            if not (self.folder / "leaf.key").is_file():
                _write_private(self.folder / "leaf.key", self._new_key_pem())

    @property
    def cert_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert_pem(self) -> bytes:
        return self.cert_path.read_bytes()

    def _usable(self) -> bool:
        """Is there a CA with this version's name constraints, valid for another year?"""
        x509 = _crypto()
        try:
            cert = x509.load_pem_x509_certificate((self.folder / "ca.pem").read_bytes())
            if not (self.folder / "ca.key").is_file():
                return False
            constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return False
        permitted = sorted(n.value for n in constraints.permitted_subtrees or ())
        remaining = cert.not_valid_after_utc - datetime.now(timezone.utc)
        return permitted == sorted(PERMITTED_DNS) and remaining > timedelta(days=365)

    @staticmethod
    def _new_key() -> Any:
        from cryptography.hazmat.primitives.asymmetric import ec
        return ec.generate_private_key(ec.SECP256R1())

    def _new_key_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization
        return self._new_key().private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())

    def _create_ca(self) -> None:
        x509 = _crypto()
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import NameOID
        key = self._new_key()
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "simml"),
            x509.NameAttribute(NameOID.COMMON_NAME,
                               f"simml emulator CA {self.folder.parent.parent.name}"[:64]),
        ])
        now = datetime.now(timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=CA_VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.NameConstraints(
                    permitted_subtrees=[x509.DNSName(n) for n in PERMITTED_DNS],
                    excluded_subtrees=None), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        _write_private(self.folder / "ca.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        _write_private(self.folder / "ca.pem", cert.public_bytes(serialization.Encoding.PEM),
                       0o644)
        for old in (self.folder / "leaves").glob("*.pem"):  # signed by the previous CA
            old.unlink(missing_ok=True)

    def _leaf_path(self, host: str) -> Path:
        return self.folder / "leaves" / f"{host}.pem"

    def _leaf_ok(self, path: Path) -> bool:
        x509 = _crypto()
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            cert.verify_directly_issued_by(self.cert)
        except (OSError, ValueError, TypeError, Exception):  # noqa: BLE001 - any doubt: remake
            return False
        return cert.not_valid_after_utc - datetime.now(timezone.utc) > timedelta(
            days=LEAF_RENEW_DAYS)

    def _make_leaf(self, host: str) -> Path:
        x509 = _crypto()
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        leaf_key = serialization.load_pem_private_key(
            (self.folder / "leaf.key").read_bytes(), password=None)
        now = datetime.now(timezone.utc)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(self.cert.subject).public_key(leaf_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=LEAF_VALID_DAYS))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    ca_ski), critical=False)
                .sign(self._key, hashes.SHA256()))
        path = self._leaf_path(host)
        _write_private(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return path

    def context_for(self, host: str) -> ssl.SSLContext:
        """A server-side TLS context presenting a leaf certificate for ``host`` (made once)."""
        host = host.lower()
        if not is_permitted(host):
            raise ValueError(f"{host} is outside this CA's name constraints.")
        with self._lock:
            ctx = self._contexts.get(host)
            if ctx is not None:
                return ctx
            path = self._leaf_path(host)
            if not self._leaf_ok(path):
                with _locked(self.folder):
                    if not self._leaf_ok(path):
                        path = self._make_leaf(host)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(path), str(self.folder / "leaf.key"))
            self._contexts[host] = ctx
            return ctx

    def write_bundle(self) -> Path:
        """``ca-bundle.pem``: the host's CA bundle (certifi's, else the system's) followed by this
        CA, for the client's ``REQUESTS_CA_BUNDLE`` (other TLS stays verified as before)."""
        host_bundle = host_ca_bundle()
        parts = []
        if host_bundle is not None:
            parts.append(Path(host_bundle).read_bytes().rstrip(b"\n") + b"\n")
        else:
            logger.warning("simml emulator: no CA bundle found on this host (certifi or the "
                           "system's); the client will trust only the emulator's CA")
        parts.append(b"\n# simml emulator CA (" + str(self.folder).encode() + b")\n")
        parts.append(self.cert_pem)
        target = self.folder / "ca-bundle.pem"
        _write_private(target, b"".join(parts), 0o644)
        return target


def host_ca_bundle() -> str | None:
    """certifi's bundle when importable, else the system's default CA file, else None."""
    try:
        import certifi
        found = certifi.where()
        if found and os.path.isfile(found):
            return found
    except ImportError:
        pass
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get(paths.openssl_cafile_env or ""), paths.cafile,
                      paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt",
                      "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def is_permitted(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == name or host.endswith("." + name) for name in PERMITTED_DNS)


# --- the CONNECT proxy ---------------------------------------------------------------------------

class ConnectProxy(socketserver.ThreadingTCPServer):
    """CONNECT proxy: ``route(host, port)`` returns how to serve a terminated connection, or None
    to tunnel it. Each connection runs on its own (daemon) thread."""

    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], ca: WorkspaceCA,
                 route: Callable[[str, int], Serve | None],
                 log: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.ca = ca
        self.route = route
        self.log = log or (lambda entry: None)
        super().__init__(address, _ConnectHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _ConnectHandler(socketserver.BaseRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        """Read the CONNECT, decide, and log the decision before answering it (so the request
        log has it before any request made through the connection, not when it closes)."""
        sock: socket.socket = self.request
        self._started = time.monotonic()
        self._entry: dict[str, Any] | None = {"method": "CONNECT", "template": "CONNECT",
                                              "path": "", "status": 400}
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            read = _read_head(sock)
            if read is None:
                self._entry = None  # nothing was asked
                return
            head, early = read
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split()
            if len(parts) != 3 or parts[0] != "CONNECT" or not parts[2].startswith("HTTP/1."):
                self._note(405, method=parts[0] if parts else "", path=parts[1] if len(parts) > 1
                           else "")
                _reply(sock, 405, "Method Not Allowed",
                       "simml emulator proxy: only CONNECT (HTTPS) is proxied here.\n")
                return
            target = parts[1]
            host, _, port_text = target.rpartition(":")
            if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536 \
                    or not _HOST.match(host):
                self._note(400, path=target)
                _reply(sock, 400, "Bad Request", f"Bad CONNECT target {target!r}.\n")
                return
            port = int(port_text)
            serve = self.server.route(host.lower(), port)
            if serve is not None and early:
                self._note(400, path=target)
                _reply(sock, 400, "Bad Request", "Data sent before the CONNECT was answered.\n")
                return
            if serve is not None:
                self._note(200, template="CONNECT terminate", path=target)
                self._terminate(sock, host.lower(), serve)
            elif not _is_loopback(self.client_address[0]):
                # never an open proxy for other machines (--host 0.0.0.0)
                self._note(403, path=target)
                _reply(sock, 403, "Forbidden", "simml emulator proxy: tunnels are for clients "
                       "on this machine only.\n")
            else:
                self._tunnel(sock, host.strip("[]"), port, early, target)
        except (OSError, ValueError) as exc:
            logger.debug("proxy: connection ended: %s", exc)
        finally:
            if self._entry is not None:
                self._note(int(self._entry["status"]))

    def _note(self, status: int, **fields: str) -> None:
        """Log this connection's entry once."""
        if self._entry is None:
            return
        entry, self._entry = {**self._entry, **fields, "status": status}, None
        entry["ms"] = round((time.monotonic() - self._started) * 1000, 1)
        self.server.log(entry)

    def _terminate(self, sock: socket.socket, host: str, serve: Serve) -> None:
        ctx = self.server.ca.context_for(host)
        _reply(sock, 200, "Connection established")
        try:
            tls = ctx.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:  # e.g. a client that does not trust the CA
            logger.debug("proxy: TLS handshake for %s failed: %s", host, exc)
            return
        try:
            tls.settimeout(KEEPALIVE_SECONDS)
            serve(tls, self.client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def _tunnel(self, sock: socket.socket, host: str, port: int, early: bytes,
                target: str) -> None:
        try:
            upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            self._note(502, template="CONNECT tunnel", path=target)
            _reply(sock, 502, "Bad Gateway",
                   f"simml emulator proxy: cannot reach {host}:{port}: {exc}\n")
            return
        with upstream:
            self._note(200, template="CONNECT tunnel", path=target)
            _reply(sock, 200, "Connection established")
            if early:
                upstream.sendall(early)
            _pump(sock, upstream)


def _is_loopback(address: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The request head up to the blank line, and any bytes the client sent after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            _reply(sock, 431, "Request Header Fields Too Large")
            return None
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, early = data.partition(b"\r\n\r\n")
    return head, early


def _reply(sock: socket.socket, status: int, reason: str, body: str = "") -> None:
    payload = body.encode()
    head = f"HTTP/1.1 {status} {reason}\r\n"
    if status != 200:
        head += (f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(payload)}\r\n"
                 "Connection: close\r\n")
    sock.sendall(head.encode() + b"\r\n" + payload)


def _pump(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides are done (half-closes passed on) or the tunnel is
    idle for ``TUNNEL_IDLE_SECONDS``."""
    a.setblocking(False)
    b.setblocking(False)
    peer = {a: b, b: a}
    open_reads = {a, b}
    with selectors.DefaultSelector() as selector:
        for s in open_reads:
            selector.register(s, selectors.EVENT_READ)
        while open_reads:
            ready = selector.select(TUNNEL_IDLE_SECONDS)
            if not ready:
                return
            for key, _ in ready:
                src = key.fileobj
                assert isinstance(src, socket.socket)
                try:
                    data = src.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return
                if not data:
                    selector.unregister(src)
                    open_reads.discard(src)
                    try:
                        peer[src].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                try:
                    _send_all(peer[src], data)
                except OSError:
                    return


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (BlockingIOError, InterruptedError):
            select.select([], [sock], [], TUNNEL_IDLE_SECONDS)
            continue
        view = view[sent:]


# --- wiring: what `simml serve` starts beside the emulator -----------------------------------------

class ProxyRuntime:
    """The running proxy of one ``simml serve``, and the environment the client needs."""

    def __init__(self, proxy: ConnectProxy, bundle: Path, env: dict[str, str],
                 on_stop: Callable[[], None] = lambda: None) -> None:
        self.proxy = proxy
        self._on_stop = on_stop
        self.bundle = bundle
        self.env = env
        self.thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="simml-emulator-proxy", daemon=True)

    def start(self) -> "ProxyRuntime":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.proxy.shutdown()
        self.proxy.server_close()
        self._on_stop()

    def export_lines(self) -> list[str]:
        import shlex
        return [f"export {k}={shlex.quote(v)}" for k, v in self.env.items()]

    def write_env(self, path: str | os.PathLike[str]) -> Path:
        """The export lines in a file (0600: it holds the MSI secret) to ``source``."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_private(target, ("\n".join(self.export_lines()) + "\n").encode())
        return target


def start_proxy(http_server: "EmulatorHTTPServer", host: str = "127.0.0.1",
                port: int = 0) -> ProxyRuntime:
    """Bind the CONNECT proxy for ``http_server``'s workspace and start serving it on a thread.

    Terminated: ``management.azure.com:443`` and ``simmlartifacts.blob.core.windows.net:443`` (the
    emulator's own routes: ARM, subscriptions, cloud metadata; the signed artifact and snapshot
    uploads) and ``{account}.blob.core.windows.net:443`` for the accounts of the workspace's blob
    datastores (the blob service, ``blobs.py``). Tunnelled: everything else. Sets
    ``emulator.proxy_env`` (``HTTPS_PROXY``, ``REQUESTS_CA_BUNDLE``) for routes that start
    processes of their own.
    """
    from simml.emulator import ambient, blobs
    from simml.emulator.server import EmulatorHandler

    emulator = http_server.emulator
    ca = WorkspaceCA(emulator_dir(emulator.workspace) / "tls")
    bundle = ca.write_bundle()
    service = blobs.service(emulator)
    router_host = f"{blobs.ROUTER_ACCOUNT}.blob.{BLOB_SUFFIX}"

    def route(target: str, target_port: int) -> Serve | None:
        if target_port != 443:
            return None
        if target in (ARM_HOST, router_host):
            return lambda sock, addr: EmulatorHandler(sock, addr, http_server)
        account = service.account_for_host(target)
        if account is not None:
            return lambda sock, addr: blobs.serve_connection(service, account, sock, addr,
                                                             http_server.request_log)
        return None

    proxy = ConnectProxy((host, port), ca, route, http_server.request_log.add)
    proxy_url = proxy.url
    env = {"HTTPS_PROXY": proxy_url, "https_proxy": proxy_url,
           "REQUESTS_CA_BUNDLE": str(bundle)}
    env.update(ambient.client_env(http_server))
    # for routes that start processes needing the blob hosts (a job's outputs): execution.py
    emulator.proxy_env = {k: env[k] for k in ("HTTPS_PROXY", "https_proxy", "REQUESTS_CA_BUNDLE")}
    return ProxyRuntime(proxy, bundle, env, on_stop=service.close).start()
