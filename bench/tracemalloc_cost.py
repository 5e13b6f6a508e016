"""What tracemalloc costs while a heap profile window is open: CPU per call, tracing against not.

    python bench/tracemalloc_cost.py [--rounds 5] [--out bench/results/tracemalloc_cost.json]

Two workloads, run in process: allocation-heavy code (2,000 dicts through a JSON round
trip) and embedding one query with the built-in hash embedder. Each round measures every
setting (tracemalloc off, and on with 1, 4 and 16 frames: the heap profile uses 16) in an
order shuffled with a fixed seed, a fixed number of calls each (about 0.3 s untraced), in CPU
time (`time.process_time`).
The slow-down of a setting is its ratio to "off" in the same round; the table is the
median over rounds, so a noisy neighbour on a shared machine moves every setting alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from docserver.embed.hashing import HashEmbedder
from docserver.observability.profiling.heap import FRAMES

SETTINGS = (0, 1, 4, FRAMES)
"""Frames tracemalloc keeps per allocation; 0 is tracemalloc off."""

QUERIES = ["how do I rotate the access tokens", "configure the journal flush interval", "build from source on arm64"]


def json_round_trip() -> None:
    rows = [{"id": index, "name": f"row {index}", "tags": ["a", "b"], "score": index / 7} for index in range(2_000)]
    json.loads(json.dumps(rows))


def embed_one_query() -> Callable[[], None]:
    embedder = HashEmbedder()
    loop = asyncio.new_event_loop()
    queries = iter(QUERIES * 1_000_000)
    return lambda: loop.run_until_complete(embedder.embed_batch([next(queries)]))


def cpu_us_per_call(work: Callable[[], None], calls: int, frames: int) -> float:
    if frames:
        tracemalloc.start(frames)
    try:
        started = time.process_time()
        for _ in range(calls):
            work()
        return (time.process_time() - started) / calls * 1e6
    finally:
        tracemalloc.stop()


def measure(work: Callable[[], None], calls: int, rounds: int, rng: random.Random) -> list[dict[str, float]]:
    work()
    per_round: list[dict[int, float]] = []
    for _ in range(rounds):
        order = list(SETTINGS)
        rng.shuffle(order)
        per_round.append({frames: cpu_us_per_call(work, calls, frames) for frames in order})
    return [
        {
            "frames": frames,
            "cpu_us_per_call": statistics.median(row[frames] for row in per_round),
            "slowdown": statistics.median(row[frames] / row[0] for row in per_round),
        }
        for frames in SETTINGS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("bench/results/tracemalloc_cost.json"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workloads = {
        "json round trip of 2,000 dicts": (json_round_trip, 40),
        "hash-embed one query": (embed_one_query(), 8_000),
    }
    results = {
        "config": {
            "rounds": args.rounds,
            "seed": args.seed,
            "calls": {name: calls for name, (_, calls) in workloads.items()},
        },
        "rows": {name: measure(work, calls, args.rounds, rng) for name, (work, calls) in workloads.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    for name, rows in results["rows"].items():
        cells = ", ".join(f"{row['frames']} frames {row['slowdown']:.1f}x" for row in rows[1:])
        print(f"{name}: off {rows[0]['cpu_us_per_call']:.0f} µs/call; {cells}")


if __name__ == "__main__":
    main()
