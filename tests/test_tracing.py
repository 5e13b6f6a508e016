"""Tracing, fast: W3C parsing vectors, the per-request sampling decision, the HTTP middleware's headers,
dropped-span counting, and (in a subprocess, since OpenTelemetry allows one global provider per
process) the provider `configure_tracing` installs.

Nothing here sets the global tracer provider of the pytest process: tests that need a provider
build their own and hand it to `Tracing` or the middleware.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from docserver.app import new_metrics
from docserver.config import load_settings
from docserver.errors import ConfigError
from docserver.observability.http_trace import RequestSpan, ServerSpans
from docserver.observability.metrics import Metrics
from docserver.observability.middleware import ObservabilityMiddleware
from docserver.observability.sampling import SamplingRule, ratio
from docserver.observability.span_export import BatchSettings, SpanBatcher
from docserver.observability.tracing import current_exemplar, traceparent
from docserver.observability.tracing_setup import Tracing, _CountingExporter, sampler_named
from docserver.observability.w3c import parse_traceparent, parse_tracestate
from support.captured_logs import capture_events

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"


# --- W3C traceparent ---------------------------------------------------------------------


def test_a_valid_traceparent_is_the_remote_parent() -> None:
    parent = parse_traceparent([VALID])

    assert parent is not None
    assert (parent.trace_id, parent.span_id) == (int(TRACE_ID, 16), int(SPAN_ID, 16))
    assert parent.is_remote
    assert parent.trace_flags.sampled


@pytest.mark.parametrize(("flags", "sampled"), [("00", False), ("01", True), ("02", False), ("09", True), ("ff", True)])
def test_only_the_sampled_bit_of_trace_flags_is_kept(flags: str, sampled: bool) -> None:
    parent = parse_traceparent([f"00-{TRACE_ID}-{SPAN_ID}-{flags}"])

    assert parent is not None
    assert int(parent.trace_flags) == int(sampled)


def test_a_future_version_may_append_fields_after_a_dash() -> None:
    parent = parse_traceparent([f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like"])

    assert parent is not None
    assert parent.trace_id == int(TRACE_ID, 16)


INVALID_TRACEPARENTS = {
    "empty": "",
    "garbage": "not a traceparent",
    "uppercase-trace-id": f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
    "uppercase-span-id": f"00-{TRACE_ID}-{SPAN_ID.upper()}-01",
    "uppercase-flags": f"00-{TRACE_ID}-{SPAN_ID}-0A",
    "version-ff": f"ff-{TRACE_ID}-{SPAN_ID}-01",
    "version-not-hex": f"0g-{TRACE_ID}-{SPAN_ID}-01",
    "zero-trace-id": f"00-{'0' * 32}-{SPAN_ID}-01",
    "zero-span-id": f"00-{TRACE_ID}-{'0' * 16}-01",
    "short-trace-id": f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
    "long-trace-id": f"00-{TRACE_ID}0-{SPAN_ID}-01",
    "short-span-id": f"00-{TRACE_ID}-{SPAN_ID[:-1]}-01",
    "long-span-id": f"00-{TRACE_ID}-{SPAN_ID}0-01",
    "short-flags": f"00-{TRACE_ID}-{SPAN_ID}-1",
    "long-flags-version-00": f"00-{TRACE_ID}-{SPAN_ID}-011",
    "non-hex-trace-id": f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",
    "non-hex-span-id": f"00-{TRACE_ID}-{SPAN_ID[:-1]}x-01",
    "non-hex-flags": f"00-{TRACE_ID}-{SPAN_ID}-0x",
    "version-00-with-suffix": f"00-{TRACE_ID}-{SPAN_ID}-01-extra",
    "future-version-suffix-without-dash": f"cc-{TRACE_ID}-{SPAN_ID}-01extra",
    "wrong-separator": f"00_{TRACE_ID}_{SPAN_ID}_01",
}


@pytest.mark.parametrize("value", list(INVALID_TRACEPARENTS.values()), ids=list(INVALID_TRACEPARENTS))
def test_an_invalid_traceparent_starts_a_new_trace(value: str) -> None:
    assert parse_traceparent([value]) is None


def test_two_traceparent_headers_start_a_new_trace() -> None:
    other = f"00-{'a' * 32}-{'b' * 16}-01"

    assert parse_traceparent([VALID, other]) is None
    assert parse_traceparent([VALID, VALID]) is None


def test_no_traceparent_header_starts_a_new_trace() -> None:
    assert parse_traceparent([]) is None


def test_the_parsed_tracestate_travels_with_the_parent() -> None:
    state = TraceState([("congo", "t61rcWkgMzE")])

    parent = parse_traceparent([VALID], state)

    assert parent is not None
    assert parent.trace_state == state


# --- W3C tracestate -----------------------------------------------------------------------


def test_tracestate_members_keep_their_order() -> None:
    state = parse_tracestate(["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"])

    assert state is not None
    assert list(state.items()) == [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]


def test_tracestate_from_several_headers_is_one_list() -> None:
    state = parse_tracestate(["rojo=1", "congo=2"])

    assert state is not None
    assert state.to_header() == "rojo=1,congo=2"


def test_tracestate_ignores_empty_members_and_whitespace() -> None:
    state = parse_tracestate(["rojo=1 , ,\tcongo=2"])

    assert state is not None
    assert state.to_header() == "rojo=1,congo=2"


def test_tracestate_accepts_multi_tenant_keys() -> None:
    state = parse_tracestate(["tenant@vendor=x,a-b_c*d/e=y"])

    assert state is not None
    assert dict(state.items()) == {"tenant@vendor": "x", "a-b_c*d/e": "y"}


def test_tracestate_with_32_members_is_kept() -> None:
    members = ",".join(f"k{index}=v{index}" for index in range(32))

    state = parse_tracestate([members])

    assert state is not None
    assert len(state) == 32


def test_tracestate_with_33_members_is_dropped() -> None:
    members = ",".join(f"k{index}=v{index}" for index in range(33))

    assert parse_tracestate([members]) is None


INVALID_TRACESTATES = {
    "no-equals": "rojo=1,congo",
    "uppercase-key": "Rojo=1",
    "empty-value": "rojo=",
    "equals-in-value": "rojo=a=b",
    "key-starts-with-symbol": "_rojo=1",
    "key-too-long": "k" * 257 + "=1",
    "vendor-too-long": "tenant@" + "v" * 15 + "=1",
    "value-too-long": "rojo=" + "v" * 257,
    "non-ascii-value": "rojo=caf\u00e9",
}


@pytest.mark.parametrize("value", list(INVALID_TRACESTATES.values()), ids=list(INVALID_TRACESTATES))
def test_a_malformed_tracestate_member_drops_the_whole_tracestate(value: str) -> None:
    assert parse_tracestate([value]) is None


def test_a_duplicate_tracestate_key_drops_the_whole_tracestate() -> None:
    assert parse_tracestate(["rojo=1,congo=2,rojo=3"]) is None


def test_an_empty_tracestate_is_none() -> None:
    assert parse_tracestate([""]) is None


# --- the sampling decision, once per request ------------------------------------------------


@pytest.fixture
def finished() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def tracing_at(rate: float, exporter: InMemorySpanExporter) -> Tracing:
    """A Tracing on a private provider (the global one is left alone), set up like configure_tracing's."""
    provider = TracerProvider(sampler=ALWAYS_ON)
    tracing = Tracing(provider, ratio(rate))
    tracing.add_processor(SimpleSpanProcessor(exporter))
    return tracing


