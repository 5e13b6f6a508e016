"""The OTLP/HTTP span exporter, sending docserver's own encoding of the spans (an SDK adapter).

The OpenTelemetry exporter has no hook for its encoding, which costs more
than the spans it encodes (`bench/span_cost.py`). `LeanOtlpSpanExporter`
keeps everything else of it (endpoint, headers, compression, timeout, TLS
and retries, from the standard OTEL_EXPORTER_OTLP_* variables) and hands
its HTTP client the bytes of otlp_encoding.py instead. Imported only when
tracing exports over OTLP/HTTP. Written against
opentelemetry-exporter-otlp-proto-http 1.45 (pinned in pyproject.toml);
`tests/test_sdk_contracts.py` fails when these names change.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from docserver.observability.otlp_encoding import encode_request
from docserver.observability.recorded_span import RecordedSpan

PRIVATE_NAMES = ("_shutdown", "_client", "_max_request_size")
"""The exporter attributes read below (`_client.export(bytes)` returns a result with `.success`)."""

log = logging.getLogger("docserver.tracing")


class LeanOtlpSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, sending docserver's encoding of the spans."""

    encodes_recorded = True
    """Takes docserver's recorded spans as they are (otlp_encoding.encode_request), not only `ReadableSpan`s."""

    def export(self, spans: Sequence[ReadableSpan | RecordedSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            body = encode_request(spans)
        except Exception as exc:  # one bad attribute value must not stop the exporter thread
            log.warning("span batch not encoded (%s): %d spans dropped", type(exc).__name__, len(spans))
            return SpanExportResult.FAILURE
        if self._max_request_size is not None and len(body) > self._max_request_size:
            log.warning("span batch of %d bytes over the exporter's limit: %d spans dropped", len(body), len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self._client.export(body).success else SpanExportResult.FAILURE
