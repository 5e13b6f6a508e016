"""What one observation of each signal costs, in instructions (docs/performance.md, docs/observability.md).

    python bench/span_cost.py [--out bench/results/span_cost.json]

Each operation runs N and 3N times in a fresh interpreter under
`valgrind --tool=callgrind`; the difference of the two totals over 2N is
one operation's cost, start-up excluded, and an empty loop's cost is
subtracted. Operations: a prometheus_client counter and histogram against
docserver's lean families, a correlation id, a fast-path log line, an SDK
span against a recorded server span (each handed to a span processor), a
child span made current while it runs (a store query's) by the SDK's tracer
and by docserver's `tracing.span`, a histogram's exemplar inside a sampled
request (less entering and leaving the request, measured alone), and
the OTLP encoding of one span as the SDK's exporter does it and as docserver's
exporter does it (otlp_encoding.py), of an SDK span and of a recorded one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import callgrind_total, per_call

SETUP = r"""
import io, sys, time
from prometheus_client import CollectorRegistry, Counter, Histogram
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind
from docserver.observability.correlation import new_correlation_id
from docserver.observability.lean import LeanCounter, LeanHistogram
from docserver.observability.otlp_encoding import encode_request
from docserver.observability.logging import active_log_writer, configure_logging, event_line
from docserver.observability.recorded_span import SpanRecorder
from docserver.observability import tracing
from opentelemetry.context import attach
from opentelemetry.trace import set_span_in_context

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
registry = CollectorRegistry()
counter = Counter("c", "c", ["a", "b"], registry=registry).labels("x", "y")
histogram = Histogram("h", "h", ["a"], buckets=BUCKETS, registry=registry).labels("x")
lean_counter = LeanCounter("lc", "c", ["a", "b"], registry).labels("x", "y")
lean_histogram = LeanHistogram("lh", "h", ["a"], registry, buckets=BUCKETS).labels("x")

class Discard(SpanExporter):
    def export(self, spans): return SpanExportResult.SUCCESS

provider = TracerProvider()
processor = SimpleSpanProcessor(Discard())
provider.add_span_processor(processor)
tracer = provider.get_tracer("docserver")
recorder = SpanRecorder(provider.resource, InstrumentationScope("docserver"))
# Recorded spans go where the server sends them: its export queue (exporting to Discard).
try:
    from docserver.observability.span_export import BatchSettings, SpanBatcher
    recorder.add_sink(SpanBatcher(Discard(), BatchSettings()).add)
except ImportError:  # a tree before span_export.py (for a before/after comparison)
    from docserver.observability.otel_sdk import CountingBatchProcessor
    recorder.add_processor(CountingBatchProcessor(Discard(), None))
ATTRIBUTES = {"http.request.method": "POST", "http.route": "/mcp", "url.path": "/mcp", "url.scheme": "http",
              "network.protocol.version": "1.1", "docserver.correlation_id": new_correlation_id()}

def sdk_span():
    span = tracer.start_span("POST /mcp", kind=SpanKind.SERVER, attributes=ATTRIBUTES)
    span.set_attribute("http.response.status_code", 200)
    span.end()

def recorded_span():
    span = recorder.start("POST /mcp", None, dict(ATTRIBUTES))
    span.set_attribute("http.response.status_code", 200)
    span.end()

# A child span as a store query makes one, under a current sampled server span.
STORE = {"db.system.name": "sqlite", "db.operation.name": "search_text", "db.collection.name": "chunks"}
tracing.install(lambda parent: True, recorder)
server = recorder.start("tools/call search_docs", None, {})
if hasattr(tracing, "enter_span"):
    tracing.enter_span(server)
else:  # a tree whose current span lived in OpenTelemetry's context
    attach(set_span_in_context(server))

def sdk_child_span():
    with tracer.start_as_current_span("search_text chunks", kind=SpanKind.CLIENT, attributes=STORE):
        pass

def recorded_child_span():
    with tracing.span("search_text chunks", SpanKind.CLIENT, STORE):
        pass

# A histogram's exemplar inside a sampled request (under the server span above).
request = tracing.TraceContext.of(server.get_span_context())

def exemplar_in_request():
    token = tracing.enter_request(request)
    tracing.current_exemplar()
    tracing.leave_request(token)

def request_alone():
    tracing.leave_request(tracing.enter_request(request))

finished = []
for _ in range(100):
    span = tracer.start_span("POST /mcp", kind=SpanKind.SERVER, attributes=ATTRIBUTES)
    span.set_attribute("http.response.status_code", 200)
    span.end()
    finished.append(span)

