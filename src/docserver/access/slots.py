"""In-flight slots with a small, bounded, first-come waiting room that closes under sustained overload.

`acquire` answers at once when a slot is free or the waiting room is full,
so a request beyond capacity costs almost nothing; a queued request waits at
most `timeout` seconds. A freed slot is handed straight to the oldest waiter.

The waiting room is for bursts: a request that waits there gets a slot
freed a moment later instead of a 503. Under sustained overload it is always
full, so every admitted request would first have waited there (about 3.8 ms
at the median, for a 2.3 ms search, at 10 times the capacity in
bench/overload.py) without one more request being served. So once a request
finds the room full, or a queued one times out (more waiting than the slots
can serve: not a burst they absorb), the room stays closed for
`QUEUE_CLOSED_SECONDS`: a request that finds every slot busy is refused at
once, and an admitted one takes a slot the moment it arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from docserver.observability.instruments import AdmissionInstruments

QUEUE_CLOSED_SECONDS = 1.0
"""How long the waiting room stays closed once it overflowed: as long as a 503's `Retry-After`.
Under sustained overload it reopens once a second, fills at once and closes again, so only the
few requests it then holds (`queue_size` a second) wait."""


class Slots:
    """At most `limit` holders at once, and at most `queue_size` waiting for one."""

    def __init__(
        self,
        limit: int,
        queue_size: int,
        timeout: float,
        instruments: AdmissionInstruments | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.queue_size = queue_size
        self.timeout = timeout
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._instruments = instruments
        self._clock = clock
        self._closed_until = float("-inf")
        """The waiting room takes no one before this time (`clock`): it overflowed, or a wait timed out."""

    @property
    def in_flight(self) -> int:
        return self.limit - self._free

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def queue_open(self) -> bool:
        """False for `QUEUE_CLOSED_SECONDS` after the room overflowed or a queued request timed out."""
        return self.queue_size > 0 and self._clock() >= self._closed_until

    async def acquire(self) -> bool:
        """True once the caller holds a slot (it must `release` it); False when refused."""
        if self._free > 0:
            self._free -= 1
            if self._instruments is not None:
                self._instruments.in_flight.inc()
            return True
        if self.refuses_at_once():
            return False
        return await self._wait()

    def refuses_at_once(self) -> bool:
        """True when `acquire` would now refuse without waiting: every slot busy, the room full or closed.

        A full room closes, as in `acquire`: the HTTP parser asks this before any ASGI call
        (docserver.access.shedding).
        """
        if self._free > 0:
            return False
        if self.queue_size == 0:
            return True
        now = self._clock()
        if now < self._closed_until:
            return True
        if len(self._waiters) >= self.queue_size:
            self._closed_until = now + QUEUE_CLOSED_SECONDS  # more waiting than the room holds: overload
            return True
        return False

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
                self._closed_until = self._clock() + QUEUE_CLOSED_SECONDS  # the slots could not keep up
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