def start(tracing: Tracing, traceparent: str | None = None, tracestate: str | None = None) -> RequestSpan:
    """The trace of one request, as the middleware starts it."""
    return ServerSpans(tracing).start(
        [traceparent] if traceparent else [], [tracestate] if tracestate else [], [], "GET /healthz", dict
    )


def remote(sampled: bool) -> str:
    return f"00-{TRACE_ID}-{SPAN_ID}-{int(sampled):02x}"


def test_rate_0_records_no_new_trace(finished: InMemorySpanExporter) -> None:
    tracing = tracing_at(0.0, finished)

    requests = [start(tracing) for _ in range(200)]
    for request in reversed(requests):  # leaves no request trace behind for the tests after this one
        request.end(200)

    assert all(request.span is None for request in requests)  # no SDK span object at all
    assert not any(request.context.sampled for request in requests)
    assert all(request.context.trace_id and request.context.span_id for request in requests)  # still a traceparent
    assert finished.get_finished_spans() == ()


def test_rate_1_records_every_new_trace(finished: InMemorySpanExporter) -> None:
    tracing = tracing_at(1.0, finished)

    requests = [start(tracing) for _ in range(200)]
    for request in reversed(requests):  # contexts are detached in the order they were attached
        request.end(200)

    assert all(request.context.sampled for request in requests)
    recorded = finished.get_finished_spans()
    assert len(recorded) == 200
    assert {span.kind for span in recorded} == {SpanKind.SERVER}
    assert len({span.context.trace_id for span in recorded}) == 200


