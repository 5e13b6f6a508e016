"""What a running CPU profile costs per search call, and which thread pays it.

    python bench/profiling_cost.py [--base REV] [--before REF] [--chunks 10000] [--rounds 5] [--calls 1500]

Three configurations per round, in an order shuffled per round (fixed seed):

- `tracing 0.1`: the overhead benchmark's "+tracing 0.1" server, no profile;
- `profile REF`: its "+cpu profile" server (tracing 0.1 plus a profile held
  open), running the profiler package of git revision REF;
- `profile now`: the same with the profiler package of this checkout.

Every server runs the code of git revision BASE (`--base`, exported to a
temporary folder and put first on PYTHONPATH) with one of the two profiler
packages in it, so only the profiler differs between the profiled rows.

CPU comes from every thread's `/proc/<pid>/task/<tid>/schedstat` (run time
in nanoseconds, not 10 ms ticks), so the sampler thread's own CPU is told
apart from the rest of the server's; context switches from each thread's
`status`. The sampler is the one thread that appears when the profile starts.
Overheads are ratios to `tracing 0.1` within each round, then the median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from harness import Server, build_database, docserver_env, drive, fresh_copy, serve, trace_sink
from overhead import CONFIGS, PROFILE_TOKEN

ROOT = Path(__file__).resolve().parent.parent
PROFILER = Path("src/docserver/observability/profiling")
BASELINE = "tracing 0.1"


def source_tree(base: str, profiler: str | None, folder: Path) -> Path:
    """`src` of revision `base` under `folder`, with the profiler package of `profiler` (None: this checkout)."""
    folder.mkdir(parents=True)
    _extract(base, "src", folder)
    package = folder / PROFILER
    shutil.rmtree(package)
    if profiler is None:
        shutil.copytree(ROOT / PROFILER, package, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        _extract(profiler, str(PROFILER), folder)
    return folder / "src"


def _extract(ref: str, path: str, folder: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, path], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)


def thread_stats(pid: int) -> dict[int, tuple[int, int]]:
    """tid -> (CPU ns, context switches) for every thread of `pid`."""
    stats: dict[int, tuple[int, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu_ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended between listing and reading
        switches = sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)
        stats[int(task.name)] = (cpu_ns, switches)
    return stats


def start_profile(server: Server, seconds: int) -> int:
    """Open a CPU profile on `server` in a background request; the sampler thread's tid."""
    before = set(thread_stats(server.process.pid))

    def fetch() -> None:
        headers = {"Authorization": f"Bearer {PROFILE_TOKEN}"}
        with contextlib.suppress(httpx.TransportError):  # the server stopped: the profile ends with it
            httpx.get(f"{server.url}/debug/pprof/profile?seconds={seconds}", headers=headers, timeout=seconds + 30)

    threading.Thread(target=fetch, daemon=True).start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = set(thread_stats(server.process.pid)) - before
        if len(new) == 1:
            return new.pop()
        time.sleep(0.01)  # poll for the sampler thread to appear
    raise RuntimeError("no sampler thread appeared")


