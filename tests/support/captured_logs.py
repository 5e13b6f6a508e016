"""Logs in tests: structlog events captured as dicts, or the real pipeline configured and then undone."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, TextIO

import structlog

from docserver.observability.logging import configure_logging, reset_logging
from docserver.observability.logwriter import LogWriter

LIBRARY_LOGGERS = ("mcp", "httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "psycopg")
"""The stdlib loggers configure_logging changes, restored afterwards."""

_LAZY_PROXY = type(structlog.get_logger())
"""structlog's lazy proxy class, found through its public API rather than a private import."""


def forget_cached_loggers() -> None:
    """Module-level structlog loggers cache their configuration on first use; drop those caches."""
    for name, module in list(sys.modules.items()):
        if name.startswith("docserver") and module is not None:
            for value in vars(module).values():
                if isinstance(value, _LAZY_PROXY):
                    vars(value).pop("bind", None)


@contextmanager
def capture_events() -> Iterator[list[dict[str, Any]]]:
    forget_cached_loggers()
    try:
        with structlog.testing.capture_logs() as events:
            yield events
    finally:
        forget_cached_loggers()


@contextmanager
def logging_configured(stream: BinaryIO | TextIO, **options: Any) -> Iterator[LogWriter]:
    """configure_logging(stream, **options) for the block; every logger as it was afterwards."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved = {name: logging.getLogger(name) for name in LIBRARY_LOGGERS}
    saved_state = {name: (logger.handlers[:], logger.level, logger.propagate) for name, logger in saved.items()}
    forget_cached_loggers()
    writer = configure_logging(stream=stream, **options)
    try:
        yield writer
    finally:
        writer.close()
        reset_logging()
        forget_cached_loggers()
        logging.captureWarnings(False)
        root.handlers[:], level = saved_root
        root.setLevel(level)
        for name, (handlers, level, propagate) in saved_state.items():
            saved[name].handlers[:] = handlers
            saved[name].setLevel(level)
            saved[name].propagate = propagate