def test_an_inbound_sampled_flag_is_recorded_at_rate_0(finished: InMemorySpanExporter) -> None:
    tracing = tracing_at(0.0, finished)

    start(tracing, remote(sampled=True)).end(200)

    [recorded] = finished.get_finished_spans()
    assert recorded.context.trace_id == int(TRACE_ID, 16)
    assert recorded.parent is not None
    assert recorded.parent.span_id == int(SPAN_ID, 16)
    assert recorded.kind is SpanKind.SERVER


def test_an_inbound_unsampled_flag_is_not_recorded_at_rate_1(finished: InMemorySpanExporter) -> None:
    tracing = tracing_at(1.0, finished)
    request = start(tracing, remote(sampled=False), "rojo=1")
    request.end(200)

    context = request.context
    assert request.span is None
    assert finished.get_finished_spans() == ()
    # The trace continues (same trace id, a span id of our own, the caller's tracestate) unsampled.
    assert context.trace_id == int(TRACE_ID, 16)
    assert context.span_id != int(SPAN_ID, 16)
    assert not context.sampled
    assert context.trace_state == TraceState([("rojo", "1")])


def test_traceparent_of_a_span_context_is_w3c_version_00() -> None:
    context = SpanContext(int(TRACE_ID, 16), int(SPAN_ID, 16), False, TraceFlags(0xFF))

    assert traceparent(context) == f"00-{TRACE_ID}-{SPAN_ID}-01"


# --- the HTTP middleware: what goes in, what comes out ----------------------------------------


async def _ok(request: Request) -> Response:
    return PlainTextResponse("ok")


@pytest.fixture
def traced_app(finished: InMemorySpanExporter) -> ObservabilityMiddleware:
    app = Starlette(routes=[Route("/ok", _ok)])
    return ObservabilityMiddleware(
        app, routes=["/ok"], instruments=None, access_log=None, tracing=tracing_at(1.0, finished)
    )


async def get(app: ObservabilityMiddleware, path: str, headers: Sequence[tuple[str, str]] = ()) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.get(path, headers=list(headers))


def response_context(response: httpx.Response) -> SpanContext:
    [value] = response.headers.get_list("traceparent")
    parsed = parse_traceparent([value])
    assert parsed is not None, value
    return parsed


async def test_the_response_carries_the_server_spans_traceparent(
    traced_app: ObservabilityMiddleware, finished: InMemorySpanExporter
) -> None:
    response = await get(traced_app, "/ok", [("traceparent", VALID)])

    context = response_context(response)
    [server] = finished.get_finished_spans()
    assert (context.trace_id, context.span_id) == (server.context.trace_id, server.context.span_id)
    assert server.parent is not None and server.parent.span_id == int(SPAN_ID, 16)
    assert server.name == "GET /ok"
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200


async def test_an_unmatched_path_gets_a_traceparent_and_a_closed_span_name(
    traced_app: ObservabilityMiddleware, finished: InMemorySpanExporter
) -> None:
    response = await get(traced_app, "/no/such/path/12345")

    assert response.status_code == 404
    response_context(response)
    [server] = finished.get_finished_spans()
    assert server.name == "GET unmatched"


async def test_two_traceparent_headers_restart_the_trace(traced_app: ObservabilityMiddleware) -> None:
    other = f"00-{'a' * 32}-{'b' * 16}-01"

    response = await get(traced_app, "/ok", [("traceparent", VALID), ("traceparent", other)])

    assert response.status_code == 200
    assert response_context(response).trace_id not in (int(TRACE_ID, 16), int("a" * 32, 16))


