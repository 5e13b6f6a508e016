"""settings.telemetry: the kill switch, logs and slow-call warnings, tracing (OTEL_*) and /metrics."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import PositiveFloat, PositiveInt, SecretStr

from docserver.config.fields import LOWERCASE, UPPERCASE, Group, env

Exporter = Annotated[Literal["otlp", "console", "none"] | None, LOWERCASE]
Protocol = Annotated[Literal["http/protobuf", "grpc"], LOWERCASE]


class TelemetrySettings(Group):
    switch: Annotated[Literal["on", "off"], LOWERCASE] = env("DOCSERVER_TELEMETRY", "on")
    """`off` is the kill switch: no request metrics, no spans, no exporter threads, logs at WARNING."""
    metrics_token: SecretStr | None = env("METRICS_TOKEN", None)
    """When set, /metrics requires `Authorization: Bearer <token>`."""
    environment: str = env("DOCSERVER_ENVIRONMENT", "development")
    """Deployment environment name, e.g. `production`."""
    service_name: str = env("OTEL_SERVICE_NAME", "docserver", min_length=1)
    """Service name on every log line, span and in build info."""
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], UPPERCASE] = env("LOG_LEVEL", "INFO")
    """Lowest level of log line written."""
    log_format: Annotated[Literal["json", "console"], LOWERCASE] = env("LOG_FORMAT", "json")
    """`json` (one object per line) or `console` (readable, coloured on a terminal)."""
    log_queries: bool = env("LOG_QUERIES", False)
    """Log search queries verbatim. Off: only their length and a hash."""
    trace_enduser: bool = env("DOCSERVER_TRACE_ENDUSER", True)
    """Put the authenticated caller's name (token name or OAuth subject, never the token) on the HTTP
    and MCP server spans as `enduser.id`. `false` keeps it out of traces; log lines still name it."""
    slow_query_ms: PositiveFloat = env("DOCSERVER_SLOW_QUERY_MS", 250.0)
    """A store query slower than this logs a warning."""
    slow_embedding_ms: PositiveFloat = env("DOCSERVER_SLOW_EMBEDDING_MS", 2000.0)
    """An embedding batch slower than this per text in it logs a warning (a query is a batch of one)."""
    otel_sdk_disabled: bool = env("OTEL_SDK_DISABLED", False)
    """`true` turns tracing off entirely: no provider, no spans, no exporter thread."""
    trace_sample_rate: float = env("OTEL_TRACE_SAMPLE_RATE", 0.1, ge=0.0, le=1.0)
    """Fraction of new traces recorded (parent-based ratio sampler); an inbound sampled flag wins."""
    traces_sampler: str | None = env("OTEL_TRACES_SAMPLER", None)
    """Standard OpenTelemetry sampler name (e.g. `parentbased_traceidratio`); overrides the rate."""
    traces_sampler_arg: str | None = env("OTEL_TRACES_SAMPLER_ARG", None)
    """Argument of OTEL_TRACES_SAMPLER."""
    traces_exporter: Exporter = env("OTEL_TRACES_EXPORTER", None)
    """`otlp` (to a collector or Jaeger), `console` (stdout, for debugging) or `none` (sampled, ids in logs and
    exemplars, nothing exported). Tracing starts only when this or OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    otlp_protocol: Protocol = env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    """OTLP transport: `http/protobuf` (port 4318) or `grpc` (port 4317)."""
    otlp_endpoint: str | None = env("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    """Collector base URL, e.g. `http://jaeger:4318`; setting it turns tracing on (OTLP)."""
    batch_schedule_delay_ms: PositiveInt = env("OTEL_BSP_SCHEDULE_DELAY", 5000)
    """Spans waiting for export leave at least this often (ms)."""
    batch_max_queue_size: PositiveInt = env("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
    """At most this many finished spans wait for export; more are dropped and counted."""
    batch_max_export_size: PositiveInt = env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
    """Spans in one export request; a full batch leaves at once."""

    @property
    def enabled(self) -> bool:
        return self.switch == "on"

    @property
    def tracing_enabled(self) -> bool:
        """Tracing starts only towards a collector that was named: a laptop without one exports nothing."""
        named = self.otlp_endpoint is not None or self.traces_exporter is not None
        return self.enabled and not self.otel_sdk_disabled and named
