"""Capture structlog events in process, as dicts (`event`, `log_level` and the fields)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from structlog._config import BoundLoggerLazyProxy


def _forget_cached_loggers() -> None:
    """Module-level structlog loggers cache their configuration on first use; drop those caches."""
    for name, module in list(sys.modules.items()):
        if name.startswith("docserver") and module is not None:
            for value in vars(module).values():
                if isinstance(value, BoundLoggerLazyProxy):
                    vars(value).pop("bind", None)


@contextmanager
def capture_events() -> Iterator[list[dict[str, Any]]]:
    _forget_cached_loggers()
    try:
        with structlog.testing.capture_logs() as events:
            yield events
    finally:
        _forget_cached_loggers()
