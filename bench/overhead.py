"""Observability overhead: the same build, five configurations, interleaved rounds.

    python bench/overhead.py [--chunks 10000] [--rounds 3] [--calls 1500] [--concurrency 4]

Each round starts one fresh server per configuration, in an order shuffled
per round (fixed seed), drives the same search_docs load and reads the
server's own CPU time. The table reports medians over rounds, and the
overhead of each configuration relative to `off` in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from harness import build_database, docserver_env, drive, fresh_copy, measure, serve, trace_sink

PROFILE_TOKEN = "bench-profile-token"
CONFIGS: dict[str, dict[str, str]] = {
    "off": {"DOCSERVER_TELEMETRY": "off", "LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"},
    "metrics+logs": {"OTEL_SDK_DISABLED": "true"},
    "+tracing 0.1": {"OTEL_TRACE_SAMPLE_RATE": "0.1"},
    "+tracing 1.0": {"OTEL_TRACE_SAMPLE_RATE": "1.0"},
    "+cpu profile": {
        "OTEL_TRACE_SAMPLE_RATE": "0.1",
        "ENABLE_PROFILING": "true",
        "PROFILING_TOKEN": PROFILE_TOKEN,
        "PROFILING_MIN_INTERVAL": "0",
        "PROFILING_MAX_SECONDS": "600",
    },
}


def _profile_during(url: str, seconds: int) -> threading.Thread:
    """Hold a CPU profile open on the server while the load runs."""

    def fetch() -> None:
        headers = {"Authorization": f"Bearer {PROFILE_TOKEN}"}
        httpx.get(f"{url}/debug/pprof/profile?seconds={seconds}", headers=headers, timeout=seconds * 2 + 10)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    return thread


def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="docserver-bench-"))
    template, queries = build_database(work, args.chunks)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    single: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with trace_sink() as sink:
        for round_number in range(args.rounds):
            order = list(CONFIGS)
            rng.shuffle(order)
            for name in order:
                env = docserver_env(
                    fresh_copy(template, work, "run"),
                    {
                        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
                        "DOCSERVER_CACHE_SIZE": args.cache_size,
                        **CONFIGS[name],
                    },
                )
                with serve(env, work / "serve.log") as server:
                    profiler = _profile_during(server.url, 300) if name == "+cpu profile" else None
                    row = measure(
                        server, queries, calls=args.calls, concurrency=args.concurrency, seed=args.seed + round_number
                    )
                    one = asyncio.run(
                        drive(server.url, queries, calls=args.single_calls, concurrency=1, seed=3, max_seconds=120)
                    )
                    row["p50_single_ms"] = one.quantile(0.5) * 1000
                    rows[name].append(row)
                    single[name].append(row["p50_single_ms"])
                    print(
                        f"round {round_number + 1} {name:>14}: {json.dumps({k: round(v, 2) for k, v in row.items()})}"
                    )
                    del profiler  # the server stop ends the profile
    return {"config": vars(args), "rows": rows}


def summarise(result: dict[str, object]) -> list[dict[str, object]]:
    rows: dict[str, list[dict[str, float]]] = result["rows"]  # type: ignore[assignment]
    base = rows["off"]
    table = []
    for name, measured in rows.items():
        # Ratios within each round first (same machine state), then the median over rounds.
        ratios = [run["cpu_us_per_call"] / ref["cpu_us_per_call"] for run, ref in zip(measured, base, strict=True)]
        table.append(
            {
                "configuration": name,
                "cpu_us_per_call": statistics.median(r["cpu_us_per_call"] for r in measured),
                "cpu_overhead_pct": (statistics.median(ratios) - 1) * 100,
                "throughput": statistics.median(r["throughput"] for r in measured),
                "p50_ms": statistics.median(r["p50_ms"] for r in measured),
                "p95_ms": statistics.median(r["p95_ms"] for r in measured),
                "p99_ms": statistics.median(r["p99_ms"] for r in measured),
                "p50_single_ms": statistics.median(r["p50_single_ms"] for r in measured),
                "p50_single_delta_ms": statistics.median(
                    run["p50_single_ms"] - ref["p50_single_ms"] for run, ref in zip(measured, base, strict=True)
                ),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in measured),
                "rss_delta_mb": statistics.median(
                    run["peak_rss_mb"] - ref["peak_rss_mb"] for run, ref in zip(measured, base, strict=True)
                ),
            }
        )
    return table


def markdown(table: list[dict[str, object]]) -> str:
    head = (
        "| configuration | server CPU µs/call | CPU overhead | calls/s | p50 ms | p95 ms | p99 ms "
        "| p50 ms at 1 conn (Δ) | peak RSS MB (Δ) |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['configuration']} | {r['cpu_us_per_call']:.0f} | {r['cpu_overhead_pct']:+.1f}% | {r['throughput']:.0f} "
        f"| {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['p99_ms']:.2f} "
        f"| {r['p50_single_ms']:.2f} ({r['p50_single_delta_ms']:+.2f}) "
        f"| {r['peak_rss_mb']:.0f} ({r['rss_delta_mb']:+.1f}) |"
        for r in table
    ]
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--single-calls", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--cache-size", default="0", help="DOCSERVER_CACHE_SIZE for the servers (0: every call searches)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("bench/results/overhead.json"))
    args = parser.parse_args()
    result = run(args)
    table = summarise(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"raw": result, "table": table}, indent=2, default=str))
    print(markdown(table))


if __name__ == "__main__":
    main()
