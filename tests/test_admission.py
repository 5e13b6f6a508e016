"""Admission control: in-flight slots and their queue, per-caller token buckets, and the gate on /mcp.

The slots and buckets are tested alone (a fake clock for the buckets); the
gate is tested inside the real app, through its HTTP interface, with a
request that holds its slot by not sending its body yet.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docserver.access.buckets import TokenBuckets
from docserver.access.gate import QUEUED_SCOPE_KEY, admission_gate
from docserver.access.rejection import SERVER_BUSY, rejection_body
from docserver.access.slots import QUEUE_CLOSED_SECONDS, Slots
from docserver.config import Settings, load_settings
from docserver.config.admission import AdmissionSettings
from docserver.ingest.pipeline import ingest
from docserver.observability.metrics import Metrics
from docserver.runtime import Runtime
from support.inprocess import current_request, http_client, http_scope, new_metrics, serve_in_process


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- slots --------------------------------------------------------------------------------


async def test_slots_admit_up_to_the_limit_then_queue_then_refuse_at_once() -> None:
    slots = Slots(limit=2, queue_size=1, timeout=5)
    assert await slots.acquire() and await slots.acquire()
    queued = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)  # let it reach the queue
    assert slots.queued == 1

    assert await slots.acquire() is False  # the queue is full: refused without waiting
    slots.release()
    assert await queued is True
    assert (slots.in_flight, slots.queued) == (2, 0)


async def test_a_freed_slot_goes_to_the_oldest_waiter() -> None:
    slots = Slots(limit=1, queue_size=2, timeout=5)
    await slots.acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        await slots.acquire()
        order.append(name)

    first, second = asyncio.create_task(wait("first")), asyncio.create_task(wait("second"))
    await asyncio.sleep(0)
    slots.release()
    await first
    slots.release()
    await second
    assert order == ["first", "second"]


async def test_a_queued_request_gives_up_after_the_timeout_and_leaves_the_queue() -> None:
    slots = Slots(limit=1, queue_size=1, timeout=0.01)
    await slots.acquire()
    assert await slots.acquire() is False
    assert (slots.in_flight, slots.queued) == (1, 0)


async def test_a_cancelled_waiter_leaves_the_queue_and_no_slot_is_lost() -> None:
    slots = Slots(limit=1, queue_size=1, timeout=5)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    slots.release()
    assert (slots.in_flight, slots.queued) == (0, 0)
    assert await slots.acquire() is True


async def refused_at_once(slots: Slots) -> bool:
    """True when `acquire` answers False without queueing: done after one turn of the event loop."""
    attempt = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    return attempt.done() and attempt.result() is False and slots.queued == 0


async def test_an_overflowing_waiting_room_closes_for_a_second_then_opens_again() -> None:
    clock = FakeClock()
    slots = Slots(limit=1, queue_size=1, timeout=5, clock=clock)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert await slots.acquire() is False  # the room is full: sustained overload, not a burst
    slots.release()
    assert await waiter is True  # who was waiting is still served

    assert not slots.queue_open
    assert await refused_at_once(slots)  # the room is empty but closed: no admitted request waits
    clock.now += QUEUE_CLOSED_SECONDS
    assert slots.queue_open
    queued = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)
    assert slots.queued == 1  # open again: a burst is absorbed as before
    slots.release()
    assert await queued is True


async def test_a_queued_request_that_times_out_closes_the_waiting_room() -> None:
    clock = FakeClock()
    slots = Slots(limit=1, queue_size=2, timeout=0.01, clock=clock)
    await slots.acquire()
    assert slots.queue_open
    assert await slots.acquire() is False  # waited 10 ms for a slot that did not come
    assert not slots.queue_open
    assert await refused_at_once(slots)
    clock.now += QUEUE_CLOSED_SECONDS
    assert slots.queue_open


async def test_an_admitted_request_carries_its_wait_for_a_slot_in_its_scope() -> None:
    waits: list[float] = []
    hold = asyncio.Event()

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        waits.append(scope[QUEUED_SCOPE_KEY])
        if len(waits) == 1:
            await hold.wait()

    gate = admission_gate(endpoint, AdmissionSettings(max_inflight=1, max_queued=1, queue_timeout=5))

    async def nothing() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def ignore(message: Message) -> None: ...

    first = asyncio.create_task(gate(http_scope("POST", "/mcp", []), nothing, ignore))
    await wait_until(lambda: len(waits) == 1)
    second = asyncio.create_task(gate(http_scope("POST", "/mcp", []), nothing, ignore))
    await wait_until(lambda: gate.slots.queued == 1)  # type: ignore[attr-defined]
    hold.set()
    await asyncio.gather(first, second)

    assert waits[0] < 0.001  # a free slot: no wait
    assert waits[1] > waits[0]  # waited in the queue until the first request ended


# --- token buckets --------------------------------------------------------------------------


def test_a_caller_gets_its_burst_then_waits_for_the_refill() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    verdicts = [buckets.take("a") for _ in range(4)]

    assert [verdict.allowed for verdict in verdicts] == [True, True, True, False]
    assert [verdict.remaining for verdict in verdicts[:3]] == [2, 1, 0]
    assert verdicts[3].retry_after == 1
    clock.now += 0.5  # one token back at 2 per second
    assert buckets.take("a").allowed
    assert not buckets.take("a").allowed


def test_callers_have_their_own_buckets() -> None:
    buckets = TokenBuckets(rate=1, burst=1, clock=FakeClock())
    assert buckets.take("a").allowed
    assert not buckets.take("a").allowed
    assert buckets.take("b").allowed


def test_the_reset_is_the_time_to_refill_the_whole_bucket() -> None:
    buckets = TokenBuckets(rate=2, burst=10, clock=FakeClock())
    assert buckets.window == 5
    assert buckets.take("a").reset == 1  # one token short of full, at 2 per second
    for _ in range(9):
        last = buckets.take("a")
    assert (last.remaining, last.reset) == (0, 5)


def test_rotating_addresses_cannot_grow_the_table_past_its_bound() -> None:
    buckets = TokenBuckets(rate=1, burst=1, max_callers=1000, clock=FakeClock())
    for address in range(50_000):
        buckets.take(f"address:10.{address >> 16}.{(address >> 8) & 255}.{address & 255}")
    assert len(buckets) == 1000


def test_the_busiest_caller_keeps_its_bucket_while_others_churn() -> None:
    buckets = TokenBuckets(rate=1, burst=1, max_callers=10, clock=FakeClock())
    buckets.take("busy")
    for stranger in range(100):
        assert not buckets.take("busy").allowed
        buckets.take(f"stranger-{stranger}")
    assert not buckets.take("busy").allowed


# --- settings -------------------------------------------------------------------------------


def test_admission_is_off_and_the_endpoint_unwrapped_by_default(settings: Settings) -> None:
    def endpoint() -> None: ...

    assert admission_gate(endpoint, settings.admission) is endpoint  # type: ignore[arg-type]


def test_the_queue_and_burst_default_from_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSERVER_MAX_INFLIGHT", "8")
    monkeypatch.setenv("DOCSERVER_RATE_LIMIT_PER_SECOND", "2.5")
    admission = load_settings().admission
    assert (admission.max_inflight, admission.queue_size, admission.burst) == (8, 8, 2)
    assert admission.queue_timeout == 0.005  # a queued request waits 5 ms at most: every refusal stays fast


# --- the gate in the app ------------------------------------------------------------------------


def with_admission(settings: Settings, **values: object) -> Settings:
    return settings.model_copy(update={"admission": AdmissionSettings(**values)})


@pytest.fixture
async def indexed_runtime(runtime: Runtime, corpus: object) -> Runtime:
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")  # type: ignore[list-item]
    return runtime


def observed(runtime: Runtime, settings: Settings) -> tuple[Runtime, Metrics]:
    metrics = new_metrics()
    return Runtime(settings, runtime.store, runtime.embedder, metrics), metrics


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value


async def test_a_caller_over_its_rate_gets_429_with_retry_after_and_ratelimit_headers(
    settings: Settings, indexed_runtime: Runtime
) -> None:
    settings = with_admission(settings, rate_limit_per_second=0.5, rate_limit_burst=2)
    runtime, metrics = observed(indexed_runtime, settings)
    headers, body = current_request("tools/call", {"name": "list_sources", "arguments": {}}, name="list_sources")
    async with serve_in_process(settings, runtime, metrics) as app, http_client(app, headers) as http:
        answers = [await http.post("/mcp", content=body) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[0].headers["ratelimit-policy"] == '"per-caller";q=2;w=4'
    assert answers[0].headers["ratelimit"] == '"per-caller";r=1;t=2'
    refused = answers[2]
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["ratelimit"].startswith('"per-caller";r=0;')
    error = refused.json()
    assert error["id"] is None and error["error"]["code"] == SERVER_BUSY
    assert error["error"]["data"]["reason"] == "rate_limit"
    assert error["error"]["data"]["correlation_id"] == refused.headers["x-correlation-id"]
    assert sample(metrics, "docserver_requests_rejected_total", {"reason": "rate_limit"}) == 1
    labels = {"method": "POST", "route": "/mcp", "status_code": "429"}
    assert sample(metrics, "docserver_http_requests_total", labels) == 1  # the access layer saw it


async def test_health_and_metrics_are_never_rate_limited(settings: Settings, indexed_runtime: Runtime) -> None:
    settings = with_admission(settings, rate_limit_per_second=0.5, rate_limit_burst=1, max_inflight=1)
    runtime, metrics = observed(indexed_runtime, settings)
    async with serve_in_process(settings, runtime, metrics) as app, http_client(app) as http:
        statuses = {(await http.get(path)).status_code for path in ["/healthz", "/readyz", "/metrics"] * 3}
    assert statuses == {200}


@asynccontextmanager
async def held_request(app: ASGIApp, body: str, headers: dict[str, str]) -> AsyncIterator[asyncio.Task[int]]:
    """A POST /mcp that is admitted and then holds its slot until the context exits (its body arrives late).

    Entered once the request holds its slot: the MCP layer asks for the body only after admission.
    """
    admitted = asyncio.Event()
    release = asyncio.Event()
    status: list[int] = []

    async def receive() -> Message:
        admitted.set()
        await release.wait()
        return {"type": "http.request", "body": body.encode(), "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    scope = http_scope("POST", "/mcp", [(k.lower().encode(), v.encode()) for k, v in headers.items()])

    async def run() -> int:
        await app(scope, receive, send)
        return status[0]

    task = asyncio.create_task(run())
    try:
        await admitted.wait()
        yield task
    finally:
        release.set()


async def wait_until(condition: Callable[[], bool]) -> None:
    """Polls state the server exposes no event for (a request waiting in the queue), within 5 s."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def test_beyond_the_slots_and_queue_a_request_gets_503_at_once_and_health_stays_open(
    settings: Settings, indexed_runtime: Runtime
) -> None:
    settings = with_admission(settings, max_inflight=1, max_queued=0)
    runtime, metrics = observed(indexed_runtime, settings)
    headers, body = current_request("tools/call", {"name": "list_sources", "arguments": {}}, name="list_sources")
    async with serve_in_process(settings, runtime, metrics) as app, http_client(app, headers) as http:
        async with held_request(app, body, headers) as holder:
            assert sample(metrics, "docserver_admission_in_flight") == 1
            refused = await http.post("/mcp", content=body)
            health = await http.get("/healthz")
        assert await holder == 200
        admitted = await http.post("/mcp", content=body)

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["data"]["reason"] == "overload"
    assert refused.elapsed.total_seconds() < 0.1
    assert health.status_code == 200
    assert admitted.status_code == 200 and "result" in admitted.json()
    assert sample(metrics, "docserver_requests_rejected_total", {"reason": "overload"}) == 1
    assert sample(metrics, "docserver_admission_in_flight") == 0


