"""The emulator's HTTP server: standard library ``ThreadingHTTPServer`` on 127.0.0.1.

Each request is matched against the routing table (``service.Emulator.router``); a route needs a
bearer token this emulator issued (``protocol.verify_token``), else 401. Errors are answered in
Azure's payload shape; a route the server does not know is a 404 naming it and is logged as
``unknown``. Every request is appended to the request log (memory, and JSON lines in
``request_log`` when given): method, path template, path, status.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from simml.emulator.protocol import AzureError, TokenError, verify_token
from simml.emulator.service import Emulator, Request, Response, parse_query

if TYPE_CHECKING:
    from simml.core.workspace import Workspace

logger = logging.getLogger(__name__)
MAX_BODY = 512 * 1024 * 1024


class RequestLog:
    """Requests served, in order; optionally mirrored to a JSON-lines file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self.entries: list[dict[str, Any]] = []
        self._path = Path(path) if path else None

    def add(self, entry: dict[str, Any]) -> None:
        entry.setdefault("at", round(time.time(), 3))  # when it ended, wall clock
        with self._lock:
            self.entries.append(entry)
            if self._path is not None:
                with open(self._path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: Emulator, key: str,
                 request_log: RequestLog) -> None:
        self.emulator = emulator
        self.key = key
        emulator.key = key  # signs the content URLs the routes hand out (artifacts, snapshots)
        self.request_log = request_log
        super().__init__(address, EmulatorHandler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class EmulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer
    server_version = "simml-emulator"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib names
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self) -> bytes | None:
        """The whole body, or None when the client went away before sending it all."""
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise AzureError(413, "UserError", f"Request body too large ({length} bytes).",
                             inner="PayloadTooLarge")
        chunks, remaining = [], length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _dispatch(self) -> None:
        started = time.monotonic()
        split = urlsplit(self.path)
        path = split.path
        template: str | None = None
        status = 500
        try:
            body = self._read_body()
            if body is None:
                status = 499  # client closed the connection mid-request: nothing is written
                self.close_connection = True
                return
            matched = self.server.emulator.router.match(self.command, path)
            if matched is None:
                template = "unknown"
                raise AzureError(404, "UserError",
                                 f"simml emulator: no route for {self.command} {path}.",
                                 inner="RouteNotFound")
            route, params = matched
            template = route.template
            if not route.public:
                self._authenticate()
            self.server.emulator.check_scope(params)
            request = Request(self.command, path, parse_query(split.query), self.headers, body,
                              params, self.server.base_url)
            response = self.server.emulator.call(route.handler, request)
            status = response.status
            self._send(response)
        except AzureError as exc:
            status = exc.status
            self._send(Response(exc.status, exc.payload()))
        except Exception as exc:  # the server keeps serving; the client gets Azure's shape
            logger.exception("emulator: %s %s failed", self.command, path)
            status = 500
            self._send(Response(500, AzureError(500, "SystemError", f"{type(exc).__name__}: "
                                                f"{exc}", inner="InternalError").payload()))
        finally:
            self.server.request_log.add({
                "method": self.command, "template": template, "path": path, "status": status,
                "ms": round((time.monotonic() - started) * 1000, 1)})

    def _authenticate(self) -> None:
        header = self.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AzureError(401, "AuthenticationFailed",
                             "Authentication failed: no bearer token.", inner="InvalidToken")
        try:
            verify_token(self.server.key, token.strip())
        except TokenError as exc:
            raise AzureError(401, "AuthenticationFailed", f"Authentication failed: {exc}",
                             inner="InvalidToken") from exc

    def _send(self, response: Response) -> None:
        body = response.body
        if body is None:
            payload, ctype = b"", None
        elif isinstance(body, (bytes, bytearray)):
            payload, ctype = bytes(body), "application/octet-stream"
        else:
            payload, ctype = json.dumps(body).encode(), "application/json; charset=utf-8"
        try:
            self.send_response(response.status)
            if ctype:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-client-request-id", self.headers.get(
                "x-ms-client-request-id", ""))
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def make_server(workspace: "Workspace", key: str, host: str = "127.0.0.1", port: int = 0,
                request_log: str | Path | None = None) -> EmulatorHTTPServer:
    """A bound (not yet serving) emulator for ``workspace``; ``port=0`` picks a free port."""
    return EmulatorHTTPServer((host, port), Emulator(workspace), key, RequestLog(request_log))


def write_client_config(folder: str | Path, workspace: "Workspace", base_url: str) -> Path:
    """``<folder>/.azureml/config.json`` for the real client: the workspace and the ``auth`` key
    (endpoint and the name of the variable holding the key; never the key itself)."""
    from simml.emulator.protocol import KEY_ENV
    target = Path(folder) / ".azureml" / "config.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({
        "subscription_id": workspace.subscription_id, "resource_group": workspace.resource_group,
        "workspace_name": workspace.name,
        "auth": {"type": "simml_emulator", "endpoint": base_url, "key_env": KEY_ENV},
    }, indent=4) + "\n", encoding="utf-8")
    return target


def serve(workspace: "Workspace", host: str, port: int, request_log: str | None,
          write_config: str | None, echo: Any = print, proxy_port: int | None = 0,
          write_env: str | None = None) -> None:
    """``simml serve``: bind, print where (and the key when this process made it), serve until
    interrupted. ``proxy_port`` (None: no proxy) binds the HTTPS CONNECT proxy beside it
    (``tlsproxy.py``: blob hosts, ARM); its client environment is printed and, with
    ``write_env``, written to that file."""
    import os

    from simml.emulator.protocol import KEY_ENV, new_key
    # Taken out of this process's environment: the runners it launches, and their jobs, inherit
    # that environment (a job gets a run token instead: execution.py).
    key = os.environ.pop(KEY_ENV, None) or ""
    generated = not key
    if generated:
        key = new_key()
    server = make_server(workspace, key, host, port, request_log)
    base = server.base_url
    if write_config:
        echo(f"Wrote {write_client_config(write_config, workspace, base)}")
    if generated:
        echo(f"export {KEY_ENV}={key}")
    proxy = None
    if proxy_port is not None:
        from simml.emulator.tlsproxy import start_proxy
        try:
            proxy = start_proxy(server, host, proxy_port)
        except BaseException:
            server.server_close()
            raise
        echo(f"simml emulator: HTTPS proxy at {proxy.proxy.url}; the client needs:")
        for line in proxy.export_lines():
            echo(line)
        if write_env:
            echo(f"Wrote {proxy.write_env(write_env)}")
    echo(f"simml emulator: workspace {workspace.name} ({workspace.subscription_id}/"
         f"{workspace.resource_group}) at {base}")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if proxy is not None:
            proxy.stop()
        server.server_close()
