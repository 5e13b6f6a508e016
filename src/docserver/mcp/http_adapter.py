"""The HTTP edge of /mcp: what the SDK's transport gets wrong on the wire, fixed around it.

- Header values lose trailing whitespace (RFC 9112 §5.5: optional whitespace
  is not part of a field value). uvicorn's httptools parser keeps it, so
  `MCP-Protocol-Version: 2025-11-25 ` was refused; see docs/clients.md for why
  this is cheaper than uvicorn's h11 parser.
- An error answered to a request that named no session carries no
  `Mcp-Session-Id`: the SDK stamps the id of a session it never opened.
- A body that is not a JSON-RPC message (or is a batch) is -32600 Invalid
  Request with a short message, as JSON-RPC says, not -32602 with a pydantic dump.
- An `MCP-Protocol-Version` that no era knows is 400 / -32022 naming the
  version, with the request's id and the versions of the request's era: a
  session's (or an `initialize`'s), or the current ones, as `server/discover`
  lists them. The SDK's modern path answered a session's request, or an
  `initialize`, with a message about `params._meta`.

Successful responses pass through untouched: only 4xx answers are inspected.
"""

from __future__ import annotations

from typing import Any

import orjson
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, UNSUPPORTED_PROTOCOL_VERSION
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docserver.mcp.versions import BATCH_ERA_VERSIONS

_SESSION_HEADER = b"mcp-session-id"
_VERSION_HEADER = b"mcp-protocol-version"
_KNOWN_VERSIONS = frozenset(version.encode() for version in (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS))
_SESSION_VERSIONS = [version for version in HANDSHAKE_PROTOCOL_VERSIONS if version not in BATCH_ERA_VERSIONS]
_CURRENT_VERSIONS = list(MODERN_PROTOCOL_VERSIONS)
_WHITESPACE = b" \t"
_SCAN_BYTES = 64 * 1024
"""How much of a refused body is read for its JSON-RPC id and method (a longer one is answered with id null)."""
_NOT_A_MESSAGE = (
    "Invalid Request: the body must be one JSON-RPC 2.0 request, notification or response "
    '(an object with jsonrpc "2.0"); batches are not supported'
)


class McpHttpAdapter:
    """ASGI wrapper around the SDK's Streamable HTTP app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        if any(value[-1:] in (b" ", b"\t") for _, value in headers):
            scope = {**scope, "headers": [(name, value.rstrip(_WHITESPACE)) for name, value in headers]}
            headers = scope["headers"]
        sessionless, version = True, None
        for name, value in headers:
            if name == _SESSION_HEADER:
                sessionless = False
            elif name == _VERSION_HEADER:
                version = value
        if version is not None and version not in _KNOWN_VERSIONS:
            answer = _unsupported_version(version, await _read_message(receive), in_session=not sessionless)
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, _ErrorAnswer(send, sessionless))


async def _read_message(receive: Receive) -> dict[str, Any]:
    """The request body as a JSON object; empty when it is none or too long to look at."""
    body = b""
    while len(body) <= _SCAN_BYTES:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    else:
        return {}
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _unsupported_version(value: bytes, message: dict[str, Any], *, in_session: bool) -> Response:
    requested = value.decode("latin-1")
    handshake = in_session or message.get("method") == "initialize"
    supported = _SESSION_VERSIONS if handshake else _CURRENT_VERSIONS
    speakers = "sessions speak" if handshake else "requests without a session speak"
    error = {
        "code": UNSUPPORTED_PROTOCOL_VERSION,
        "message": f"Unsupported MCP-Protocol-Version {requested!r}; {speakers} {', '.join(supported)}",
        "data": {"supported": supported, "requested": requested},
    }
    request_id = message.get("id")
    valid_id = isinstance(request_id, str | int) and not isinstance(request_id, bool)
    body = orjson.dumps({"jsonrpc": "2.0", "id": request_id if valid_id else None, "error": error})
    return Response(body, status_code=400, media_type="application/json")


class _ErrorAnswer:
    """A `send` that corrects 4xx answers and passes everything else on as it comes."""

    __slots__ = ("body", "send", "sessionless", "start")

    def __init__(self, send: Send, sessionless: bool) -> None:
        self.send = send
        self.sessionless = sessionless
        self.start: Message | None = None
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if not message.get("more_body", False):
            await self._flush()

    async def _flush(self) -> None:
        assert self.start is not None
        body = _corrected_body(self.start["status"], self.body)
        headers = [
            (name, str(len(body)).encode() if name == b"content-length" else value)
            for name, value in self.start["headers"]
            if not (self.sessionless and name == _SESSION_HEADER)
        ]
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})


def _corrected_body(status: int, body: bytes) -> bytes:
    """A transport-level shape error (400, id null, -32602) becomes -32600; other bodies stay."""
    if status != 400:
        return body
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict) or answer.get("id") is not None or error.get("code") != INVALID_PARAMS:
        return body
    return orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": _NOT_A_MESSAGE}})