def measure(
    server: Server, queries: list[str], calls: int, concurrency: int, seed: int, sampler: int | None
) -> dict[str, float]:
    before = thread_stats(server.process.pid)
    load = asyncio.run(drive(server.url, queries, calls=calls, concurrency=concurrency, seed=seed, max_seconds=300))
    after = thread_stats(server.process.pid)
    delta = {
        tid: (cpu - before.get(tid, (0, 0))[0], sw - before.get(tid, (0, 0))[1]) for tid, (cpu, sw) in after.items()
    }
    per_call = 1e-3 / max(load.calls, 1)  # ns -> µs, per call
    sampler_cpu, sampler_switches = delta.get(sampler, (0, 0)) if sampler is not None else (0, 0)
    return {
        "calls": load.calls,
        "errors": load.errors,
        "seconds": load.seconds,
        "cpu_us_per_call": sum(cpu for cpu, _ in delta.values()) * per_call,
        "sampler_us_per_call": sampler_cpu * per_call,
        "sampler_cpu_pct_of_core": sampler_cpu / 1e9 / load.seconds * 100 if load.seconds else 0.0,
        "switches_per_call": sum(sw for _, sw in delta.values()) / max(load.calls, 1),
        "sampler_switches_per_s": sampler_switches / load.seconds if load.seconds else 0.0,
        "throughput": load.calls / load.seconds if load.seconds else 0.0,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="docserver-profcost-"))
    now = source_tree(args.base, None, work / "now")
    before = source_tree(args.base, args.before, work / "before")
    sources = {BASELINE: now, f"profile {args.before}": before, "profile now": now}
    os.environ["PYTHONPATH"] = str(now)  # the ingest too runs the exported code, not the editable install
    template, queries = build_database(work, args.chunks)
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    with trace_sink() as sink:
        for round_number in range(args.rounds):
            order = list(sources)
            rng.shuffle(order)
            for name in order:
                profiled = name != BASELINE
                extra = CONFIGS["+cpu profile" if profiled else "+tracing 0.1"]
                env = docserver_env(
                    fresh_copy(template, work, "run"),
                    {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "DOCSERVER_CACHE_SIZE": "0", **extra},
                )
                env["PYTHONPATH"] = str(sources[name])
                with serve(env, work / "serve.log") as server:
                    seed = args.seed + round_number
                    asyncio.run(
                        drive(
                            server.url, queries, calls=100, concurrency=args.concurrency, seed=seed + 1, max_seconds=60
                        )
                    )
                    sampler = start_profile(server, 600) if profiled else None
                    row = measure(server, queries, args.calls, args.concurrency, seed, sampler)
                rows[name].append(row)
                print(
                    f"round {round_number + 1} {name:>16}: {json.dumps({k: round(v, 2) for k, v in row.items()})}",
                    flush=True,
                )
    return {"config": {k: str(v) for k, v in vars(args).items()}, "rows": rows}


def summarise(rows: dict[str, list[dict[str, float]]]) -> list[dict[str, float | str]]:
    base = rows[BASELINE]
    table: list[dict[str, float | str]] = []
    for name, measured in rows.items():
        pairs = list(zip(measured, base, strict=True))
        table.append(
            {
                "configuration": name,
                "cpu_us_per_call": statistics.median(r["cpu_us_per_call"] for r in measured),
                "cpu_overhead_pct": (
                    statistics.median(r["cpu_us_per_call"] / b["cpu_us_per_call"] for r, b in pairs) - 1
                )
                * 100,
                "extra_us_per_call": statistics.median(r["cpu_us_per_call"] - b["cpu_us_per_call"] for r, b in pairs),
                "sampler_us_per_call": statistics.median(r["sampler_us_per_call"] for r in measured),
                "sampler_cpu_pct_of_core": statistics.median(r["sampler_cpu_pct_of_core"] for r in measured),
                "switches_per_call": statistics.median(r["switches_per_call"] for r in measured),
                "throughput": statistics.median(r["throughput"] for r in measured),
            }
        )
    return table


def markdown(table: list[dict[str, float | str]]) -> str:
    lines = [
        "| configuration | server CPU µs/call | vs tracing 0.1 | extra µs/call | of which sampler thread "
        "| sampler % of a core | context switches/call | calls/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['configuration']} | {r['cpu_us_per_call']:.0f} | {r['cpu_overhead_pct']:+.1f}% "
        f"| {r['extra_us_per_call']:+.0f} | {r['sampler_us_per_call']:.0f} | {r['sampler_cpu_pct_of_core']:.2f}% "
        f"| {r['switches_per_call']:.2f} | {r['throughput']:.0f} |"
        for r in table
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="git revision of everything but the profiler package")
    parser.add_argument("--before", default="HEAD", help="git revision whose profiler is compared with this checkout's")
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("bench/results/profiling_cost.json"))
    args = parser.parse_args()
    result = run(args)
    table = summarise(result["rows"])  # type: ignore[arg-type]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"raw": result, "table": table}, indent=2))
    print(markdown(table))


if __name__ == "__main__":
    main()
