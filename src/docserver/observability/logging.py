"""Structured logs: one JSON object per line, the same pipeline for our code and every library.

The pipeline is built once at start-up (structlog processors); choices such
as the renderer are made then, not per call. Request context (the
correlation id) lives in contextvars, so it reaches every layer and every
task spawned during a request. Lines are handed to a writer thread: a slow,
full or closed stdout never blocks or breaks a request (see LogWriter).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO, TextIO

import orjson
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from docserver import __version__
from docserver.observability.context import current_correlation_id
from docserver.observability.eventline import EventLine, FastEventLine, discard, structlog_event_line
from docserver.observability.logwriter import LogWriter
from docserver.observability.redaction import Redactor
from docserver.observability.timestamps import rfc3339_now

RESERVED_KEYS = frozenset(
    {
        "timestamp",
        "event",
        "level",
        "logger",
        "service_name",
        "service_version",
        "environment",
        "correlation_id",
        "trace_id",
        "span_id",
    }
)

_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}

TraceIds = Callable[[], tuple[str, str] | None]
"""Returns (trace_id, span_id) as lowercase hex for the active span, or None."""


class _SinkLogger:
    """What structlog wraps: takes a rendered line and hands it to the writer."""

    __slots__ = ("_put", "name")

    def __init__(self, name: str, put: Callable[[bytes], None]) -> None:
        self.name = name
        self._put = put

    def msg(self, message: bytes | str) -> None:
        self._put(message if isinstance(message, bytes) else message.encode())

    debug = info = warning = warn = error = critical = exception = fatal = msg


class _SinkLoggerFactory:
    def __init__(self, put: Callable[[bytes], None]) -> None:
        self._put = put

    def __call__(self, *args: Any) -> _SinkLogger:
        return _SinkLogger(str(args[0]) if args else "docserver", self._put)


def _protect_reserved(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Event data may not overwrite a reserved field: a clashing key is kept under `<key>_`."""
    for key in RESERVED_KEYS.intersection(event_dict):
        if key != "event":  # structlog puts the event itself there
            event_dict[f"{key}_"] = event_dict.pop(key)
    return event_dict


