"""Memory of the rate limiter's bucket table when it is full (docs/security.md).

    python bench/bucket_memory.py [--out bench/results/bucket_memory.json]

Fills a `TokenBuckets` table with its maximum number of callers, each named
like an IPv6 client address (the longest caller names it keeps in practice),
twice over so that eviction has run, and reports the Python heap it holds
(tracemalloc), caller names included.
"""

from __future__ import annotations

import argparse
import json
import tracemalloc
from pathlib import Path

from docserver.access.buckets import MAX_CALLERS, TokenBuckets


def table_bytes(callers: int) -> int:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    buckets = TokenBuckets(10.0, 20, max_callers=callers)
    for index in range(2 * callers):
        buckets.take(f"2001:db8:{index >> 16:x}:{index & 0xFFFF:x}::1")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert len(buckets) == callers
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/bucket_memory.json"))
    args = parser.parse_args()
    size = table_bytes(MAX_CALLERS)
    result = {"callers": MAX_CALLERS, "bytes": size, "mb": round(size / 1e6, 2)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
