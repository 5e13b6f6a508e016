"""The hot events (one access line per request, one line per tool call) on a fast path.

structlog's pipeline costs tens of microseconds a line: a bound logger, a
chain of processors, a dict rebuilt for ordering. The two events written on
every request take this path instead: the static fields are rendered once,
the line is one dict and one `orjson.dumps`, and it goes to the same writer
thread. The fields, their order and the redaction are those of the pipeline
(`logging.py`), so a reader cannot tell the two apart. With console output
or a level above INFO, the choice is made once: the event goes through
structlog, or nowhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from docserver import __version__
from docserver.observability.context import current_correlation_id
from docserver.observability.redaction import Redactor
from docserver.observability.timestamps import rfc3339_now

EventLine = Callable[[dict[str, Any]], None]
"""Writes one occurrence of a fixed event, given its fields (None values are left out)."""


class FastEventLine:
    """One event, one logger, rendered straight to the log writer.

    `scan` names the fields that may carry text from outside (a path, a
    query): only those are scanned for secrets; the others are numbers or
    values from closed sets, as the redactor itself treats them.
    """

    __slots__ = ("_event", "_logger", "_put", "_redactor", "_scan", "_static", "_trace_ids")

    def __init__(
        self,
        event: str,
        logger: str,
        *,
        put: Callable[[bytes], None],
        redactor: Redactor,
        service_name: str,
        environment: str,
        trace_ids: Callable[[], tuple[str, str] | None] | None,
        scan: tuple[str, ...] = (),
    ) -> None:
        self._event = event
        self._scan = scan
        self._logger = logger
        self._put = put
        self._redactor = redactor
        self._static = {"service_name": service_name, "service_version": __version__, "environment": environment}
        self._trace_ids = trace_ids

    def __call__(self, fields: dict[str, Any]) -> None:
        line: dict[str, Any] = {
            "timestamp": rfc3339_now(),
            "level": "info",
            "event": self._event,
            "logger": self._logger,
        }
        for key in self._scan:  # the event's only free-text fields; the rest come from closed sets
            value = fields.get(key)
            if isinstance(value, str):
                fields[key] = self._redactor.redact_text(value)
        for key, value in fields.items():  # a plain loop: a generator costs a call per field
            if value is not None:
                line[key] = value
        correlation_id = current_correlation_id()
        if correlation_id is not None:
            line["correlation_id"] = correlation_id
        line.update(self._static)
        if self._trace_ids is not None and (ids := self._trace_ids()) is not None:
            line["trace_id"], line["span_id"] = ids
        self._put(orjson.dumps(line, default=repr))


def structlog_event_line(event: str, logger: Any, scan: tuple[str, ...] = ()) -> EventLine:
    """The same event through the full structlog pipeline (console output)."""

    def write(fields: dict[str, Any]) -> None:
        logger.info(event, **fields)

    return write


def discard(fields: dict[str, Any]) -> None:
    """The event is below the configured level."""
