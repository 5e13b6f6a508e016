"""Logging set-up: done once, at start-up, before anything logs."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from docserver.config import Settings


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's, the MCP SDK's) to one handler at LOG_LEVEL."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # The SDK logs every session's creation and every tool failure at INFO.
    logging.getLogger("mcp").setLevel(max(logging.WARNING, root.level))
