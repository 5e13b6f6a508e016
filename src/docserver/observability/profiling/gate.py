"""Rate limiting: one profile at a time, and at most one start per PROFILING_MIN_INTERVAL.

A profile costs the process CPU (sampling) or much more (tracemalloc), and
an endpoint that anyone holding the token can hit in a loop must not become
a way to slow a replica down. A refusal carries how long to wait, for the
`Retry-After` header.

Used from the event loop only (endpoints are coroutines), so no lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class ProfileGate:
    def __init__(self, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._min_interval = min_interval
        self._clock = clock
        self._busy_until: float | None = None
        self._last_start: float | None = None

    @property
    def busy(self) -> bool:
        return self._busy_until is not None

    def acquire(self, expected_seconds: float) -> int | None:
        """Start a profile of about `expected_seconds`: None if allowed, else seconds to wait (>= 1)."""
        now = self._clock()
        next_start = self._last_start + self._min_interval if self._last_start is not None else now
        if self._busy_until is None and now >= next_start:
            self._busy_until = now + expected_seconds
            self._last_start = now
            return None
        free_at = max(next_start, self._busy_until if self._busy_until is not None else now)
        return max(1, math.ceil(free_at - now))

    def release(self) -> None:
        """The running profile has finished (or was abandoned)."""
        self._busy_until = None
