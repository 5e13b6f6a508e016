"""Shedding at the HTTP parser (docserver.access.shedding): beyond the slots, POST /mcp never reaches the app.

uvicorn's protocol is driven two ways: over real HTTP on loopback (the answer a
client reads, and its connection kept for the next call), and with a recording
transport in place of the socket, to see that a shed request is answered in
one write and starts no ASGI task.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from docserver.access.gate import AdmissionGate, admission_gate
from docserver.access.shedding import ShedBudget, SheddingProtocol, shedding_protocol
from docserver.config.admission import AdmissionSettings
from docserver.observability.metrics import Metrics
from support.inprocess import new_metrics
from support.loopback import loopback_socket, serve_over_http

CALL = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}'


class HeldEndpoint:
    """An app whose first POST /mcp holds its slot until `release`; every call it gets is recorded."""

    def __init__(self) -> None:
        self.calls = 0
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.calls += 1
        if self.calls == 1:
            self.holding.set()
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def one_slot_shedding() -> tuple[HeldEndpoint, Metrics, AdmissionGate, type[SheddingProtocol]]:
    """An endpoint behind a gate of one slot and no queue, and the protocol class that sheds for it."""
    endpoint, metrics = HeldEndpoint(), new_metrics()
    gate = admission_gate(endpoint, AdmissionSettings(max_inflight=1, max_queued=0), metrics.for_admission())
    protocol = shedding_protocol(gate)
    assert protocol is not None
    return endpoint, metrics, gate, protocol


def shed_count(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("docserver_requests_rejected_total", {"reason": "overload"})
    assert value is not None
    return value


async def test_beyond_the_slots_a_client_reads_the_503_and_keeps_its_connection() -> None:
    endpoint, metrics, gate, protocol = one_slot_shedding()
    sock = loopback_socket()
    async with serve_over_http(gate, sock, http=protocol) as url, httpx.AsyncClient(base_url=url) as client:
        holder = asyncio.create_task(client.post("/mcp", content=CALL))
        await endpoint.holding.wait()
        async with httpx.AsyncClient(base_url=url) as other:
            refused = await other.post("/mcp", content=CALL)
            endpoint.release.set()
            assert (await holder).status_code == 200
            again = await other.post("/mcp", content=CALL)  # the same keep-alive connection

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "date" in refused.headers
    assert json.loads(refused.content)["error"]["data"] == {"reason": "overload", "retry_after": 1}
    assert again.status_code == 200 and again.content == b"ok"
    assert endpoint.calls == 2  # the refused request never reached the app
    assert shed_count(metrics) == 1


class RecordingTransport(asyncio.Transport):
    """Stands in for the socket: keeps what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def post(path: bytes = b"/mcp") -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%s" % (path, len(CALL), CALL)


async def test_a_shed_request_is_answered_in_one_write_and_starts_no_asgi_task() -> None:
    endpoint, metrics, gate, protocol_class = one_slot_shedding()
    state = ServerState()
    state.default_headers = [(b"date", b"Sat, 05 Dec 2026 17:00:00 GMT")]
    config = uvicorn.Config(gate, http=protocol_class, lifespan="off", log_config=None)

    holder = protocol_class(config=config, server_state=state, app_state={})
    holder.connection_made(RecordingTransport())
    holder.data_received(post())
    await endpoint.holding.wait()  # the slot is taken

    transport = RecordingTransport()
    shed = protocol_class(config=config, server_state=state, app_state={})
    shed.connection_made(transport)
    tasks_before = set(state.tasks)
    shed.data_received(post())

    assert state.tasks == tasks_before  # no ASGI task for it
    [answer] = transport.writes  # status line, headers and body in one write
    head, _, body = answer.partition(b"\r\n\r\n")
    head += b"\r\n"
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"\r\ndate: Sat, 05 Dec 2026 17:00:00 GMT\r\n" in head and b"\r\nretry-after: 1\r\n" in head
    assert json.loads(body)["error"]["data"]["reason"] == "overload"
    assert not transport.closed
    assert shed_count(metrics) == 1

    shed.data_received(post(b"/healthz"))  # another path on the same connection still goes to the app
    endpoint.release.set()
    await asyncio.gather(*state.tasks)
    assert endpoint.calls == 2
    shed.connection_lost(None)
    holder.connection_lost(None)


def test_no_shedding_protocol_without_an_in_flight_limit() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None: ...

    assert shedding_protocol(admission_gate(app, AdmissionSettings())) is None
    assert shedding_protocol(admission_gate(app, AdmissionSettings(rate_limit_per_second=5))) is None


def test_the_shed_budget_counts_refusals_per_10_ms_window() -> None:
    budget = ShedBudget(per_second=200)  # 2 refusals per 10 ms window
    assert [budget.exceeded(5.0) for _ in range(3)] == [False, False, True]
    assert budget.exceeded(5.009)  # still the same window
    assert not budget.exceeded(5.010)  # a new window: the count starts again