async def test_a_shed_request_is_refused_in_front_of_the_http_middleware(
    settings: Settings, indexed_runtime: Runtime
) -> None:
    settings = with_admission(settings, max_inflight=1, max_queued=0)
    runtime, metrics = observed(indexed_runtime, settings)
    headers, body = current_request("tools/call", {"name": "list_sources", "arguments": {}}, name="list_sources")
    async with (
        serve_in_process(settings, runtime, metrics) as app,
        http_client(app, headers) as http,
        held_request(app, body, headers),
    ):
        refused = await http.post("/mcp", content=body)

    assert refused.status_code == 503
    assert "x-correlation-id" not in refused.headers  # the middleware never saw it
    assert "correlation_id" not in refused.json()["error"]["data"]
    shed = {"method": "POST", "route": "/mcp", "status_code": "503"}
    assert metrics.registry.get_sample_value("docserver_http_requests_total", shed) is None
    assert sample(metrics, "docserver_requests_rejected_total", {"reason": "overload"}) == 1


async def test_a_queued_request_is_served_when_the_slot_frees(settings: Settings, indexed_runtime: Runtime) -> None:
    settings = with_admission(settings, max_inflight=1, max_queued=1, queue_timeout=5)
    runtime, metrics = observed(indexed_runtime, settings)
    headers, body = current_request("tools/call", {"name": "list_sources", "arguments": {}}, name="list_sources")
    async with serve_in_process(settings, runtime, metrics) as app, http_client(app, headers) as http:
        async with held_request(app, body, headers) as holder:
            queued = asyncio.create_task(http.post("/mcp", content=body))
            await wait_until(lambda: sample(metrics, "docserver_admission_queued") == 1)
        assert await holder == 200
        answer = await queued

    assert answer.status_code == 200
    assert sample(metrics, "docserver_admission_queued") == 0
    assert sample(metrics, "docserver_requests_rejected_total", {"reason": "overload"}) == 0


