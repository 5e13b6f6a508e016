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
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(database: Path, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCSERVER_", "LOG_", "OTEL_", "ENABLE_PROF"))}
    env["DOCSERVER_DATABASE_URL"] = f"sqlite:///{database}"
    env.update(extra)
    return env


def run_cli(*args: str, env: Mapping[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "docserver", *args], env=dict(env), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"docserver {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """utime + stime of every thread of the server, in seconds."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def serve(env: Mapping[str, str], log_path: Path, *args: str) -> Iterator[Server]:
    port = free_port()
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "docserver", "serve", "--port", str(port), *args],
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"docserver exited with {process.returncode}; see {log_path}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"docserver did not start; see {log_path}")
            time.sleep(0.05)  # start-up poll
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


class TraceSink:
    """A minimal OTLP/HTTP endpoint that accepts and discards spans, so export cost is real but local."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                self.rfile.read(length)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TraceSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def build_database(folder: Path, chunks: int) -> tuple[Path, list[str]]:
    """A SQLite database holding about `chunks` chunks (hash embedder), built once and copied per run."""
    from corpus import write_corpus

    docs = folder / f"corpus-{chunks}"
    database = folder / f"template-{chunks}.db"
    queries = write_corpus(docs, chunks)
    if not database.exists():
        run_cli("ingest", str(docs), "--source", "bench", env=base_env(database, {}))
    return database, queries


def fresh_copy(template: Path, folder: Path, name: str) -> Path:
    target = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{template}{suffix}")
        if source.exists():
            shutil.copyfile(source, Path(f"{target}{suffix}"))
    return target