async def test_a_valid_tracestate_is_echoed(traced_app: ObservabilityMiddleware) -> None:
    response = await get(traced_app, "/ok", [("traceparent", VALID), ("tracestate", "rojo=00f067aa0ba902b7,congo=t61")])

    assert response.headers["tracestate"] == "rojo=00f067aa0ba902b7,congo=t61"


async def test_an_invalid_tracestate_is_dropped_and_the_traceparent_kept(traced_app: ObservabilityMiddleware) -> None:
    too_many = ",".join(f"k{index}=v" for index in range(33))

    response = await get(traced_app, "/ok", [("traceparent", VALID), ("tracestate", too_many)])

    assert "tracestate" not in response.headers
    assert response_context(response).trace_id == int(TRACE_ID, 16)


async def test_an_unsampled_request_answers_with_flags_00(finished: InMemorySpanExporter) -> None:
    app = ObservabilityMiddleware(
        Starlette(routes=[Route("/ok", _ok)]),
        routes=["/ok"],
        instruments=None,
        access_log=None,
        tracing=tracing_at(0.0, finished),
    )

    response = await get(app, "/ok")

    assert not response_context(response).trace_flags.sampled
    assert finished.get_finished_spans() == ()


# --- dropped spans are counted, and warned about once --------------------------------------


class _FailingExporter(SpanExporter):
    def __init__(self, *, raises: bool = False) -> None:
        self.raises = raises

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.raises:
            raise ConnectionError("collector down")
        return SpanExportResult.FAILURE


def dropped(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("docserver_trace_spans_dropped_total", {"reason": reason})
    assert value is not None
    return value


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), process_collectors=False)


def spans_of(count: int) -> list[ReadableSpan]:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    spans = []
    for _ in range(count):
        span = tracer.start_span("x")
        span.end()
        spans.append(span)
    return spans  # type: ignore[return-value]


@pytest.mark.parametrize("raises", [False, True], ids=["failure-result", "exception"])
def test_failed_exports_count_every_span_and_warn_once(
    metrics: Metrics, caplog: pytest.LogCaptureFixture, raises: bool
) -> None:
    exporter = _CountingExporter(_FailingExporter(raises=raises), metrics.trace_spans_dropped.labels("export_failed"))

    with capture_events() as events:
        results = [exporter.export(spans_of(3)) for _ in range(5)]

    assert set(results) == {SpanExportResult.FAILURE}
    assert dropped(metrics, "export_failed") == 15
    assert [event["event"] for event in events] == ["trace_export_failed"]


class _BlockingExporter(SpanExporter):
    """Holds the first export until released, so the processor's queue fills behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(10)
        self.exported.extend(spans)
        return SpanExportResult.SUCCESS


def test_shutdown_is_bounded_when_the_exporter_hangs(metrics: Metrics) -> None:
    exporter = _BlockingExporter()
    provider = TracerProvider()
    tracing = Tracing(provider, sampler_named("always_on", None))
    tracing.add_batcher(SpanBatcher(exporter, BatchSettings(schedule_delay_ms=10)))
    provider.get_tracer("test").start_span("queued").end()

    started = time.monotonic()
    try:
        tracing.shutdown(timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        exporter.release.set()

    assert elapsed < 3
    assert exporter.entered.wait(5)  # the queued span was on its way out


# --- OTEL_TRACES_SAMPLER ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "argument", "rule"),
    [
        ("always_on", None, SamplingRule(1.0, parent_based=False)),
        ("always_off", None, SamplingRule(0.0, parent_based=False)),
        ("traceidratio", "0.5", SamplingRule(0.5, parent_based=False)),
        ("parentbased_always_on", None, SamplingRule(1.0)),
        ("parentbased_traceidratio", "0.25", SamplingRule(0.25)),
        ("PARENTBASED_TRACEIDRATIO", "", SamplingRule(1.0)),
    ],
)
def test_standard_sampler_names(name: str, argument: str | None, rule: SamplingRule) -> None:
    # That each rule decides as the SDK's sampler of the same name: tests/test_sampling.py.
    assert sampler_named(name, argument) == rule


@pytest.mark.parametrize(
    ("name", "argument", "variable"),
    [
        ("jaeger_remote", None, "OTEL_TRACES_SAMPLER"),
        ("traceidratio", "lots", "OTEL_TRACES_SAMPLER_ARG"),
        ("traceidratio", "1.5", "OTEL_TRACES_SAMPLER_ARG"),
        ("traceidratio", "-0.1", "OTEL_TRACES_SAMPLER_ARG"),
    ],
)
def test_a_bad_sampler_setting_is_a_config_error_naming_the_variable(
    name: str, argument: str | None, variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        sampler_named(name, argument)


# --- configure_tracing, in a process of its own ------------------------------------------------

_CONFIGURED = r"""
import json
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from docserver.observability import tracing as t
from docserver.observability.http_trace import ServerSpans
from docserver.observability.metrics import Metrics
from docserver.observability.recorded_span import CurrentSpan
from docserver.observability.sampling import ratio
from docserver.observability.tracing_setup import TracingConfig, configure_tracing

