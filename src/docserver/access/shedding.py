"""Shedding at the HTTP parser: a POST /mcp beyond the in-flight slots is refused without an ASGI call.

Under a flood, the requests refused for overload are most of what the event
loop does, and the admitted requests wait behind that work at every step:
at 10 times the capacity in bench/overload.py a search took 3.6 ms instead
of 2.3 at the median. Refused by the ASGI gate, each refusal still costs uvicorn a request
cycle, an asyncio task, the gate's call and two socket writes (the status
line with headers, then the body). Here, uvicorn's own httptools protocol
refuses it when the request's head is parsed: no cycle, no task, and one
socket write of the prebuilt 503 once its body has gone by.

The decision is the slots' own (`Slots.refuses_at_once`), counted in
`docserver_requests_rejected_total{reason="overload"}` as before; a request
they would queue or admit goes the normal way, through the ASGI gate, which
decides again. Only the simple case is taken here: exactly `POST /mcp`, no
`Expect: 100-continue`, no earlier request of the connection still being
answered (a pipelined request must be answered in order), and a client that
reads its answers (uvicorn's flow control has not paused writing: a client
that pipelines without reading gets its 503s the normal way, which waits).

Cheap refusals invite clients that ask again at once to ask faster: beyond
`SHED_BUDGET_PER_SECOND`, a refused connection is not read for
`READ_PAUSE_AFTER_REFUSAL`, so that they cannot take the whole event loop.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from docserver.access.gate import OVERLOAD_RETRY_AFTER, AdmissionGate
from docserver.access.rejection import prebuilt
from docserver.config.auth import MCP_PATH

# uvicorn offers no public hook before a request's ASGI cycle: this subclasses its httptools
# protocol, written against uvicorn 0.54 (pinned in pyproject.toml). The names it reads or
# overrides are listed here and checked by tests/test_sdk_contracts.py.
PROTOCOL_NAMES = (
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "on_url",  # sets `url`, read once the head is complete
    "parser",
    "expect_100_continue",
    "cycle",
    "flow",
    "server_state",
    "transport",
    "loop",
)

_MCP_PATH = MCP_PATH.encode()
_OVERLOAD = 503
SHED_BUDGET_PER_SECOND = 10_000
"""Refusals a second answered without slowing their connection down: some 15% of the event loop at the
11 to 14 µs a refusal took when they came in bulk (bench/overload.py's closed loop). A flood of 10 times
the capacity measured there is 6,000 a second; beyond the budget, clients are asking again at once."""
READ_PAUSE_AFTER_REFUSAL = 0.001
"""Seconds a connection refused beyond the budget is not read. Clients that ask again at once cannot
then keep the event loop busy refusing them (20 that never back off made 64,000 requests a second in
bench/overload.py, and the searches in flight got a tenth of a core); their next answer comes at
most this much later. A pause costs two system calls and a timer, so it is kept for that case."""
_WINDOW = 0.01


class ShedBudget:
    """Counts refusals in windows of 10 ms of the event loop's clock; `exceeded` once over the budget."""

    def __init__(self, per_second: int) -> None:
        self.per_window = per_second * _WINDOW
        self._window_end = 0.0
        self._count = 0

    def exceeded(self, now: float) -> bool:
        if now >= self._window_end:
            self._window_end, self._count = now + _WINDOW, 0
        self._count += 1
        return self._count > self.per_window


class SheddingProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering the overload 503 itself; subclassed per gate (`shedding_protocol`)."""

    gate: AdmissionGate
    budget: ShedBudget
    _shedding = False
    built_answer: tuple[object, bytes] = (None, b"")
    """The 503 last built, with the `default_headers` (the Date) it was built from; shared by every connection."""

    def on_headers_complete(self) -> None:
        self._shedding = (
            self.url == _MCP_PATH
            and self.parser.get_method() == b"POST"
            and not self.expect_100_continue
            and (self.cycle is None or self.cycle.response_complete)
            and not self.flow.write_paused
            and self.gate.refuses_at_once()
        )
        if not self._shedding:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._shedding:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._shedding:
            super().on_message_complete()
            return
        self._shedding = False
        self.transport.write(self._refusal())
        if not self.parser.should_keep_alive():
            self.transport.close()
        self.on_response_complete()  # counts it, arms the keep-alive timeout or starts a pipelined request
        if not self.transport.is_closing() and self.budget.exceeded(self.loop.time()):
            self.flow.pause_reading()
            self.loop.call_later(READ_PAUSE_AFTER_REFUSAL, self._read_again)

    def _read_again(self) -> None:
        if not self.transport.is_closing():
            self.flow.resume_reading()

    def _refusal(self) -> bytes:
        defaults = self.server_state.default_headers
        built_with, answer = SheddingProtocol.built_answer
        if built_with is not defaults:  # uvicorn replaces the list when the Date changes
            headers, body = prebuilt("overload", OVERLOAD_RETRY_AFTER)
            lines = b"".join(name + b": " + value + b"\r\n" for name, value in [*defaults, *headers])
            answer = STATUS_LINE[_OVERLOAD] + lines + b"\r\n" + body
            SheddingProtocol.built_answer = (defaults, answer)
        return answer


def shedding_protocol(app: Any) -> type[SheddingProtocol] | None:
    """The protocol class that sheds for `app`'s in-flight slots; None when `app` has none (no limit set)."""
    if not isinstance(app, AdmissionGate) or app.slots is None or app.buckets is not None:
        return None  # (the rate limit, checked first when configured, is in a gate of its own)
    attributes = {"gate": app, "budget": ShedBudget(SHED_BUDGET_PER_SECOND)}
    protocol: type[SheddingProtocol] = type("SheddingProtocol", (SheddingProtocol,), attributes)
    return protocol
