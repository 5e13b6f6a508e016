"""The answers to a refused /mcp request: 503 (overload) or 429 (rate limit), fast and self-explaining.

The body is a JSON-RPC error with `id: null` (the request body is never read,
so its id is unknown, which JSON-RPC allows), carrying the correlation id when
the request has one. Without one (the overload check runs before the
observability middleware gives it one) the answer is built once and reused:
under overload, answering costs two `send` calls.
"""

from __future__ import annotations

import json
from functools import lru_cache

from starlette.types import Send

from docserver.observability.context import current_correlation_id

SERVER_BUSY = -32000
"""JSON-RPC implementation-defined server error: the request was not processed; retry later."""

_MESSAGES = {
    "overload": "server overloaded: too many requests in flight; retry after {seconds} s",
    "rate_limit": "rate limit exceeded for this caller; retry after {seconds} s",
}
_STATUS = {"overload": 503, "rate_limit": 429}


def rejection_body(reason: str, retry_after: int) -> bytes:
    data: dict[str, object] = {"reason": reason, "retry_after": retry_after}
    correlation_id = current_correlation_id()
    if correlation_id:
        data["correlation_id"] = correlation_id
    message = _MESSAGES[reason].format(seconds=retry_after)
    error = {"code": SERVER_BUSY, "message": message, "data": data}
    return json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()


async def send_rejection(
    send: Send, reason: str, retry_after: int, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answers `reason` (overload or rate_limit) with its status, `Retry-After` and a JSON-RPC error."""
    if headers or current_correlation_id() is not None:
        start, body = _answer(reason, retry_after, headers or [])
    else:
        start, body = prebuilt(reason, retry_after)
    await send({"type": "http.response.start", "status": _STATUS[reason], "headers": start})
    await send({"type": "http.response.body", "body": body})


Headers = list[tuple[bytes, bytes]]


def _answer(reason: str, retry_after: int, headers: Headers) -> tuple[Headers, bytes]:
    body = rejection_body(reason, retry_after)
    start = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
        *headers,
    ]
    return start, body


@lru_cache(maxsize=64)
def prebuilt(reason: str, retry_after: int) -> tuple[Headers, bytes]:
    """The answer's headers and body without a correlation id or extra headers, built once."""
    return _answer(reason, retry_after, [])
