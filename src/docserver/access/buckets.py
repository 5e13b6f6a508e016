"""Per-caller token buckets in a table of bounded size.

Each caller (principal or client address) has a bucket of `burst` tokens
that refills at `rate` per second; a request takes one. The table keeps at
most `max_callers` buckets and forgets the least recently seen one first:
a caller rotating addresses cannot grow memory, and a forgotten bucket is
one that had refilled anyway unless the table churns faster than it refills.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_CALLERS = 10_000
"""Buckets kept at most: about 1.5 MB of table."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One request's answer from the bucket: allowed or not, and what to tell the caller."""

    allowed: bool
    remaining: int
    """Whole tokens left after this request."""
    reset: int
    """Seconds until the bucket is full again."""
    retry_after: int
    """Seconds until one token is back (0 when allowed)."""


class TokenBuckets:
    """`take(caller)` spends one of the caller's tokens, if there is one."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_callers: int = MAX_CALLERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_callers = max_callers
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def window(self) -> int:
        """Seconds an empty bucket takes to fill: the policy's window."""
        return max(1, math.ceil(self.burst / self.rate))

    def take(self, caller: str) -> Verdict:
        now = self._clock()
        tokens = self._refilled(caller, now)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[caller] = (tokens, now)
        retry_after = 0 if allowed else max(1, math.ceil((1 - tokens) / self.rate))
        reset = math.ceil((self.burst - tokens) / self.rate)
        return Verdict(allowed, int(tokens), reset, retry_after)

    def _refilled(self, caller: str, now: float) -> float:
        previous = self._buckets.pop(caller, None)
        if previous is None:
            if len(self._buckets) >= self.max_callers:
                self._buckets.popitem(last=False)
            return float(self.burst)
        tokens, at = previous
        return min(float(self.burst), tokens + (now - at) * self.rate)