_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _add_record_extras(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """`extra={...}` of a stdlib call, as fields; a reserved name is kept under `<key>_`."""
    record = event_dict.get("_record")
    if record is not None:
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                event_dict[f"{key}_" if key in RESERVED_KEYS else key] = value
    return event_dict


def _add_timestamp(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    event_dict["timestamp"] = rfc3339_now()
    return event_dict


def _redaction(redactor: Redactor) -> Processor:
    def redact(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        return redactor.redact_mapping(event_dict)

    return redact


_DROPPED_KEYS = ("color_message",)  # uvicorn's ANSI-coloured copy of the message
_LEADING_KEYS = ("timestamp", "level", "event", "logger")


def _json_renderer() -> Processor:
    dumps = orjson.dumps
    option = orjson.OPT_NON_STR_KEYS

    def render(logger: WrappedLogger, method: str, event_dict: EventDict) -> bytes:
        # The fields a person scans for come first; None values are left out.
        line = {key: event_dict.pop(key, None) for key in _LEADING_KEYS}
        for key in _DROPPED_KEYS:
            event_dict.pop(key, None)
        line.update((key, value) for key, value in event_dict.items() if value is not None)
        return dumps(line, default=repr, option=option)

    return render


def _shared_processors(
    service_name: str, environment: str, redactor: Redactor, trace_ids: TraceIds | None
) -> list[Processor]:
    # Redaction runs first, over what the call supplied; the fields added
    # after it (ids, timestamps, service fields) are ours and need no scan.
    return [
        _protect_reserved,
        _exceptions(),
        _redaction(redactor),
        _context_fields(service_name, environment, trace_ids),
    ]


def _exceptions() -> Processor:
    # Frames without their local variables: locals carry queries and
    # secrets, and cost a lot to render.
    renderer = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))

    def render_exception(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        return renderer(logger, method, event_dict) if "exc_info" in event_dict else event_dict

    return render_exception


def _context_fields(service_name: str, environment: str, trace_ids: TraceIds | None) -> Processor:
    """Every field docserver adds to a line, in one step: this runs for every line, so calls count."""
    fields = {"service_name": service_name, "service_version": __version__, "environment": environment}

    def add_context(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        correlation_id = current_correlation_id()
        if correlation_id is not None:
            event_dict["correlation_id"] = correlation_id
        event_dict["level"] = "warning" if method == "warn" else method
        record = event_dict.get("_record")
        event_dict["logger"] = record.name if record is not None else getattr(logger, "name", "docserver")
        _add_timestamp(logger, method, event_dict)
        event_dict.update(fields)
        if trace_ids is not None:
            ids = trace_ids()
            if ids is not None:
                event_dict["trace_id"], event_dict["span_id"] = ids
        return event_dict

    return add_context


class _BridgeHandler(logging.Handler):
    """Sends stdlib records (uvicorn, asyncio, the MCP SDK, httpx) through our pipeline."""

    def __init__(self, formatter: logging.Formatter, put: Callable[[bytes], None]) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self._put = put

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a broken log call must not break the caller
            self.handleError(record)
            return
        self._put(line.encode())


def configure_logging(
    *,
    level: str = "INFO",
    log_format: str = "json",
    service_name: str = "docserver",
    environment: str = "development",
    stream: BinaryIO | TextIO | None = None,
    secrets: Iterable[str] = (),
    trace_ids: TraceIds | None = None,
) -> LogWriter:
    """Build the pipeline once and route every logger through it; returns the writer to close at exit."""
    global _active_writer, _event_lines
    raw = stream if stream is not None else sys.stdout
    writer = LogWriter(raw)
    _active_writer = writer
    redactor = Redactor(secrets)
    shared = _shared_processors(service_name, environment, redactor, trace_ids)
    renderer: Processor
    if log_format == "console":
        colors = bool(getattr(raw, "isatty", lambda: False)())
        renderer = structlog.dev.ConsoleRenderer(colors=colors, event_key="event", timestamp_key="timestamp")
    else:
        renderer = _json_renderer()
    numeric = _LEVELS.get(level.upper(), logging.INFO)

    if log_format == "console":
        _event_lines = _slow_event_lines
    else:
        _event_lines = functools.partial(
            FastEventLine,
            put=writer.put,
            redactor=redactor,
            service_name=service_name,
            environment=environment,
            trace_ids=trace_ids,
        )
    if numeric > logging.INFO:
        _event_lines = _no_event_lines

    structlog.reset_defaults()
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_SinkLoggerFactory(writer.put),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_add_record_extras, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _to_text(renderer)],
    )
    root = logging.getLogger()
    root.handlers[:] = [_BridgeHandler(formatter, writer.put)]
    root.setLevel(numeric)
    # Libraries that are chatty at INFO about routine events (every session,
    # every tool failure, every outbound request): warnings and up only.
    for name in ("mcp", "httpx", "httpcore", "uvicorn.access", "psycopg"):
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
    logging.getLogger("uvicorn").handlers.clear()
    logging.getLogger("uvicorn.error").handlers.clear()
    logging.getLogger("uvicorn").propagate = True
    logging.captureWarnings(True)
    return writer


def _to_text(renderer: Processor) -> Processor:
    """ProcessorFormatter wants str; the JSON renderer returns bytes."""

    def render(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        out = renderer(logger, method, event_dict)
        return out.decode() if isinstance(out, bytes) else str(out)

    return render


_active_writer: LogWriter | None = None


def _slow_event_lines(event: str, logger: str, scan: tuple[str, ...] = ()) -> EventLine:
    return structlog_event_line(event, get_logger(logger))


def _no_event_lines(event: str, logger: str, scan: tuple[str, ...] = ()) -> EventLine:
    return discard


_event_lines: Callable[..., EventLine] = _slow_event_lines


def reset_logging() -> None:
    """Forget the configured pipeline: structlog's defaults, and every hot event through structlog again.

    For a process that configures logging more than once (the tests): a hot event
    line chosen for an earlier pipeline would still write to that pipeline's writer.
    """
    global _event_lines, _active_writer
    structlog.reset_defaults()
    _event_lines = _slow_event_lines
    _active_writer = None


def event_line(event: str, logger: str, *, scan: tuple[str, ...] = ()) -> EventLine:
    """A writer for one frequent INFO event, chosen once for the configured pipeline (see eventline.py).

    `scan`: the fields that may carry outside text, redacted on the fast path.
    """
    return _event_lines(event, logger, scan=scan)


def active_log_writer() -> LogWriter | None:
    """The writer of the current pipeline (its drop count is a metric)."""
    return _active_writer


def get_logger(name: str) -> Any:
    """A structlog logger whose lines carry `logger=name`."""
    return structlog.get_logger(name)
