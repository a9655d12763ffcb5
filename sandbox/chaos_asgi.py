"""The ASGI layer that injects seeded chaos into the sandbox's Numerai surface, never its admin."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.chaos import Chaos

logger = logging.getLogger(__name__)

Surface = Literal["graphql", "file", "upload"]
CHAOS_HEADER = "x-sandbox-chaos"  # names the fault on every answer chaos made up
_DISCONNECT_WAIT_S = 5.0

# What the services in front of Numerai answer when they fail: a load balancer's 502, an API
# 503, and S3's errors for the upload and file buckets.
_BAD_GATEWAY = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center></body></html>\n"
)
_S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message></Error>\n"
)
_S3_FAULTS = {
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("SlowDown", "Please reduce your request rate."),
}


def surface(scope: Scope) -> Surface | None:
    """Which part of the Numerai surface a request hits; None for admin, health and Yahoo."""
    method, path = scope.get("method"), scope.get("path", "")
    if method == "POST" and path == "/":
        return "graphql"
    if method in ("GET", "HEAD") and path.startswith("/files/"):
        return "file"
    if method == "PUT" and path.startswith("/uploads/"):
        return "upload"
    return None


def _s3_error(status: int, kind: str) -> Response:
    code, message = _S3_FAULTS[status]
    return Response(
        _S3_ERROR.format(code=code, message=message),
        status_code=status,
        media_type="application/xml",
        headers={CHAOS_HEADER: kind},
    )


def _graphql_error(status: int) -> Response:
    if status == 502:
        return Response(
            _BAD_GATEWAY,
            status_code=502,
            media_type="text/html",
            headers={CHAOS_HEADER: "graphql_5xx"},
        )
    return JSONResponse(
        {"errors": [{"message": "Service Unavailable"}]},
        status_code=status,
        headers={CHAOS_HEADER: "graphql_5xx"},
    )


async def _discard(message: Message) -> None:
    """A `send` that answers nobody: the app runs, its answer is lost."""


async def _drain(receive: Receive) -> None:
    """Read the whole request body, so the client finished sending before it is answered."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


class _Truncator:
    """A `send` that passes a 200 on with its full Content-Length but only part of its body."""

    def __init__(self, send: Send, keep: float) -> None:
        self._send = send
        self._keep = keep
        self._limit: int | None = None
        self._sent = 0
        self.cut = False

    async def __call__(self, message: Message) -> None:
        if self.cut:
            return
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            length = headers.get(b"content-length")
            if message["status"] == 200 and length is not None and int(length) >= 2:
                self._limit = max(1, min(int(length) - 1, int(int(length) * self._keep)))
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (CHAOS_HEADER.encode(), b"truncate")],
                }
            await self._send(message)
            return
        if self._limit is None:  # not a whole file (an error, a tiny file): left alone
            await self._send(message)
            return
        body = message.get("body", b"")
        room = self._limit - self._sent
        if len(body) < room:
            self._sent += len(body)
            await self._send(message)
            return
        await self._send({"type": "http.response.body", "body": body[:room], "more_body": True})
        self._sent += room
        self.cut = True


class ChaosMiddleware:
    """Delays, 5xx answers, truncated downloads, failed PUTs and dropped connections.

    Only GraphQL POSTs, file downloads and upload PUTs are faulted; `/_sandbox/...`, `/healthz`,
    the index and the Yahoo fake never are. It must be the outermost ASGI app: it closes the
    connection through the server's own `send` (uvicorn's), which no other layer may wrap.
    """

    def __init__(self, app: ASGIApp, chaos: Chaos) -> None:
        self.app = app
        self.chaos = chaos

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = surface(scope) if scope["type"] == "http" else None
        if kind is None or not self.chaos.enabled:
            await self.app(scope, receive, send)
            return
        chaos = self.chaos
        chaos.seen()
        if (wait := chaos.delay()) > 0:
            chaos.record("delay")
            await asyncio.sleep(wait)
        drop = chaos.drop()
        if drop is not None and _can_hang_up(send):
            if drop == "after":
                await self.app(scope, receive, _discard)
            else:
                await _drain(receive)
            chaos.record("drop" if drop == "before" else "drop_after")
            await _hang_up(send, receive)
            return
        if kind == "graphql" and (status := chaos.graphql_5xx()) is not None:
            await _drain(receive)
            chaos.record("graphql_5xx")
            await _graphql_error(status)(scope, receive, send)
            return
        if kind == "upload" and (status := chaos.put_fail()) is not None:
            await _drain(receive)
            chaos.record("put_fail")
            await _s3_error(status, "put_fail")(scope, receive, send)
            return
        if kind == "file" and scope["method"] == "GET" and (keep := chaos.truncate()) is not None:
            await self._truncated(scope, receive, send, keep)
            return
        await self.app(scope, receive, send)

    async def _truncated(self, scope: Scope, receive: Receive, send: Send, keep: float) -> None:
        headers = dict(scope.get("headers", []))
        if b"range" in headers:  # a resume: answer as a struggling bucket would
            self.chaos.record("range_503")
            await _s3_error(503, "range_503")(scope, receive, send)
            return
        if not _can_hang_up(send):
            await self.app(scope, receive, send)
            return
        truncator = _Truncator(send, keep)
        await self.app(scope, receive, truncator)
        if truncator.cut:
            self.chaos.record("truncate")
            await _hang_up(send, receive)


def _transport(send: Send) -> asyncio.BaseTransport | None:
    """The connection behind uvicorn's `send` (a method of its request cycle), if any."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if isinstance(transport, asyncio.BaseTransport) else None


def _can_hang_up(send: Send) -> bool:
    if _transport(send) is None:
        logger.warning("sandbox chaos cannot close connections on this server; faults skipped")
        return False
    return True


async def _hang_up(send: Send, receive: Receive) -> None:
    """Close the connection (after what was sent), then wait until the server saw it close.

    Returning before then would make uvicorn log an incomplete response as an error.
    """
    transport = _transport(send)
    assert transport is not None, "checked by _can_hang_up"
    transport.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DISCONNECT_WAIT_S):
            while (await receive())["type"] != "http.disconnect":
                pass
