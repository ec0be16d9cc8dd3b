"""simml's scoring server: serves an Azure ML entry script (``score.py``) over HTTP.

STANDARD LIBRARY ONLY: like the rest of ``simml.job`` this module is copied into every environment
a service runs in, so it imports nothing outside the standard library (``inference_schema`` is used
only when the environment has it and the script's ``run`` is decorated with it).

The contract is the one ``azureml-inference-server-http`` enforces (``docs/deployment.md``):

* the script is loaded as the module ``entry_module``; it must define ``init()`` and ``run(x)``;
  ``init()`` runs once per worker before the worker accepts a request; if it raises, the
  traceback goes to the log and the process exits with status 3 (``EXIT_INIT_FAILED``), as the
  inference server's gunicorn does;
* ``GET /`` answers ``Healthy``; ``GET /swagger.json`` a Swagger 2 document (from the
  ``inference_schema`` decorators when there are any); ``POST /score`` calls ``run`` with the body
  decoded as a ``str`` (``GET /score?k=v`` with the query as a JSON object), or, for a
  schema-decorated ``run``, with the body's keys as arguments; the result is ``json.dumps``-ed;
* an exception in ``run`` is a 500 ``{"message": "An unexpected error occurred in scoring script.
  Check the logs for more info."}`` with ``x-ms-run-function-failed: True``, the traceback in the
  log, and the server keeps serving;
* with a keys file (``SIMML_SERVICE_KEYS``), ``/score`` and ``/swagger.json`` need
  ``Authorization: Bearer <primary or secondary key>``; other requests get 401.

The process gets its listening socket already bound to 127.0.0.1 (file descriptor
``SIMML_SERVICE_FD``) or binds ``SIMML_SERVICE_HOST`` (default 127.0.0.1):``SIMML_SERVICE_PORT``
itself (in a container: 0.0.0.0:5001, published on the host's 127.0.0.1). HTTP/1.1 with keep-alive;
one thread per connection; calls of ``run`` are serialised per worker (a worker is one request at
a time, like the inference server's sync workers). ``WORKER_COUNT`` > 1 forks that many workers
sharing the socket, each running ``init()``.
"""

from __future__ import annotations

import hmac
import importlib.util
import inspect
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Any, Callable
from urllib.parse import parse_qsl

EXIT_INIT_FAILED = 3
EXIT_BAD_SCRIPT = 4
SERVER_VERSION = "simml-scoring/1"
MAX_LINE = 65536
MAX_HEADERS = 100
MAX_BODY = 256 * 1024 * 1024
RUN_FAILED = ("An unexpected error occurred in scoring script. Check the logs for more info.")
NOT_FOUND = ("The requested URL was not found on the server. If you entered the URL manually "
             "please check your spelling and try again.")
STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
               405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
               415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
               500: "Internal Server Error"}


def log(message: str) -> None:
    sys.stdout.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} | {message}\n")
    sys.stdout.flush()


class ScriptError(Exception):
    """The entry script does not meet the contract (no ``init`` / ``run``, bad signature)."""


