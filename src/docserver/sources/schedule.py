"""`serve` refreshing every source from its recorded origin, on a schedule (DOCSERVER_REFRESH_INTERVAL).

The refresh runs in the server's event loop between requests, one source at
a time; the store lets one process write a source at a time, so replicas on
the same schedule take turns, and a source whose origin has not moved is
`unchanged` without re-embedding. Each outcome is counted
(`docserver_source_refresh_total{result}`); the time of the last success is in
the store, where /metrics reads it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

from docserver.errors import DocserverError
from docserver.observability.logging import get_logger
from docserver.sources.service import Sources

log = get_logger("docserver.sources")


class RefreshSchedule:
    def __init__(self, sources: Sources, interval: float) -> None:
        self._sources = sources
        self._interval = interval

    async def run(self) -> None:
        """Refresh every `interval` seconds (give or take a tenth, so replicas drift apart) until cancelled."""
        while True:
            await asyncio.sleep(self._interval * random.uniform(0.9, 1.1))
            await self.run_once()

    async def run_once(self) -> Counter[str]:
        """One pass over every refreshable source; the count of outcomes by result."""
        try:
            outcomes = await self._sources.refresh()
        except DocserverError as exc:  # the store is down: the next pass tries again
            log.warning("scheduled_refresh_failed", error=str(exc))
            return Counter({"failed": 1})
        results = Counter(outcome.result for outcome in outcomes)
        log.info("scheduled_refresh_finished", sources=len(outcomes), **results)
        return results