RATE, N = 0.25, 4000
metrics = Metrics(CollectorRegistry(), process_collectors=False)
tracing = configure_tracing(
    TracingConfig(service_name="svc-under-test", environment="staging", exporter="none",
                  protocol="http/protobuf", sampling=ratio(RATE)),
    metrics.trace_spans_dropped,
)
memory = InMemorySpanExporter()
processors_before = len(tracing.provider._active_span_processor._span_processors)
tracing.add_processor(SimpleSpanProcessor(memory))
out = {
    "global_is_ours": trace.get_tracer_provider() is tracing.provider,
    "processors_with_exporter_none": processors_before,
    "resource": {k: str(v) for k, v in tracing.provider.resource.attributes.items()},
}
spans = ServerSpans(tracing)

def start(traceparent=None, tracestate=None):
    return spans.start([traceparent] if traceparent else [], [tracestate] if tracestate else [], [], "POST /mcp", dict)

sampled = consistent = 0
for _ in range(N):
    request = start()
    if request.span is not None:
        sampled += 1
    consistent += request.context.sampled == (request.span is not None)
    request.end(200)
out["sampled"], out["consistent"], out["n"] = sampled, consistent, N
out["exported"] = len(memory.get_finished_spans())
memory.clear()

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
server = start(f"00-{TRACE}-00f067aa0ba902b7-01", "rojo=1")
mcp = t.recorder().start("tools/call search_docs", t.sampled_span().context, {})
with CurrentSpan(mcp) as mcp_span:
    child = t.span("cache.get search")
    with child:
        pass
    out["sampled_request"] = {
        "mcp_recording": mcp_span.is_recording(),
        "mcp_parent": format(mcp_span.parent.span_id, "016x"),
        "headers": t.trace_headers(),
        "exemplar": t.current_exemplar(),
        "ids": t.current_trace_ids(),
        "child_is_noop": child is t._NOOP,
        "mcp_span_id": format(mcp_span.get_span_context().span_id, "016x"),
    }
out["server_span_id"] = format(server.context.span_id, "016x")
server.end(200)

quiet = start(f"00-{TRACE}-00f067aa0ba902b7-00")
out["unsampled_request"] = {
    "server_span": quiet.span is not None,
    "trace_id": format(quiet.context.trace_id, "032x"),
    "ids": t.current_trace_ids(),
    "noop_shared": t.span("a") is t.span("b") is t._NOOP,
    "sampled_span": t.sampled_span() is None,
    "exemplar": t.current_exemplar(),
    "headers": t.trace_headers(),
}
quiet.end(200)
out["exported_names"] = sorted(span.name for span in memory.get_finished_spans())
tracing.shutdown()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def configured() -> dict[str, Any]:
    """What a process that called configure_tracing(exporter="none", rate 0.25) observes."""
    result = subprocess.run(
        [sys.executable, "-c", _CONFIGURED], capture_output=True, text=True, timeout=60, check=False, env=_clean_env()
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "DOCSERVER_"))}


def test_configure_tracing_installs_the_global_provider(configured: dict[str, Any]) -> None:
    assert configured["global_is_ours"]


def test_the_resource_names_service_version_and_environment(configured: dict[str, Any]) -> None:
    resource = configured["resource"]

    assert resource["service.name"] == "svc-under-test"
    assert resource["deployment.environment.name"] == "staging"
    assert resource["service.version"]


def test_exporter_none_adds_no_span_processor(configured: dict[str, Any]) -> None:
    assert configured["processors_with_exporter_none"] == 0


