"""Bench harness: real `docserver serve` processes, an MCP load driver, and the server's own CPU clock.

Loopback only, bounded in calls and time. Server CPU per call comes from
the server process's /proc/<pid>/stat (all its threads), so the load
driver's own work is not counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the `support` package of tests/

from support.docserver_process import ServerProcess, docserver_env, start_docserver
from support.docserver_process import run_cli as run_docserver
from support.otlp_receiver import OtlpReceiver

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROTOCOL = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": PROTOCOL,
    "io.modelcontextprotocol/clientInfo": {"name": "docserver-bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": PROTOCOL,
    "mcp-method": "tools/call",
    "mcp-name": "search_docs",
}


def run_cli(*args: str, env: Mapping[str, str]) -> str:
    """`docserver *args`'s stdout; RuntimeError if it fails. No time limit: a large ingest takes minutes."""
    done = run_docserver(*args, env=env, timeout=None)
    if done.returncode != 0:
        raise RuntimeError(f"docserver {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Server(ServerProcess):
    """A running `docserver serve`, with the CPU time and memory of its process."""

    def cpu_seconds(self) -> float:
        """utime + stime of every thread of the server, in seconds."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM:")

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS:")

    def _status_mb(self, key: str) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def serve(env: Mapping[str, str], log_path: Path, *args: str) -> Iterator[Server]:
    """`docserver serve` on a free port until the context exits; its output appended to `log_path`."""
    with start_docserver(env, log_path, *args, append_log=True) as started:
        yield Server(started.url, started.process, started.log_path)


def trace_sink() -> OtlpReceiver:
    """A minimal OTLP/HTTP endpoint that accepts and discards spans, so export cost is real but local."""
    return OtlpReceiver(mode="discard")


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    @property
    def calls(self) -> int:
        return len(self.latencies)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _body(call_id: int, query: str, limit: int) -> bytes:
    params = {"name": "search_docs", "arguments": {"query": query, "limit": limit}, "_meta": META}
    return json.dumps({"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": params}).encode()


async def drive(
    url: str, queries: list[str], *, calls: int, concurrency: int, seed: int, max_seconds: float
) -> LoadResult:
    """`calls` search_docs tool calls (current protocol, JSON-RPC over Streamable HTTP), `concurrency` at a time."""
    rng = random.Random(seed)
    plan = [rng.choice(queries) for _ in range(calls)]
    result = LoadResult()
    next_index = 0
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, headers=HEADERS, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(plan) and time.monotonic() < deadline:
                index = next_index
                next_index += 1
                started = time.perf_counter()
                response = await client.post("/mcp", content=_body(index, plan[index], 5))
                elapsed = time.perf_counter() - started
                if response.status_code != 200 or response.json().get("result", {}).get("isError"):
                    result.errors += 1
                result.latencies.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def measure(server: Server, queries: list[str], *, calls: int, concurrency: int, seed: int) -> dict[str, float]:
    """Warm up, then drive `calls` and report server CPU per call, throughput, latency and memory."""
    asyncio.run(
        drive(
            server.url,
            queries,
            calls=min(100, max(calls // 4, 10)),
            concurrency=concurrency,
            seed=seed + 1,
            max_seconds=60,
        )
    )
    cpu_before = server.cpu_seconds()
    load = asyncio.run(drive(server.url, queries, calls=calls, concurrency=concurrency, seed=seed, max_seconds=300))
    cpu = server.cpu_seconds() - cpu_before
    return {
        "calls": load.calls,
        "errors": load.errors,
        "cpu_us_per_call": cpu / max(load.calls, 1) * 1e6,
        "throughput": load.calls / load.seconds if load.seconds else 0.0,
        "p50_ms": load.quantile(0.50) * 1000,
        "p95_ms": load.quantile(0.95) * 1000,
        "p99_ms": load.quantile(0.99) * 1000,
        "rss_mb": server.rss_mb(),
        "peak_rss_mb": server.peak_rss_mb(),
    }


def median_of(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def build_database(folder: Path, chunks: int) -> tuple[Path, list[str]]:
    """A SQLite database holding about `chunks` chunks (hash embedder), built once and copied per run."""
    from corpus import write_corpus

    docs = folder / f"corpus-{chunks}"
    database = folder / f"template-{chunks}.db"
    queries = write_corpus(docs, chunks)
    if not database.exists():
        run_cli("ingest", str(docs), "--source", "bench", env=docserver_env(database))
        # The ingest leaves the approximate vector index to the next process that opens the
        # file: built here, or every server measured would train it while being measured.
        asyncio.run(finish_vector_index(database))
    return database, queries


async def finish_vector_index(database: Path) -> None:
    """Open the store and wait for its vector index steps to finish (as `serve` runs them in the background)."""
    from docserver.store.sqlite import SqliteStore

    store = SqliteStore(database)
    await store.open()
    try:
        await store.vector_index_built()
    finally:
        await store.close()


def fresh_copy(template: Path, folder: Path, name: str) -> Path:
    target = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{template}{suffix}")
        if source.exists():
            shutil.copyfile(source, Path(f"{target}{suffix}"))
    return target


# --- instruction counts (bench/instructions.py, bench/server_instructions.py) -------------------

STEADY_COUNTS = {"OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
"""Every counted process's environment (bench/server_instructions.py says why): without them
OpenBLAS's spinning worker and per-process hash seeds move a call's count by tens of k."""


def compile_docserver() -> None:
    """Compile the docserver package the counted processes import (the one on this process's path) to
    bytecode first: a counted run that compiled a module changed since the last run would count the compiling."""
    import compileall

    import docserver

    compileall.compile_dir(Path(docserver.__file__).parent, quiet=1)


def callgrind_total(command: list[str], work: Path, env: Mapping[str, str] | None = None) -> int:
    """Every thread's instructions of one command run under `valgrind --tool=callgrind`."""
    out = Path(tempfile.mkstemp(prefix="callgrind-", suffix=".out", dir=work)[1])
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    done = subprocess.run([*valgrind, *command], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError("callgrind printed no total")
    return int(match.group(1))


def per_call(totals: tuple[int, int], calls: tuple[int, int]) -> float:
    """One call's instructions: the difference of two runs' totals over the difference of their calls."""
    return (totals[1] - totals[0]) / (calls[1] - calls[0])


def write_instruction_table(rows: list[dict[str, float | str]], out: Path, what: str) -> None:
    """Add each row's overhead against the first ("off"), write the JSON, print the Markdown table."""
    base = float(rows[0]["instructions_per_call"])
    for row in rows:
        row["overhead_pct"] = (float(row["instructions_per_call"]) / base - 1) * 100
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"| configuration | {what} per call | vs off |\n|---|---|---|")
    for row in rows:
        cost = float(row["instructions_per_call"]) / 1e6
        print(f"| {row['configuration']} | {cost:.3f} M | {float(row['overhead_pct']):+.1f}% |")


def save_labelled(out: Path, label: str, measured: dict[str, object]) -> None:
    """Keep one run under its label in a results file that holds several (other labels kept)."""
    results = json.loads(out.read_text()) if out.exists() else {}
    results[label] = measured
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
