"""RFC 3339 UTC timestamps for log lines, with the date and time part formatted once per second."""

from __future__ import annotations

import time

_second = -1
_second_text = ""


def rfc3339_now() -> str:
    """Now, as `2026-12-05T08:00:00.123456Z` (integer nanoseconds: no float arithmetic per line)."""
    global _second, _second_text
    now = time.time_ns()
    second = now // 1_000_000_000
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _second = second
    return f"{_second_text}{now % 1_000_000_000 // 1000:06d}Z"
