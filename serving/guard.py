"""What stands in front of every route: who may call it, how large a body may be, and the
answers counted. A plain ASGI middleware (Starlette's ``BaseHTTPMiddleware`` runs each request
in an extra task with memory streams, which costs more CPU per request than the work here).

:class:`Guard` asks for a bearer token on the write routes (``RECSYS_WRITE_TOKEN``) and, when
one is set, on the read routes (``RECSYS_READ_TOKEN``), compared in constant time; then refuses
a body over ``max_body_bytes`` with 413 before anything parses it; and counts every answer in
``recsys_requests_total`` by route and status, the 401s and 413s included.

The tokens come from the replica's environment (locally, the environment of the command that
started Ray; on Kubernetes, a Secret: ``serve.writeTokenSecret``), never from the Serve config,
which the dashboard shows.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass

from recsys.config import READ_TOKEN_ENV, WRITE_TOKEN_ENV
from serving import telemetry

ROUTES = ("/recommend", "/events", "/items", "/healthz", "/readyz", "/metrics")
WRITE_ROUTES = {("POST", "/events"), ("POST", "/items")}  # what changes what the platform holds
READ_ROUTES = {("POST", "/recommend")}
WRITE_TOKEN, READ_TOKEN = WRITE_TOKEN_ENV, READ_TOKEN_ENV
DEFAULT_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class GuardSettings:
    """One replica's guard: the tokens (None: that kind of route is open) and the body limit."""

    write_token: str | None = None
    read_token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY

    @classmethod
    def from_env(cls, max_body_bytes: int = DEFAULT_MAX_BODY) -> GuardSettings:
        return cls(
            write_token=os.environ.get(WRITE_TOKEN) or None,
            read_token=os.environ.get(READ_TOKEN) or None,
            max_body_bytes=max_body_bytes,
        )

    def token_for(self, method: str, path: str) -> tuple[str | None, str]:
        """The token a request needs (None: none) and the variable that sets it."""
        if (method, path) in WRITE_ROUTES:
            return self.write_token, WRITE_TOKEN
        if (method, path) in READ_ROUTES:
            return self.read_token, READ_TOKEN
        return None, ""


_SETTINGS = GuardSettings.from_env()


def configure(settings: GuardSettings) -> None:
    """Set this process's guard (the Ingress replica does, at start: one per process)."""
    global _SETTINGS
    _SETTINGS = settings


def settings() -> GuardSettings:
    return _SETTINGS


def route_of(scope) -> str:
    path = scope.get("path", "")
    return path if path in ROUTES else "other"


class Guard:
    """In front of the app: 401 without the right bearer token, 413 for a body over the
    limit, else the app; every answer (the app's 4xx and 5xx, and these) counted in
    ``recsys_requests_total`` by route and status. One middleware: each is a layer of calls
    on every request."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = "500"

        async def send_counted(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self._guarded(scope, receive, send_counted)
        finally:  # an exception on its way to the 500 handler counts as 500
            telemetry.for_this_process().requests.labels(route_of(scope), status).inc()

    async def _guarded(self, scope, receive, send) -> None:
        guard = settings()
        method, path = scope.get("method", ""), scope.get("path", "")
        token, variable = guard.token_for(method, path)
        if token is not None:
            reason = _refused(_header(scope, b"authorization"), token)
            if reason:
                telemetry.for_this_process().auth_failures.labels(route_of(scope), reason).inc()
                detail = f"{method} {path} needs 'Authorization: Bearer <token>' ({reason}; "
                await _answer(send, 401, detail + f"{variable} is set on the server)", bearer=True)
                return
        limit = guard.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit, declared)
            return
        if declared is None and method in ("POST", "PUT", "PATCH"):
            receive = await _buffered(receive, limit)
            if receive is None:
                await _too_large(send, limit, "more")
                return
        await self.app(scope, receive, send)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _refused(header: str | None, token: str) -> str:
    """Why a request's Authorization header does not carry ``token`` ("" when it does)."""
    if header is None:
        return "no Authorization header"
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "not a bearer token"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "wrong token"
    return ""


async def _buffered(receive, limit: int):
    """A body sent without Content-Length, read up to ``limit`` bytes and handed on whole;
    None when it is larger."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: the app sees what there was
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _too_large(send, limit: int, declared: str) -> None:
    detail = f"the body is larger than {limit} bytes (Content-Length: {declared[:20]})"
    await _answer(send, 413, detail)


async def _answer(send, status: int, detail: str, *, bearer: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if bearer:
        headers.append((b"www-authenticate", b'Bearer realm="recsys"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
