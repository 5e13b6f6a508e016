"""In-flight slots with a small, bounded, first-come waiting room.

`acquire` answers at once when a slot is free or the waiting room is full,
so a request beyond capacity costs almost nothing; a queued request waits at
most `timeout` seconds. A freed slot is handed straight to the oldest waiter.
"""

from __future__ import annotations

import asyncio
from collections import deque

from docserver.observability.instruments import AdmissionInstruments


class Slots:
    """At most `limit` holders at once, and at most `queue_size` waiting for one."""

    def __init__(
        self, limit: int, queue_size: int, timeout: float, instruments: AdmissionInstruments | None = None
    ) -> None:
        self.limit = limit
        self.queue_size = queue_size
        self.timeout = timeout
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._instruments = instruments

    @property
    def in_flight(self) -> int:
        return self.limit - self._free

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> bool:
        """True once the caller holds a slot (it must `release` it); False when refused."""
        if self._free > 0:
            self._free -= 1
            if self._instruments is not None:
                self._instruments.in_flight.inc()
            return True
        if len(self._waiters) >= self.queue_size:
            return False
        return await self._wait()

    def release(self) -> None:
        """Frees a slot: the oldest waiter gets it, else it becomes free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            self._count_queued(-1)
            if not waiter.done():
                waiter.set_result(None)  # handed over: still in flight
                return
        self._free += 1
        if self._instruments is not None:
            self._instruments.in_flight.dec()

    async def _wait(self) -> bool:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._count_queued(1)
        try:
            async with asyncio.timeout(self.timeout):
                await waiter
            return True
        except BaseException as exc:
            self._abandon(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._count_queued(-1)
        elif waiter.done() and not waiter.cancelled():
            self.release()  # the slot arrived as the wait ended: pass it on

    def _count_queued(self, change: int) -> None:
        if self._instruments is not None:
            self._instruments.queued.inc(change)
