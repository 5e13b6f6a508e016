"""The admission gate for POST /mcp: rate limit per caller, and in-flight slots.

Only POST /mcp (one JSON-RPC message each) is admitted: the handshake-era GET
stream, DELETE and every other path pass. A refused request is answered
before its body is read, so the MCP SDK never parses it. The app uses two
gates: the slots outermost, in front of the observability middleware, so that
shedding a flood costs next to nothing (its 503s are counted in
docserver_requests_rejected_total only, with a prebuilt answer); the rate
limit behind authentication, inside the observability middleware, so a 429 is
counted, traced and logged with its correlation id. A response that turns
into an event stream gives its slot back when the stream starts: a stream is
not work in flight. `admission_gate` returns the endpoint itself when nothing
is configured.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docserver.access.bearer import PRINCIPAL_SCOPE_KEY
from docserver.access.buckets import TokenBuckets, Verdict
from docserver.access.rejection import send_rejection
from docserver.access.slots import Slots
from docserver.config.admission import AdmissionSettings
from docserver.config.auth import MCP_PATH
from docserver.observability.instruments import AdmissionInstruments

QUEUED_SCOPE_KEY = "docserver.queued"
"""Seconds an admitted /mcp request waited for its in-flight slot, in the ASGI scope (the access line's
`queued_ms`): time the caller waited that the request's `duration_ms`, which starts after the gate, leaves out."""
OVERLOAD_RETRY_AFTER = 1
"""Seconds a shed client is asked to wait: in-flight work ends within about that."""
_EVENT_STREAM = b"text/event-stream"
_POLICY = b'"per-caller"'


def admission_gate(
    endpoint: ASGIApp,
    settings: AdmissionSettings,
    instruments: AdmissionInstruments | None = None,
    *,
    slots: bool = True,
    rate_limit: bool = True,
) -> ASGIApp:
    """`endpoint` behind the configured limits (those asked for), or `endpoint` unchanged when there are none."""
    in_flight = None
    if slots and settings.max_inflight is not None:
        in_flight = Slots(settings.max_inflight, settings.queue_size, settings.queue_timeout, instruments)
    buckets = None
    if rate_limit and settings.rate_limit_per_second is not None:
        buckets = TokenBuckets(settings.rate_limit_per_second, settings.burst)
    if in_flight is None and buckets is None:
        return endpoint
    return AdmissionGate(endpoint, slots=in_flight, buckets=buckets, instruments=instruments)


def caller_of(scope: Scope) -> str:
    """The rate-limited identity: the authenticated principal, else the client address."""
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    if principal is not None:
        return f"principal:{principal}"
    client = scope.get("client")
    return f"address:{client[0]}" if client else "address:unknown"


class AdmissionGate:
    """Refuses with 429 a caller over its rate, with 503 a request beyond the slots and their queue."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        slots: Slots | None,
        buckets: TokenBuckets | None,
        instruments: AdmissionInstruments | None,
    ) -> None:
        self.app = app
        self.slots = slots
        self.buckets = buckets
        self.instruments = instruments
        self.policy_header = _policy_header(buckets) if buckets is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "POST" or scope.get("path") != MCP_PATH:
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = []
        if self.buckets is not None:
            verdict = self.buckets.take(caller_of(scope))
            headers = self._rate_headers(verdict)
            if not verdict.allowed:
                if self.instruments is not None:
                    self.instruments.rejected_rate_limit.inc()
                await send_rejection(send, "rate_limit", verdict.retry_after, headers)
                return
        if self.slots is None:
            await self.app(scope, receive, _with_headers(send, headers) if headers else send)
            return
        arrived = time.perf_counter()
        if not await self.slots.acquire():
            if self.instruments is not None:
                self.instruments.rejected_overload.inc()
            await send_rejection(send, "overload", OVERLOAD_RETRY_AFTER, headers)
            return
        scope[QUEUED_SCOPE_KEY] = time.perf_counter() - arrived
        await self._admitted(scope, receive, send, headers, self.slots)

    async def _admitted(
        self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]], slots: Slots
    ) -> None:
        held = True
        forward = _with_headers(send, headers) if headers else send

        async def send_admitted(message: Message) -> None:
            nonlocal held
            if held and message["type"] == "http.response.start" and _is_event_stream(message.get("headers", ())):
                held = False
                slots.release()
            await forward(message)

        try:
            await self.app(scope, receive, send_admitted)
        finally:
            if held:
                slots.release()

    def refuses_at_once(self) -> bool:
        """True (and counted as shed) when the slots would now refuse a POST /mcp without queueing it."""
        if self.slots is None or not self.slots.refuses_at_once():
            return False
        if self.instruments is not None:
            self.instruments.rejected_overload.inc()
        return True

    def _rate_headers(self, verdict: Verdict) -> list[tuple[bytes, bytes]]:
        assert self.policy_header is not None
        state = b"%s;r=%d;t=%d" % (_POLICY, verdict.remaining, verdict.reset)
        return [(b"ratelimit-policy", self.policy_header), (b"ratelimit", state)]


def _policy_header(buckets: TokenBuckets) -> bytes:
    """IETF RateLimit-Policy: quota `burst` requests per window of refill time."""
    return b"%s;q=%d;w=%d" % (_POLICY, buckets.burst, buckets.window)


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers


def _is_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    return any(key.lower() == b"content-type" and value.startswith(_EVENT_STREAM) for key, value in headers)