# --- the entry script -------------------------------------------------------------------------
class EntryScript:
    """The loaded ``score.py``: its ``run``, how to call it, and its swagger document."""

    def __init__(self, path: str) -> None:
        self.path = path
        spec = importlib.util.spec_from_file_location("entry_module", path)
        if spec is None or spec.loader is None:
            raise ScriptError(f"Cannot load the entry script {path}.")
        module = importlib.util.module_from_spec(spec)
        sys.modules["entry_module"] = module
        spec.loader.exec_module(module)
        self.module = module
        init = getattr(module, "init", None)
        run = getattr(module, "run", None)
        if not callable(init):
            raise ScriptError(f"The entry script {path} has no init() function.")
        if not callable(run):
            raise ScriptError(f"The entry script {path} has no run() function.")
        self.init: Callable[[], Any] = init
        self.run: Callable[..., Any] = run
        self.schema = _schema_util(run)
        params = inspect.signature(run).parameters
        self.wants_headers = "request_headers" in params
        plain = [p for p in params.values() if p.name != "request_headers"]
        if any(p.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              inspect.Parameter.KEYWORD_ONLY) for p in plain):
            raise ScriptError("run() cannot accept positional-only arguments, *args, or "
                              f"**kwargs; {path} declares run{inspect.signature(run)}.")
        if not plain:
            raise ScriptError("run() needs to accept an argument for input data; "
                              f"{path} declares run{inspect.signature(run)}.")
        self.argument = plain[0].name
        self.parameters = plain
        self.swagger = self._swagger()

    def _swagger(self) -> dict[str, Any]:
        generic = {"type": "object"}
        input_schema = self.schema.get_input_schema(self.run) if self.schema else generic
        output_schema = self.schema.get_output_schema(self.run) if self.schema else generic
        name = os.environ.get("SERVICE_NAME", "ML service")
        return {
            "swagger": "2.0",
            "info": {"title": name, "description": "API specification for the Azure Machine "
                     "Learning service " + name, "version": os.environ.get("SERVICE_VERSION",
                                                                           "1.0")},
            "schemes": ["http"], "consumes": ["application/json"],
            "produces": ["application/json"],
            "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization",
                                               "in": "header", "description": "For example: "
                                               "Bearer abc123"}},
            "paths": {
                "/": {"get": {"operationId": "ServiceHealthCheck",
                              "description": "Simple health check endpoint to ensure the "
                              "service is up at any given point.",
                              "responses": {"200": {"description": "If service is up and "
                                                    "running, this response will be returned "
                                                    "with the content 'Healthy'",
                                                    "schema": {"type": "string"},
                                                    "examples": {"application/json":
                                                                 "Healthy"}}}}},
                "/score": {"post": {
                    "operationId": "RunMLService", "description": "Run web service's model "
                    "and get the prediction output",
                    "security": [{"Bearer": []}],
                    "parameters": [{"name": "serviceInputPayload", "in": "body",
                                    "description": "The input payload for executing the "
                                    "real-time machine learning service.",
                                    "schema": {"$ref": "#/definitions/ServiceInput"}}],
                    "responses": {"200": {"description": "The service processed the input "
                                          "correctly and provided a result prediction, if "
                                          "applicable.",
                                          "schema": {"$ref": "#/definitions/ServiceOutput"}},
                                  "default": {"description": "The service failed to execute "
                                              "due to an error.",
                                              "schema": {"$ref": "#/definitions/ErrorResponse"}}}
                }},
            },
            "definitions": {
                "ServiceInput": input_schema, "ServiceOutput": output_schema,
                "ErrorResponse": {"type": "object", "properties": {
                    "message": {"type": "string"}}},
            },
        }


def _schema_util(run: Callable[..., Any]) -> Any:
    """``inference_schema.schema_util`` when ``run`` carries its decorators, else None."""
    if "inference_schema" not in sys.modules:
        return None  # the script did not import the decorators: nothing to look for
    try:
        from inference_schema import schema_util  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        decorated = schema_util.is_schema_decorated(run)
    except Exception:
        return None
    return schema_util if decorated else None


# --- HTTP -------------------------------------------------------------------------------------
class Request:
    __slots__ = ("method", "target", "path", "query", "headers", "body", "version")

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes,
                 version: str = "HTTP/1.1") -> None:
        self.version = version
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body


Response = tuple[int, str, bytes, "list[tuple[str, str]]"]


def json_response(status: int, doc: Any, extra: list[tuple[str, str]] | None = None) -> Response:
    return status, "application/json", json.dumps(doc).encode(), extra or []