async def test_an_event_stream_response_gives_its_slot_back_when_the_stream_starts() -> None:
    started = asyncio.Event()
    finish = asyncio.Event()

    async def streaming(scope: object, receive: object, send: object) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
        started.set()
        await finish.wait()

    gate = admission_gate(streaming, AdmissionSettings(max_inflight=1, max_queued=0))
    slots = gate.slots  # type: ignore[attr-defined]

    async def ignore(message: Message) -> None: ...

    async def no_body() -> Message:
        return {"type": "http.request", "body": b""}

    stream = asyncio.create_task(gate({"type": "http", "method": "POST", "path": "/mcp"}, no_body, ignore))
    await started.wait()
    assert slots.in_flight == 0
    assert await slots.acquire()  # the slot is free for the next request while the stream runs
    slots.release()
    finish.set()
    await stream
    assert slots.in_flight == 0


def test_the_rejection_body_is_one_json_rpc_error() -> None:
    assert json.loads(rejection_body("overload", 1)) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": SERVER_BUSY,
            "message": "server overloaded: too many requests in flight; retry after 1 s",
            "data": {"reason": "overload", "retry_after": 1},
        },
    }


def test_the_new_families_are_exported_at_zero() -> None:
    samples = [
        sample
        for family in text_string_to_metric_families(generate_latest(new_metrics().registry).decode())
        for sample in family.samples
    ]
    rejected = {s.labels["reason"]: s.value for s in samples if s.name == "docserver_requests_rejected_total"}
    assert rejected == {"overload": 0.0, "rate_limit": 0.0}
    gauges = {s.name: s.value for s in samples if s.name.startswith("docserver_admission_")}
    assert gauges == {"docserver_admission_in_flight": 0.0, "docserver_admission_queued": 0.0}