class Keep:
    def __init__(self): self.spans = []
    def on_end(self, span): self.spans.append(span)

keep = Keep()
keeping = SpanRecorder(provider.resource, InstrumentationScope("docserver"))
if hasattr(keeping, "add_sink"):
    keeping.add_sink(keep.on_end)  # the recorded spans as the export queue hands them over
else:
    keeping.add_processor(keep)
for _ in range(100):
    span = keeping.start("POST /mcp", None, dict(ATTRIBUTES))
    span.set_attribute("http.response.status_code", 200)
    span.end()

def encode_100():
    encode_spans(finished).SerializePartialToString()

def lean_encode_100():
    encode_request(finished)

def lean_encode_recorded_100():
    encode_request(keep.spans)

configure_logging(level="INFO", stream=io.BytesIO(), environment="bench")
access = event_line("http_request", "docserver.http", scan=("path",))
FIELDS = {"method": "POST", "route": "/mcp", "path": "/mcp", "status_code": 200, "duration_ms": 1.25}
writer = active_log_writer()

def lone_line():
    writer.put(b'{"event": "http_request"}')
    writer.flush()

OPERATIONS = {
    "loop": lambda: None,
    "prometheus_client counter inc": counter.inc,
    "lean counter inc": lean_counter.inc,
    "prometheus_client histogram observe": lambda: histogram.observe(0.0012),
    "lean histogram observe": lambda: lean_histogram.observe(0.0012),
    "correlation id": new_correlation_id,
    "access log line (fast path)": lambda: access(dict(FIELDS)),
    "a line alone: the writer woken, the write, a flush": lone_line,
    "SDK span (start, attribute, end)": sdk_span,
    "recorded server span (start, attribute, end)": recorded_span,
    "SDK child span, current while it runs (start_as_current_span)": sdk_child_span,
    "recorded child span, current while it runs (tracing.span)": recorded_child_span,
    "exemplar in a sampled request (with entering and leaving it)": exemplar_in_request,
    "entering and leaving a request alone": request_alone,
    "OTLP encoding, per span (x100)": encode_100,
    "docserver's OTLP encoding, per span (x100)": lean_encode_100,
    "docserver's OTLP encoding, per recorded span (x100)": lean_encode_recorded_100,
}
operation = OPERATIONS[sys.argv[1]]
for _ in range(int(sys.argv[2])):
    operation()
"""

RUNS = {
    "a line alone: the writer woken, the write, a flush": (100, 300),
    "OTLP encoding, per span (x100)": (20, 60),
    "docserver's OTLP encoding, per span (x100)": (20, 60),
    "docserver's OTLP encoding, per recorded span (x100)": (20, 60),
}
DIVIDE = {
    "OTLP encoding, per span (x100)": 100,
    "docserver's OTLP encoding, per span (x100)": 100,
    "docserver's OTLP encoding, per recorded span (x100)": 100,
}
NAMES = [
    "loop",
    "prometheus_client counter inc",
    "lean counter inc",
    "prometheus_client histogram observe",
    "lean histogram observe",
    "correlation id",
    "access log line (fast path)",
    "a line alone: the writer woken, the write, a flush",
    "SDK span (start, attribute, end)",
    "recorded server span (start, attribute, end)",
    "SDK child span, current while it runs (start_as_current_span)",
    "recorded child span, current while it runs (tracing.span)",
    "exemplar in a sampled request (with entering and leaving it)",
    "entering and leaving a request alone",
    "OTLP encoding, per span (x100)",
    "docserver's OTLP encoding, per span (x100)",
    "docserver's OTLP encoding, per recorded span (x100)",
]


def cost(name: str, work: Path) -> float:
    calls = RUNS.get(name, (1000, 3000))
    totals = tuple(callgrind_total([sys.executable, "-c", SETUP, name, str(count)], work) for count in calls)
    return per_call((totals[0], totals[1]), calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/span_cost.json"))
    parser.add_argument("--operations", nargs="+", choices=NAMES[1:], default=NAMES[1:])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="docserver-span-cost-"))
    loop = cost("loop", work)
    rows = []
    for name in args.operations:
        instructions = cost(name, work)
        if name not in DIVIDE:
            instructions -= loop
        else:
            instructions /= DIVIDE[name]
        rows.append({"operation": name.replace(" (x100)", ""), "instructions": round(instructions)})
        print(f"| {rows[-1]['operation']} | {instructions / 1000:,.1f} k |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