class Keys:
    """The service's keys, re-read when the keys file changes (``regen_key``)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None
        self.keys: frozenset[bytes] = frozenset()

    def allows(self, header: str | None) -> bool:
        if self.path is None:
            return True
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self.stamp:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            self.keys = frozenset(k.encode() for k in (data.get("primaryKey"),
                                                       data.get("secondaryKey")) if k)
            self.stamp = stamp
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        given = token.strip().encode()
        # compare_digest with every key: the time taken does not tell which bytes matched
        matched = [hmac.compare_digest(given, key) for key in self.keys]
        return scheme.lower() == "bearer" and any(matched)


class App:
    """Routing and ``run`` calls for one worker."""

    def __init__(self, script: EntryScript, keys: Keys) -> None:
        self.script = script
        self.keys = keys
        self.run_lock = threading.Lock()
        self.swagger_body = json.dumps(script.swagger).encode()

    def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/score":
            if request.method == "OPTIONS":
                return 200, "text/plain", b"", [("Allow", "GET, POST, OPTIONS")]
            if not self.keys.allows(request.headers.get("authorization")):
                return json_response(401, {"message": "Unauthorized: this service needs the "
                                           "header 'Authorization: Bearer <key>' with one of "
                                           "its keys."}, [("WWW-Authenticate", "Bearer")])
            if request.method in ("POST", "GET"):
                return self.score(request)
            return json_response(405, {"message": "The method is not allowed for the "
                                       "requested URL."})
        if path == "/" or path == "":
            if request.method in ("GET", "HEAD"):
                return 200, "text/html; charset=utf-8", b"Healthy", []
            return json_response(405, {"message": "The method is not allowed for the "
                                       "requested URL."})
        if path == "/swagger.json" and request.method == "GET":
            if not self.keys.allows(request.headers.get("authorization")):
                return json_response(401, {"message": "Unauthorized"},
                                     [("WWW-Authenticate", "Bearer")])
            return 200, "application/json", self.swagger_body, []
        return json_response(404, {"message": NOT_FOUND})

    def score(self, request: Request) -> Response:
        script = self.script
        kwargs: dict[str, Any]
        if request.method == "GET":
            data: dict[str, Any] = {}
            for key, value in parse_qsl(request.query, keep_blank_values=True):
                data.setdefault(key, []).append(_maybe_json(value))
            params = {k: v[0] if len(v) == 1 else v for k, v in data.items()}
            if script.schema is None:
                kwargs = {script.argument: json.dumps(params)}
            else:
                kwargs = params
        elif script.schema is None:
            try:
                kwargs = {script.argument: request.body.decode("utf-8")}
            except UnicodeDecodeError as exc:
                return json_response(400, {"message": f"Input cannot be decoded as UTF-8: "
                                           f"{exc}"})
        else:
            content_type = request.headers.get("content-type", "").lower()
            if not (content_type.startswith("application/json") or "+json" in content_type):
                return json_response(415, {"message": "Expects Content-Type to be "
                                           "application/json"})
            try:
                doc = json.loads(request.body)
            except ValueError as exc:
                return json_response(400, {"message": (
                    f"POST body could not be decoded as JSON: {exc}" if request.body else
                    "POST body is empty. Expecting a JSON dictionary.")})
            if not isinstance(doc, dict):
                return json_response(400, {"message": "POST body should be a JSON dictionary."})
            kwargs = doc
        if script.schema is not None:
            chosen: dict[str, Any] = {}
            for parameter in script.parameters:
                value = kwargs.get(parameter.name, parameter.default)
                if value is inspect.Parameter.empty:
                    return json_response(400, {"message": "A value is not provided for the "
                                               f"{parameter.name!r} parameter."})
                chosen[parameter.name] = value
            kwargs = chosen
        if script.wants_headers:
            # Title-Case names, as Flask's request.headers gives them to the inference server
            kwargs["request_headers"] = {k.title(): v for k, v in request.headers.items()}
        started = time.perf_counter()
        try:
            with self.run_lock:
                result = script.run(**kwargs)
            body = json.dumps(result).encode()
        except Exception:
            elapsed = f"{(time.perf_counter() - started) * 1000:.3f}"
            log("Encountered Exception in run():\n" + traceback.format_exc().rstrip())
            return json_response(500, {"message": RUN_FAILED},
                                 [("x-ms-run-function-failed", "True"),
                                  ("x-ms-run-fn-exec-ms", elapsed)])
        elapsed = f"{(time.perf_counter() - started) * 1000:.3f}"
        return 200, "application/json", body, [("x-ms-run-function-failed", "False"),
                                               ("x-ms-run-fn-exec-ms", elapsed)]


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _read_request(rfile: Any, conn: socket.socket) -> Request | None:
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise BadRequest(431, "Request line too long.")
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        raise BadRequest(400, "Malformed request line.")
    method, target, version = (p.decode("latin-1") for p in parts)
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        raw = rfile.readline(MAX_LINE + 1)
        if raw in (b"\r\n", b"\n", b""):
            break
        if len(raw) > MAX_LINE:
            raise BadRequest(431, "Header line too long.")
        key, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest(400, "Malformed header line.")
        headers[key.strip().lower()] = value.strip()
    else:
        raise BadRequest(431, "Too many headers.")
    if headers.get("expect", "").lower() == "100-continue":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        total = 0
        while True:
            size_line = rfile.readline(MAX_LINE + 1)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest(400, "Malformed chunked body.") from None
            if size == 0:
                while rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass
                break
            total += size
            if total > MAX_BODY:
                raise BadRequest(413, "Request body too large.")
            chunks.append(rfile.read(size))
            rfile.readline(MAX_LINE + 1)
        body = b"".join(chunks)
    else:
        length_text = headers.get("content-length")
        if length_text:
            try:
                length = int(length_text)
            except ValueError:
                raise BadRequest(400, "Malformed Content-Length.") from None
            if length < 0:
                raise BadRequest(400, "Malformed Content-Length.")
            if length > MAX_BODY:
                raise BadRequest(413, "Request body too large.")
            body = rfile.read(length)
            if len(body) != length:
                return None
        else:
            body = b""
    return Request(method, target, headers, body, version)


def _keep_alive(request: Request) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def serve_connection(app: App, conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rfile = conn.makefile("rb", 65536)
    try:
        while True:
            try:
                request = _read_request(rfile, conn)
            except BadRequest as exc:
                status, ctype, body, extra = json_response(exc.status, {"message": str(exc)})
                _send(conn, status, ctype, body, extra, str(uuid.uuid4()), False, False)
                return
            if request is None:
                return
            request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
            if len(request_id) > 100:
                status, ctype, body, extra = json_response(
                    431, {"message": "x-request-id must be at most 100 characters."})
            else:
                try:
                    status, ctype, body, extra = app.handle(request)
                except Exception:
                    log("Internal server error:\n" + traceback.format_exc().rstrip())
                    status, ctype, body, extra = json_response(500, {"message": RUN_FAILED})
            keep = _keep_alive(request)
            _send(conn, status, ctype, body, extra, request_id, keep, request.method == "HEAD",
                  request.headers.get("x-ms-client-request-id"))
            if status >= 400 or request.path != "/":
                log(f'{request.method} {request.path} {status} {len(body)}')
            if not keep:
                return
    except (ConnectionError, OSError):
        return
    finally:
        try:
            rfile.close()
            conn.close()
        except OSError:
            pass


def _send(conn: socket.socket, status: int, ctype: str, body: bytes,
          extra: list[tuple[str, str]], request_id: str, keep: bool, head: bool,
          client_request_id: str | None = None) -> None:
    lines = [f"HTTP/1.1 {status} {STATUS_TEXT.get(status, 'Unknown')}",
             f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
             f"x-request-id: {request_id}", f"x-ms-request-id: {request_id}",
             f"x-ms-server-version: {SERVER_VERSION}",
             "Connection: keep-alive" if keep else "Connection: close"]
    if client_request_id:
        lines.append(f"x-ms-client-request-id: {client_request_id}")
    lines.extend(f"{k}: {v}" for k, v in extra)
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    conn.sendall(head_bytes if head else head_bytes + body)


# --- the process ------------------------------------------------------------------------------
def listening_socket() -> socket.socket:
    fd = os.environ.get("SIMML_SERVICE_FD")
    if fd:
        sock = socket.socket(fileno=int(fd))
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((os.environ.get("SIMML_SERVICE_HOST") or "127.0.0.1",
                   int(os.environ.get("SIMML_SERVICE_PORT", "0"))))
        sock.listen(128)
    return sock


def worker(sock: socket.socket, ready_path: str | None) -> int:
    """Load the script, run ``init()``, then serve until SIGTERM."""
    script_path = os.environ["AZUREML_ENTRY_SCRIPT"]
    app_root = os.environ.get("AML_APP_ROOT") or os.path.dirname(script_path)
    for folder in (os.environ.get("AZUREML_SOURCE_DIRECTORY"), app_root):
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        script = EntryScript(script_path)
    except ScriptError as exc:
        log(f"Error: {exc}")
        return EXIT_BAD_SCRIPT
    except BaseException:
        log("Error: loading the entry script failed:\n" + traceback.format_exc().rstrip())
        return EXIT_BAD_SCRIPT
    log(f"Users's init has started: {os.path.basename(script_path)} (pid {os.getpid()})")
    started = time.perf_counter()
    try:
        script.init()
    except BaseException:
        log("Encountered Exception in init():\n" + traceback.format_exc().rstrip())
        log("Worker failed to boot: init() raised (exit status 3).")
        return EXIT_INIT_FAILED
    log(f"Users's init has completed successfully in {time.perf_counter() - started:.3f} s")
    app = App(script, Keys(os.environ.get("SIMML_SERVICE_KEYS") or None))
    if ready_path:
        tmp = f"{ready_path}.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"pid": os.getpid(), "port": sock.getsockname()[1]}, handle)
        os.replace(tmp, ready_path)
    host, port = sock.getsockname()[:2]
    log(f"Scoring server ready: http://{host}:{port}/score (GET / for health, "
        "GET /swagger.json)")
    while True:
        try:
            conn, _ = sock.accept()
        except InterruptedError:
            continue
        except OSError:
            return 0
        threading.Thread(target=serve_connection, args=(app, conn), daemon=True).start()


def redirect_output() -> None:
    """``SIMML_SERVICE_LOG``: append stdout and stderr to that file (in a container, where no one
    else redirects them)."""
    path = os.environ.get("SIMML_SERVICE_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)


def main() -> int:
    redirect_output()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if os.environ.get("SIMML_SERVICE_CWD"):
        os.chdir(os.environ["SIMML_SERVICE_CWD"])
    try:
        sock = listening_socket()
    except OSError as exc:
        log(f"Error: cannot listen: {exc}")
        return EXIT_BAD_SCRIPT
    workers = max(1, int(os.environ.get("WORKER_COUNT", "1") or 1))
    ready = os.environ.get("SIMML_SERVICE_READY") or None
    log(f"simml scoring server starting: {workers} worker(s), entry script "
        f"{os.environ.get('AZUREML_ENTRY_SCRIPT')}, AZUREML_MODEL_DIR="
        f"{os.environ.get('AZUREML_MODEL_DIR')}")
    if workers == 1:
        return worker(sock, ready)
    children = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            os._exit(worker(sock, ready if index == 0 else None))
        children.append(pid)

    def stop(*_: Any) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while children:
        pid, status = os.wait()
        children.remove(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            log(f"Worker {pid} exited with status {code}: stopping the server.")
            for child in children:
                try:
                    os.kill(child, signal.SIGTERM)
                except OSError:
                    pass
            return code if code > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
