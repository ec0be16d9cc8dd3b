"""Protocol pieces of the emulator, standard library only: Azure's error payload, the routing
table (path templates), and the tokens the emulator issues and accepts.

Tokens are HS256 JSON Web Tokens signed with the emulator's key (``SIMML_EMULATOR_KEY``): the
client-side auth mints them from the same key with no network, and the server accepts a token only
when its signature, issuer and expiry check out (anything else is answered 401). The real client
decodes tokens without verifying them, only to read ``exp``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from contextlib import contextmanager
from typing import Any, Callable, Iterator

ISSUER = "simml-emulator"
KEY_ENV = "SIMML_EMULATOR_KEY"
DEFAULT_TOKEN_SECONDS = 3600
ARM_SCOPE = ("/subscriptions/{sub}/resourceGroups/{rg}/providers/"
             "Microsoft.MachineLearningServices/workspaces/{ws}")


# --- errors --------------------------------------------------------------------------------------

class AzureError(Exception):
    """An error answered in Azure's payload shape; the real client turns it into its own
    exception (``ServiceException`` wrapped as ``UserErrorException``, ``ComputeTargetException``
    ...)."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None,
                 target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.inner = inner
        self.target = target

    def payload(self, correlation: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "details": [],
                                 "target": self.target}
        if self.inner:
            error["innerError"] = {"code": self.inner}
        return {"error": error,
                "correlation": {"operation": correlation or uuid.uuid4().hex,
                                "request": uuid.uuid4().hex[:16]},
                "environment": "simml", "location": "local",
                "time": datetime.now(timezone.utc).isoformat()}


def not_found(what: str, inner: str = "NotFound") -> AzureError:
    return AzureError(404, "UserError", what, inner=inner)


def bad_request(message: str, inner: str = "BadArgument") -> AzureError:
    return AzureError(400, "UserError", message, inner=inner)


# --- routing -------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)(\*?)\}")


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]
    public: bool = False  # no bearer token (discovery; content URLs carry a signature instead)


class Router:
    """Path templates: ``{name}`` is one path segment, ``{name*}`` the rest of the path.

    Literal parts match case-insensitively (ARM is case-insensitive, the client mixes
    ``resourceGroups`` and ``resourcegroups``)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Callable[..., Any],
            public: bool = False) -> None:
        parts, last = [], 0
        for match in _PLACEHOLDER.finditer(template):
            parts.append(re.escape(template[last:match.start()]))
            parts.append(f"(?P<{match.group(1)}>{'.+' if match.group(2) else '[^/]+'})")
            last = match.end()
        parts.append(re.escape(template[last:]))
        pattern = re.compile("^" + "".join(parts) + "/?$", re.IGNORECASE)
        self.routes.append(Route(method.upper(), template, pattern, handler, public))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for ``method`` and ``path`` (no query), with its decoded parameters.

        :raises AzureError: 405 when the path is known but not for this method.
        """
        from urllib.parse import unquote
        path_known = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method != method.upper():
                path_known = True
                continue
            return route, {k: unquote(v) for k, v in found.groupdict().items()}
        if path_known:
            raise AzureError(405, "UserError", f"Method {method} is not allowed on {path}.",
                             inner="MethodNotAllowed")
        return None


# --- tokens --------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_key() -> str:
    return secrets.token_urlsafe(32)


def mint_token(key: str, subject: str = "user", seconds: int = DEFAULT_TOKEN_SECONDS,
               scope: str | None = None, now: float | None = None) -> str:
    """An HS256 JWT signed with ``key``: ``iss``, ``sub``, ``iat``, ``exp``, ``jti`` and an
    optional ``scope`` (a run token carries its run id)."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "sub": subject, "iat": issued,
                              "exp": issued + int(seconds), "jti": uuid.uuid4().hex,
                              "tid": "00000000-0000-0000-0000-000000000000",
                              "oid": "00000000-0000-0000-0000-000000000001"}
    if scope:
        claims["scope"] = scope
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


class TokenError(Exception):
    """Why a token was refused (the 401's message)."""


def verify_token(key: str, token: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a token this emulator's key signed; ``TokenError`` otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("The token is not a JSON Web Token.")
    header, body, signature = parts
    expected = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
        claims = json.loads(_unb64(body))
        alg = json.loads(_unb64(header)).get("alg")
    except (ValueError, json.JSONDecodeError) as exc:
        raise TokenError("The token is malformed.") from exc
    if alg != "HS256" or not hmac.compare_digest(given, expected):
        raise TokenError("The token was not issued by this emulator.")
    if not isinstance(claims, dict) or claims.get("iss") != ISSUER:
        raise TokenError("The token was not issued by this emulator.")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= (now if now is not None else time.time()):
        raise TokenError("The token has expired.")
    return claims


@contextmanager
def released(lock: Any) -> Iterator[None]:
    """Let other requests run during a block that touches no shared emulator state (file copies,
    submissions: simml's store is transactional by itself): the handler lock ``Emulator.call``
    holds is released for the block and taken back after. A no-op when this thread does not
    hold it."""
    try:
        lock.release()
    except RuntimeError:
        yield
        return
    try:
        yield
    finally:
        lock.acquire()
