"""Saying so when there is nothing to search: at start-up, on /readyz and in an empty search result.

A server started against the wrong database (another working directory, a
volume that was never filled) answers every search with nothing. These are
the places where that shows, each carrying the same hint (the empty search_docs
result is built in mcp/tools.py).
"""

from __future__ import annotations

from typing import Any

from docserver.config import Settings, redact_url
from docserver.errors import DocserverError
from docserver.observability.logging import get_logger
from docserver.runtime import Runtime
from docserver.search import SearchService

log = get_logger(__name__)

EMPTY_STORE_HINT = "no documentation is indexed; run docserver ingest"


async def store_is_empty(service: SearchService) -> bool:
    """True when no source is indexed; a store that cannot answer is reported elsewhere, not as empty."""
    try:
        return not await service.list_sources()
    except DocserverError:
        return False


async def log_store_at_start(settings: Settings, runtime: Runtime) -> None:
    """Name the database in the log, and warn when it holds no documentation."""
    log.info("store_location", backend=runtime.store.backend, database=redact_url(settings.store.url))
    if runtime.store_problem is None and await store_is_empty(runtime.service):
        log.warning("store_empty", backend=runtime.store.backend, hint=EMPTY_STORE_HINT)


async def readiness_details(service: SearchService) -> dict[str, Any]:
    """Extra /readyz fields: the hint when nothing is indexed (still ready: the store answers)."""
    if await store_is_empty(service):
        return {"documents": 0, "hint": EMPTY_STORE_HINT}
    return {}