def test_histogram_exemplars_come_from_the_current_span_when_tracing_is_on() -> None:
    assert new_metrics(
        load_settings(telemetry={"otlp_endpoint": "http://127.0.0.1:4318"}), CollectorRegistry()
    ).exemplar is (current_exemplar)
    assert new_metrics(load_settings(), CollectorRegistry()).exemplar() is None


def test_an_exemplar_is_of_the_request_trace_and_of_a_meta_reparented_one_inside_it() -> None:
    # current_exemplar answers from the request's record, made once: it must follow an MCP
    # span that `_meta` reparents into another trace, and come back when that span ends.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    from docserver.mcp.observe import _Current
    from docserver.observability import tracing as t
    from docserver.observability.recorded_span import SpanRecorder

    recorder = SpanRecorder(Resource.create({}), InstrumentationScope("test"))
    http = recorder.start("POST /mcp", None, {})
    http_trace = {"trace_id": format(http.get_span_context().trace_id, "032x")}
    request = t.enter_request(t.TraceContext.of(http.get_span_context()))
    current = t.enter_span(http)
    try:
        assert current_exemplar() == http_trace
        meta_parent = parse_traceparent([VALID])
        with _Current(recorder.start("tools/call search_docs", meta_parent, {}), reparented=True):
            assert current_exemplar() == {"trace_id": TRACE_ID}
        assert current_exemplar() == http_trace
    finally:
        t.leave_span(current)
        t.leave_request(request)
    assert current_exemplar() is None  # no request, no span: the current one is invalid


def test_rate_025_samples_a_quarter_of_new_traces(configured: dict[str, Any]) -> None:
    n, sampled = configured["n"], configured["sampled"]
    sigma = (n * 0.25 * 0.75) ** 0.5

    assert abs(sampled - n * 0.25) <= 4 * sigma
    assert configured["exported"] == sampled


def test_the_decision_the_middleware_takes_is_the_one_the_provider_records(configured: dict[str, Any]) -> None:
    # The sampler runs once, in the middleware: a sampled request gets a recording span,
    # an unsampled one none at all, and the provider never decides again.
    assert configured["consistent"] == configured["n"]


def test_a_span_nests_under_a_sampled_server_span(configured: dict[str, Any]) -> None:
    request = configured["sampled_request"]

    assert request["mcp_recording"]
    assert request["mcp_parent"] == configured["server_span_id"]
    assert not request["child_is_noop"]
    assert request["exemplar"] == {"trace_id": TRACE_ID}
    assert request["ids"] == [TRACE_ID, request["mcp_span_id"]]


def test_outbound_headers_carry_the_current_span_and_tracestate(configured: dict[str, Any]) -> None:
    headers = configured["sampled_request"]["headers"]

    assert headers["traceparent"] == f"00-{TRACE_ID}-{configured['sampled_request']['mcp_span_id']}-01"
    assert headers["tracestate"] == "rojo=1"


def test_an_unsampled_request_records_nothing_below_it(configured: dict[str, Any]) -> None:
    request = configured["unsampled_request"]

    assert not request["server_span"]  # no SDK span object at all
    assert request["trace_id"] == TRACE_ID
    assert request["ids"][0] == TRACE_ID  # logs still carry the propagated trace
    assert request["noop_shared"]
    assert request["sampled_span"]
    assert request["exemplar"] is None
    assert request["headers"]["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert request["headers"]["traceparent"].endswith("-00")
    assert configured["exported_names"] == ["POST /mcp", "cache.get search", "tools/call search_docs"]


@pytest.fixture(autouse=True)
def _no_global_provider_change() -> Iterator[None]:
    """Guard: no test in this module may install a global tracer provider in the pytest process."""
    from opentelemetry import trace

    before = trace.get_tracer_provider()
    yield
    assert trace.get_tracer_provider() is before


def test_no_collector_named_means_no_tracing() -> None:
    assert not load_settings().telemetry.tracing_enabled
    assert load_settings(telemetry={"otlp_endpoint": "http://127.0.0.1:4318"}).telemetry.tracing_enabled
    assert load_settings(telemetry={"traces_exporter": "console"}).telemetry.tracing_enabled
    disabled = {"otlp_endpoint": "http://127.0.0.1:4318", "otel_sdk_disabled": True}
    assert not load_settings(telemetry=disabled).telemetry.tracing_enabled
