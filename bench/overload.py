"""Load shedding under overload: DOCSERVER_MAX_INFLIGHT at a replica's capacity, driven at 10x.

    python bench/overload.py [--chunks 10000] [--seconds 20] [--factor 10]

1. Capacity: a server without limits, driven by 1, 2, 4, 8 and 16 closed-loop
   clients; the capacity is the fewest clients that reach 95% of the best
   throughput, and its p99 the reference latency.
2. Unlimited at 10x: the same server with `factor` times as many clients
   (everything queues).
3. Limited at 10x: a fresh server with DOCSERVER_MAX_INFLIGHT = capacity (queue
   as large by default), `factor` times as many clients that never back off.
   Reported: p99 of admitted calls against the reference, the slowest
   rejection, every status seen, RSS before/after, /readyz and one call afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from harness import HEADERS, Server, build_database, docserver_env, fresh_copy, serve

SWEEP = (1, 2, 4, 8, 16)


@dataclass
class Outcome:
    """Every answer of one load run: latency by status."""

    seconds: float = 0.0
    latencies: dict[int, list[float]] = field(default_factory=dict)

    def add(self, status: int, elapsed: float) -> None:
        self.latencies.setdefault(status, []).append(elapsed)

    def ok(self) -> list[float]:
        return self.latencies.get(200, [])

    def rejected(self) -> list[float]:
        return [t for status in (429, 503) for t in self.latencies.get(status, [])]

    def statuses(self) -> dict[int, int]:
        return dict(Counter({status: len(times) for status, times in self.latencies.items()}))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def _body(call_id: int, query: str) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "docserver-overload", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": "search_docs", "arguments": {"query": query, "limit": 5}, "_meta": meta}
    return json.dumps({"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": params}).encode()


async def drive(url: str, queries: list[str], clients: int, seconds: float, seed: int) -> Outcome:
    """`clients` closed-loop clients calling search_docs for `seconds`, never backing off."""
    rng = random.Random(seed)
    outcome = Outcome()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits, timeout=60) as client:

        async def worker(worker_id: int) -> None:
            call = 0
            while time.monotonic() < deadline:
                call += 1
                body = _body(worker_id * 1_000_000 + call, rng.choice(queries))
                started = time.perf_counter()
                response = await client.post("/mcp", content=body)
                outcome.add(response.status_code, time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        outcome.seconds = time.perf_counter() - started
    return outcome


def row(name: str, clients: int, outcome: Outcome, server: Server, rss_before: float) -> dict[str, object]:
    ok = outcome.ok()
    return {
        "run": name,
        "clients": clients,
        "admitted_per_s": len(ok) / outcome.seconds,
        "p50_ms": quantile(ok, 0.5),
        "p99_ms": quantile(ok, 0.99),
        "rejected": len(outcome.rejected()),
        "rejection_p99_ms": quantile(outcome.rejected(), 0.99),
        "rejection_max_ms": max(outcome.rejected(), default=float("nan")) * 1000,
        "statuses": outcome.statuses(),
        "rss_before_mb": rss_before,
        "rss_after_mb": server.rss_mb(),
    }


def healthy_afterwards(server: Server, query: str) -> bool:
    ready = httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    call = httpx.post(f"{server.url}/mcp", content=_body(1, query), headers=HEADERS, timeout=10)
    return ready and call.status_code == 200 and "result" in call.json()


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="docserver-overload-"))
    template, queries = build_database(work, args.chunks)
    base_env = {"DOCSERVER_CACHE_SIZE": "0", "LOG_LEVEL": "WARNING"}
    rows: list[dict[str, object]] = []
    with serve(docserver_env(fresh_copy(template, work, "open"), base_env), work / "serve.log") as server:
        asyncio.run(drive(server.url, queries, 4, 3, args.seed))  # warm-up
        sweep = {n: asyncio.run(drive(server.url, queries, n, args.seconds / 2, args.seed + n)) for n in SWEEP}
        best = max(len(o.ok()) / o.seconds for o in sweep.values())
        reached = min(n for n, o in sweep.items() if len(o.ok()) / o.seconds >= 0.95 * best)
        capacity = args.capacity or reached
        for n, outcome in sweep.items():
            print(f"sweep {n:>3} clients: {len(outcome.ok()) / outcome.seconds:.0f} calls/s")
        rss = server.rss_mb()
        rows.append(row("no limit, at capacity", capacity, sweep[capacity], server, rss))
        over = asyncio.run(drive(server.url, queries, capacity * args.factor, args.seconds, args.seed))
        rows.append(row(f"no limit, {args.factor}x", capacity * args.factor, over, server, rss))
    limited = {**base_env, "DOCSERVER_MAX_INFLIGHT": str(capacity), "LOG_LEVEL": "INFO"}
    log_path = work / "limited.log"
    with serve(docserver_env(fresh_copy(template, work, "limited"), limited), log_path) as server:
        asyncio.run(drive(server.url, queries, capacity, 3, args.seed))  # warm-up
        rss = server.rss_mb()
        at_capacity = asyncio.run(drive(server.url, queries, capacity, args.seconds, args.seed))
        rows.append(row(f"MAX_INFLIGHT={capacity}, at capacity", capacity, at_capacity, server, rss))
        shed = asyncio.run(drive(server.url, queries, capacity * args.factor, args.seconds, args.seed))
        rows.append(row(f"MAX_INFLIGHT={capacity}, {args.factor}x", capacity * args.factor, shed, server, rss))
        healthy = healthy_afterwards(server, queries[0])
    server_side = rejection_times(log_path)
    return {
        "config": vars(args),
        "capacity": capacity,
        "rows": rows,
        "healthy_afterwards": healthy,
        "server_rejection_p99_ms": quantile(server_side, 0.99),
        "server_rejection_max_ms": max(server_side, default=float("nan")) * 1000,
    }


def rejection_times(log_path: Path) -> list[float]:
    """Seconds the server spent on each 503/429, from its access lines (first byte in to response out)."""
    times = []
    for line in log_path.read_text().splitlines():
        if '"http_request"' in line and ('"status_code":503' in line or '"status_code":429' in line):
            times.append(json.loads(line)["duration_ms"] / 1000)
    return times


def markdown(result: dict[str, object]) -> str:
    rows: list[dict[str, object]] = result["rows"]  # type: ignore[assignment]
    head = (
        "| run | clients | admitted calls/s | admitted p50 ms | admitted p99 ms | rejected | rejection p99 ms "
        "(max) | statuses | RSS MB before → after |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['run']} | {r['clients']} | {r['admitted_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
        f"| {r['rejected']} | {r['rejection_p99_ms']:.1f} ({r['rejection_max_ms']:.1f}) "
        f"| {', '.join(f'{k}: {v}' for k, v in sorted(r['statuses'].items()))} "  # type: ignore[attr-defined]
        f"| {r['rss_before_mb']:.0f} → {r['rss_after_mb']:.0f} |"
        for r in rows
    ]
    return (
        head
        + "\n".join(lines)
        + f"\n\nHealthy afterwards (/readyz 200 and a search answered): {result['healthy_afterwards']}; "
        f"server-side time per rejection: p99 {result['server_rejection_p99_ms']:.2f} ms, "
        f"max {result['server_rejection_max_ms']:.2f} ms\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--capacity", type=int, default=0, help="in-flight limit (default: found by the sweep)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("bench/results/overload.json"))
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(markdown(result))


if __name__ == "__main__":
    main()
