"""Reading and checking a webhook's body: size, time, JSON, and a shape Prefect can store."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.requests import Request

from flows.errors import NodeError

MAX_BODY_BYTES = 64 * 1024
# Numerai's body is flat; Prefect accepts deeper payloads with 204 and then never stores them.
MAX_BODY_DEPTH = 32
# Numbers Prefect (and PostgreSQL's jsonb, and any JSON reader) keep exactly.
MAX_BODY_INT = 2**63 - 1


class BodyTooLarge(NodeError, ValueError):
    """The body is longer than MAX_BODY_BYTES (the gateway answers 413)."""


class BodyTooSlow(NodeError, TimeoutError):
    """The body did not arrive within the body timeout (the gateway answers 408)."""


class InvalidBody(NodeError, ValueError):
    """The body is not a JSON object the gateway can forward (the gateway answers 422)."""


async def read_body(request: Request, limit: int, timeout_seconds: float) -> bytes:
    """The whole body, refused once past `limit` bytes or `timeout_seconds` from now.

    Raises starlette's ClientDisconnect when the sender hangs up first.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    try:
        async with asyncio.timeout(timeout_seconds):
            return await _read_limited(request, limit)
    except TimeoutError as exc:
        raise BodyTooSlow from exc


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise InvalidBody(f"{name} is not valid JSON.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidBody(f"The number {text[:40]} is out of range.")
    return value


def parse_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object that checks out (see check_shape); raises InvalidBody."""
    if not raw.strip():
        raise InvalidBody("The body is empty; expected a JSON object with a triggerId.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidBody("The body is not UTF-8 text.") from exc
    try:
        body = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise InvalidBody(f"The body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:
        raise InvalidBody("The body's JSON is nested too deeply.") from exc
    except InvalidBody:
        raise
    except ValueError as exc:  # e.g. an integer past Python's 4300-digit conversion limit
        raise InvalidBody(f"The body holds a number that is out of range ({exc}).") from exc
    if not isinstance(body, dict):
        raise InvalidBody(f"The body is a JSON {type(body).__name__}; expected a JSON object.")
    check_shape(body)
    return body


def check_shape(body: dict[str, Any]) -> None:
    """Refuse what Prefect would accept and then lose or choke on: nesting deeper than
    MAX_BODY_DEPTH, integers beyond 64 bits, text that is not valid Unicode or holds NUL."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:  # a loop, not recursion: a body cannot exhaust the stack here
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = [*value.values()]
            for key in value:
                _check_text(key)
        elif isinstance(value, list):
            children = value
        else:
            _check_scalar(value)
            continue
        if children and depth >= MAX_BODY_DEPTH:
            raise InvalidBody(f"The body's JSON is nested too deeply (over {MAX_BODY_DEPTH}).")
        stack.extend((child, depth + 1) for child in children)


def _check_scalar(value: Any) -> None:
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_BODY_INT:
        raise InvalidBody(f"The body holds an integer beyond 64 bits ({str(value)[:20]}...).")


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidBody("The body holds a NUL character (\\u0000) in a string.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidBody("The body holds a lone surrogate (\\ud800-\\udfff) in a string.") from exc
