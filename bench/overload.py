"""Load shedding under overload: DOCSERVER_MAX_INFLIGHT at a replica's capacity, driven at 10x.

    python bench/overload.py --capacity 2 --seconds 6 --rounds 3 \
        --config '' --config DOCSERVER_MAX_QUEUED=0 --config DOCSERVER_QUEUE_TIMEOUT=1

The load generator is this process; the servers are real `docserver serve`
subprocesses. Clients are closed loops that never back off (a refused client
asks again at once), over keep-alive connections with prebuilt requests
(bench/rawhttp.py), so the generator's own work stays small.

1. Capacity (unless `--capacity`): a server without limits, driven by 1, 2, 4
   and 8 clients; the capacity is the fewest clients that reach 95% of the best
   throughput.
2. One server per configuration, all running: without limits (unless
   `--skip-unlimited`) and, for each `--config`, DOCSERVER_MAX_INFLIGHT =
   capacity plus those settings. Each round goes through the servers in turn,
   a pair of phases each: `capacity` clients, then `factor` times as many. The
   machine is shared, so the verdict is the ratio within each pair (p99 of
   admitted calls at 10x over p99 at capacity), not absolute times.

With `--arrivals open`, the overload phase is open-loop instead: requests arrive
at `factor` times the rate the round's capacity phase reached, each on an idle
keep-alive connection (a new one when none is idle), whatever the answers.

With `--arrivals wrk`, the overload phase splits the load: this process sends
the capacity phase's rate as open-loop arrivals (the calls it times), and wrk
(Debian's `wrk`, C: little CPU per request) adds `factor - 1` times that rate
from `(factor - 1) * capacity` keep-alive connections, each pausing between
its calls so that together they keep to that rate. So the load is 10 times
the capacity's rate while the generator's own work stays small.

Reported per phase: admitted calls/s, p50/p99 of admitted calls seen by the
client and by the server (its `http_request` access lines: end of admission to
answer out; requests shed for overload write none), each admitted call in parts
(`stages`: before the gate, queued for a slot, in service, of which the search,
and after; each request carries its own correlation id, so the client's times
and the server's log lines are matched call by call: `add_stages`), the CPU each
process used (`cpu_cores`: the server's event loop apart from its other threads), rejections per second and
their p99/max as the client saw them, how late the generator's own event loop
woke (its share of every client-side time), every status, RSS; then /readyz
and one call after the last round. During each overload phase a probe process
(bench/overload_probe.py) times one request every 20 ms, free of that lag.

    python bench/overload.py --capacity 2 --seconds 8 --profile FILE

instead writes a CPU profile (pprof) of a server with the defaults under the
flood: `go tool pprof -top FILE` shows where its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from harness import CLOCK_TICKS, HEADERS, Server, build_database, docserver_env, fresh_copy, serve
from rawhttp import Connection, post_request

SWEEP = (1, 2, 4, 8)


@dataclass
class Outcome:
    """Every answer of one load phase: latency by status, client-side and server-side."""

    seconds: float = 0.0
    latencies: dict[int, list[float]] = field(default_factory=dict)
    server: dict[int, list[float]] = field(default_factory=dict)
    lag: list[float] = field(default_factory=list)
    probe: dict[int, list[float]] = field(default_factory=dict)
    """What the probe process saw, by status (overload phases)."""
    errors: int = 0
    error_idle: list[float | None] = field(default_factory=list)
    """Open-loop phases: for each connection error, how long its keep-alive connection had been idle
    (None: a new connection). uvicorn closes a connection idle for 5 s."""
    connections: int = 0
    """Open-loop phases: the keep-alive connections the arrivals needed."""
    timed: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Admitted calls: correlation id -> (sent, answered), wall clock in ns (the server's log lines' clock)."""
    stages: dict[str, list[float]] = field(default_factory=dict)
    """Admitted calls matched with their access line: seconds before the gate, queued, in service, after."""
    window: tuple[float, float] = (0.0, 0.0)
    """When the phase ran (wall clock, s): to find it in the server's log."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds per second of the phase, by process (and the server by thread)."""

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


def search_call(call_id: int, query: str) -> bytes:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "docserver-overload", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": "search_docs", "arguments": {"query": query, "limit": 5}, "_meta": meta}
    return json.dumps({"jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": params}).encode()


class Calls:
    """Prebuilt search_docs requests, each sent with a correlation id of its own (`ovl-<seed>-<n>`), so the
    server's access line of an admitted call can be matched with the client's times for it."""

    def __init__(self, url: str, queries: list[str], seed: int) -> None:
        rng = random.Random(seed)
        self.prefix = f"ovl-{seed}-"
        self.templates = []
        for n in range(512):
            headers = {**HEADERS, "x-correlation-id": "@@"}
            request = post_request(url, "/mcp", headers, search_call(n, rng.choice(queries)))
            head, _, tail = request.partition(b"@@")
            self.templates.append((head + self.prefix.encode(), tail))

    def request(self, number: int) -> bytes:
        head, tail = self.templates[number % len(self.templates)]
        return b"%s%d%s" % (head, number, tail)

    def correlation_id(self, number: int) -> str:
        return f"{self.prefix}{number}"


async def drive(url: str, queries: list[str], clients: int, seconds: float, seed: int) -> Outcome:
    """`clients` closed-loop clients calling search_docs for `seconds`, never backing off."""
    calls = Calls(url, queries, seed)
    outcome = Outcome()
    deadline = time.monotonic() + seconds

    async def worker(worker_id: int) -> None:
        connection = Connection(url)
        call = worker_id
        try:
            while time.monotonic() < deadline:
                call += clients
                sent, started = time.time_ns(), time.perf_counter()
                try:
                    status, _ = await connection.exchange(calls.request(call))
                except (OSError, asyncio.IncompleteReadError):
                    outcome.errors += 1
                    await connection.close()
                    continue
                outcome.add(status, time.perf_counter() - started)
                if status == 200:
                    outcome.timed[calls.correlation_id(call)] = (sent, time.time_ns())
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(watch_lag(deadline, outcome), *(worker(n) for n in range(clients)))
    outcome.seconds = time.perf_counter() - started
    return outcome


async def watch_lag(deadline: float, outcome: Outcome) -> None:
    """How late this process's own event loop wakes up: the generator's share of every latency."""
    while time.monotonic() < deadline:
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        outcome.lag.append(time.perf_counter() - started - 0.005)


async def offer(url: str, queries: list[str], rate: float, seconds: float, seed: int) -> Outcome:
    """Open-loop arrivals: `rate` search_docs calls a second, each on an idle keep-alive connection (a new one
    when none is idle), whatever the answers. Latency runs from the request's send to its answer."""
    calls = Calls(url, queries, seed)
    outcome = Outcome()
    idle: list[tuple[Connection, float]] = []  # with when each was last answered
    pending: set[asyncio.Task[None]] = set()
    deadline = time.monotonic() + seconds

    async def call(number: int) -> None:
        connection, answered = idle.pop() if idle else (Connection(url), None)
        sent, started = time.time_ns(), time.perf_counter()
        try:
            status, _ = await connection.exchange(calls.request(number))
        except (OSError, asyncio.IncompleteReadError):
            outcome.errors += 1
            outcome.error_idle.append(started - answered if answered is not None else None)
            await connection.close()
            return
        outcome.add(status, time.perf_counter() - started)
        if status == 200:
            outcome.timed[calls.correlation_id(number)] = (sent, time.time_ns())
        idle.append((connection, time.perf_counter()))

    async def arrivals() -> None:
        interval, number = 1 / rate, 0
        due = time.perf_counter()
        while time.monotonic() < deadline:
            while due <= time.perf_counter():
                number += 1
                task = asyncio.create_task(call(number))
                pending.add(task)
                task.add_done_callback(pending.discard)
                due += interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await asyncio.gather(*pending)

    started = time.perf_counter()
    await asyncio.gather(watch_lag(deadline, outcome), arrivals())
    outcome.seconds = time.perf_counter() - started
    outcome.connections = len(idle)
    for connection, _ in idle:
        await connection.close()
    return outcome


def phase(
    server: Server,
    queries: list[str],
    clients: int,
    seconds: float,
    seed: int,
    probe: bool = False,
    rate: float = 0,
    flood: subprocess.Popen | None = None,
) -> Outcome:
    """One load phase, with the server's own view of it from the access lines it wrote meanwhile.

    `clients` closed-loop clients, or with `rate`, open-loop arrivals at that rate. With `probe`,
    bench/overload_probe.py times one request every 20 ms meanwhile, from a process of its own.
    Also the CPU each process used (the server by thread; `flood`, wrk, if it runs).
    """
    offset = server.log_path.stat().st_size
    command = [sys.executable, str(Path(__file__).with_name("overload_probe.py")), server.url, str(seconds)]
    prober = subprocess.Popen(command, stdout=subprocess.PIPE) if probe else None
    processes = {"server": server.process.pid, "generator": os.getpid()}
    if prober is not None:
        processes["probe"] = prober.pid
    if flood is not None:
        processes["wrk"] = flood.pid
    before, clock, began = cpu_by_thread(processes), time.perf_counter(), time.time()
    load = (
        offer(server.url, queries, rate, seconds, seed) if rate else drive(server.url, queries, clients, seconds, seed)
    )
    outcome = asyncio.run(load)
    after, elapsed = cpu_by_thread(processes), time.perf_counter() - clock
    outcome.cpu = {name: (after[name] - before.get(name, 0.0)) / elapsed for name in sorted(after)}
    outcome.window = (began, time.time())
    if prober is not None:
        answers = json.loads(prober.communicate(timeout=seconds + 30)[0])
        outcome.probe = {int(status): times for status, times in answers.items()}
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    tools: dict[str, float] = {}
    with server.log_path.open("rb") as log:
        log.seek(offset)
        for line in log:
            if b'"tool_call"' in line:
                event = json.loads(line)
                tools[event.get("correlation_id", "")] = event["duration_ms"] / 1000
            elif b'"http_request"' in line and b'"/mcp"' in line:
                event = json.loads(line)
                outcome.server.setdefault(event["status_code"], []).append(event["duration_ms"] / 1000)
                cid = event.get("correlation_id", "")
                times = outcome.timed.get(cid)
                if times is not None and cid in tools and event["status_code"] == 200:
                    add_stages(stages, times, event, tools[cid])
    outcome.stages = stages
    return outcome


STAGES = ("before_gate", "queued", "service", "tool", "http_mcp", "after", "total")
"""The parts of an admitted call (`add_stages`); `service` is `tool` (the search_docs handler) plus `http_mcp`."""


def add_stages(stages: dict[str, list[float]], times: tuple[int, int], event: dict, tool: float) -> None:
    """One admitted call in parts (seconds), from the client's send and answer times and its log lines.

    The access line's timestamp is when the answer was handed to the socket; its `duration_ms` (service)
    starts after the admission gate, its `queued_ms` is the wait at the gate. `tool` is the tool_call line's
    duration (the search itself, its store calls on the reader threads included), `http_mcp` the rest of
    the service: the HTTP and MCP handling on the event loop. Before the gate: the request's way in (the
    client's write, the server's event loop reading and parsing it); after: the answer's way back.
    """
    sent, answered = times
    stamp = datetime.fromisoformat(event["timestamp"])
    ended = int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000
    service = event["duration_ms"] / 1000
    queued = event.get("queued_ms", 0.0) / 1000
    in_service = ended / 1e9 - service
    stages["before_gate"].append(max(0.0, in_service - queued - sent / 1e9))
    stages["queued"].append(queued)
    stages["service"].append(service)
    stages["tool"].append(tool)
    stages["http_mcp"].append(service - tool)
    stages["after"].append(max(0.0, (answered - ended) / 1e9))
    stages["total"].append((answered - sent) / 1e9)


def cpu_by_thread(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each process, and of the server's event loop and other threads."""
    seconds: dict[str, float] = {}
    for name, pid in processes.items():
        with contextlib.suppress(OSError):
            seconds[name] = _cpu_seconds(Path(f"/proc/{pid}/stat"))  # a process that ended keeps its times
    pid = processes["server"]
    seconds["server: event loop"] = _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))
    seconds["server: other threads"] = seconds["server"] - seconds["server: event loop"]
    return seconds


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def row(name: str, clients: int, outcome: Outcome, rss_before: float, rss_after: float) -> dict[str, object]:
    ok, rejected = outcome.ok(), outcome.rejected()
    server_rejected = [t for status in (429, 503) for t in outcome.server.get(status, [])]
    return {
        "phase": name,
        "clients": clients,
        "admitted_per_s": len(ok) / outcome.seconds,
        "p50_ms": quantile(ok, 0.5),
        "p99_ms": quantile(ok, 0.99),
        "server_p50_ms": quantile(outcome.server.get(200, []), 0.5),
        "server_p99_ms": quantile(outcome.server.get(200, []), 0.99),
        "rejected": len(rejected),
        "rejected_per_s": len(rejected) / outcome.seconds,
        "rejection_p99_ms": quantile(rejected, 0.99),
        "rejection_max_ms": max(rejected, default=float("nan")) * 1000,
        "server_rejection_max_ms": max(server_rejected, default=float("nan")) * 1000,
        "generator_lag_p99_ms": quantile(outcome.lag, 0.99),
        "probe_statuses": {status: len(times) for status, times in outcome.probe.items()},
        "probe_admitted_p99_ms": quantile(outcome.probe.get(200, []), 0.99),
        "probe_rejection_p99_ms": quantile(outcome.probe.get(503, []) + outcome.probe.get(429, []), 0.99),
        "probe_rejection_max_ms": max(outcome.probe.get(503, []) + outcome.probe.get(429, []), default=float("nan"))
        * 1000,
        "statuses": outcome.statuses(),
        "connection_errors": outcome.errors,
        "connection_error_idle_s": outcome.error_idle,
        "offered_per_s": len(outcome.ok() + outcome.rejected()) / outcome.seconds,
        "open_loop_connections": outcome.connections,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "stages": stage_summary(outcome.stages),
        "cpu_cores": outcome.cpu,
        "window": outcome.window,
    }


def stage_summary(stages: dict[str, list[float]]) -> dict[str, object]:
    """p50/p99 of each part of the admitted calls, and the mean of each part over the slowest 1% of calls."""
    total = stages.get("total", [])
    if not total:
        return {}
    slowest = sorted(range(len(total)), key=total.__getitem__)[-max(1, len(total) // 100) :]
    return {
        "matched": len(total),
        **{f"{name}_p50_ms": quantile(values, 0.5) for name, values in stages.items()},
        **{f"{name}_p99_ms": quantile(values, 0.99) for name, values in stages.items()},
        "slowest_1pct_mean_ms": {
            name: 1000 * statistics.fmean(values[n] for n in slowest) for name, values in stages.items()
        },
    }


FLOOD_SCRIPT = r"""
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
%(headers)s
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function delay() return %(interval_ms).3f end
function response(status, headers, body) counts[status] = (counts[status] or 0) + 1 end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("counts")) do total[status] = (total[status] or 0) + count end
  end
  local parts = {}
  for status, count in pairs(total) do table.insert(parts, string.format('"%%d": %%d', status, count)) end
  io.write(string.format('{"requests": %%d, "seconds": %%f, "connect_errors": %%d, "read_errors": %%d, ' ..
    '"timeouts": %%d, "p50_ms": %%f, "p99_ms": %%f, "max_ms": %%f, "statuses": {%%s}}\n',
    summary.requests, summary.duration / 1e6, summary.errors.connect, summary.errors.read, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000, table.concat(parts, ", ")))
end
"""


def start_flood(url: str, query: str, rate: float, connections: int, seconds: float, work: Path) -> subprocess.Popen:
    """wrk sending `rate` calls a second in all over `connections` connections, for `seconds`."""
    headers = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in HEADERS.items())
    script = work / "flood.lua"
    body = search_call(1, query).decode()
    script.write_text(FLOOD_SCRIPT % {"body": body, "headers": headers, "interval_ms": 1000 * connections / rate})
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), f"{url}/mcp"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def flood_result(flood: subprocess.Popen) -> dict[str, object]:
    """wrk's summary: its calls by status and their latency (all statuses together)."""
    output = flood.communicate(timeout=120)[0]
    return json.loads(output.strip().splitlines()[-1])


def healthy_afterwards(server: Server, query: str) -> bool:
    ready = httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    call = httpx.post(f"{server.url}/mcp", content=search_call(1, query), headers=HEADERS, timeout=10)
    return ready and call.status_code == 200 and "result" in call.json()


def find_capacity(server: Server, queries: list[str], seconds: float, seed: int) -> int:
    rates = {}
    for clients in SWEEP:
        outcome = phase(server, queries, clients, seconds, seed + clients)
        rates[clients] = len(outcome.ok()) / outcome.seconds
        print(f"sweep {clients:>2} clients: {rates[clients]:.0f} calls/s", flush=True)
    best = max(rates.values())
    return min(n for n, rate in rates.items() if rate >= 0.95 * best)


def pair(server: Server, queries: list[str], label: str, number: int, args: argparse.Namespace) -> list[dict]:
    """One round on one server: `capacity` clients, then the overload (module docstring: `--arrivals`)."""
    rss = server.rss_mb()
    outcome = phase(server, queries, args.capacity, args.seconds, args.seed + number)
    rows = [row(f"{label}, {args.capacity} clients, round {number + 1}", args.capacity, outcome, rss, server.rss_mb())]
    print(json.dumps(rows[-1]), flush=True)
    rss, seed = server.rss_mb(), args.seed + number
    capacity_rate, flood = len(outcome.ok()) / outcome.seconds, None
    if args.arrivals == "wrk":
        rate = capacity_rate * (args.factor - 1)
        flood = start_flood(server.url, queries[0], rate, args.capacity * (args.factor - 1), args.seconds, args.work)
        outcome = phase(server, queries, 0, args.seconds, seed, probe=True, rate=capacity_rate, flood=flood)
        name, clients = f"{label}, {capacity_rate:.0f} + wrk {rate:.0f} calls/s, round {number + 1}", 0
    elif args.arrivals == "open":
        rate = args.factor * capacity_rate
        outcome = phase(server, queries, 0, args.seconds, seed, probe=True, rate=rate)
        name, clients = f"{label}, {rate:.0f} calls/s offered, round {number + 1}", 0
    else:
        clients = args.capacity * args.factor
        outcome = phase(server, queries, clients, args.seconds, seed, probe=True)
        name = f"{label}, {clients} clients, round {number + 1}"
    rows.append(row(name, clients, outcome, rss, server.rss_mb()))
    if flood is not None:
        rows[-1]["flood"] = flood_result(flood)
    print(json.dumps(rows[-1]), flush=True)
    return rows


def summary(label: str, rows: list[dict], healthy: bool) -> dict[str, object]:
    """The rounds of one configuration, and the p99 ratio within each (10x over capacity)."""
    ratios = [rows[n + 1]["p99_ms"] / rows[n]["p99_ms"] for n in range(0, len(rows), 2)]
    return {
        "server": label,
        "rows": rows,
        "p99_ratios": ratios,
        "median_p99_ratio": statistics.median(ratios),
        "healthy_afterwards": healthy,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    """Every configuration on a server of its own, all running; the rounds go through them in turn."""
    work = args.work = Path(tempfile.mkdtemp(prefix="docserver-overload-"))
    template, queries = build_database(work, args.chunks)
    base_env = {"DOCSERVER_CACHE_SIZE": "0", "LOG_LEVEL": "INFO"}
    configs: dict[str, dict[str, str]] = {} if args.skip_unlimited else {"no limit": base_env}
    with ExitStack() as stack:
        if not args.capacity:
            server = stack.enter_context(
                serve(docserver_env(fresh_copy(template, work, "sweep"), base_env), work / "sweep.log")
            )
            phase(server, queries, 4, 3, args.seed)  # warm-up
            args.capacity = find_capacity(server, queries, args.seconds / 2, args.seed)
        for extra in args.config or [[]]:
            limited = {**base_env, "DOCSERVER_MAX_INFLIGHT": str(args.capacity), **dict(extra)}
            configs[" ".join(f"{k}={v}" for k, v in limited.items() if k != "DOCSERVER_CACHE_SIZE")] = limited
        servers = {}
        for number, (label, env) in enumerate(configs.items()):
            database = fresh_copy(template, work, f"config-{number}")
            servers[label] = stack.enter_context(serve(docserver_env(database, env), work / f"config-{number}.log"))
            phase(servers[label], queries, args.capacity, 3, args.seed)  # warm-up
        rows: dict[str, list[dict]] = {label: [] for label in servers}
        for number in range(args.rounds):
            for label, server in servers.items():
                rows[label] += pair(server, queries, label, number, args)
        results = [
            summary(label, rows[label], healthy_afterwards(server, queries[0])) for label, server in servers.items()
        ]
    return {"config": {**vars(args)}, "capacity": args.capacity, "servers": results}


def profile_flood(args: argparse.Namespace) -> None:
    """A CPU profile (pprof) of a limited server while `factor` x `capacity` clients flood it: where its time goes."""
    work = Path(tempfile.mkdtemp(prefix="docserver-overload-"))
    template, queries = build_database(work, args.chunks)
    env = {
        "DOCSERVER_CACHE_SIZE": "0",
        "LOG_LEVEL": "INFO",
        "DOCSERVER_MAX_INFLIGHT": str(args.capacity),
        "ENABLE_PROFILING": "true",
        "PROFILING_TOKEN": "overload-bench",
        "PROFILING_MIN_INTERVAL": "0",
    }
    with serve(docserver_env(fresh_copy(template, work, "profiled"), env), work / "profiled.log") as server:
        phase(server, queries, args.capacity, 3, args.seed)  # warm-up
        url = f"{server.url}/debug/pprof/profile?seconds={int(args.seconds)}"
        headers = {"Authorization": "Bearer overload-bench"}

        def fetch() -> None:
            time.sleep(1)  # the flood is under way
            args.profile.write_bytes(httpx.get(url, headers=headers, timeout=args.seconds + 30).content)

        fetching = threading.Thread(target=fetch)
        fetching.start()
        outcome = phase(server, queries, args.capacity * args.factor, args.seconds + 2, args.seed)
        fetching.join()
    print(f"profile of {len(outcome.ok())} admitted and {len(outcome.rejected())} shed calls: {args.profile}")


def markdown(result: dict[str, object]) -> str:
    head = (
        "| phase | admitted calls/s | admitted p50 / p99 ms (server-side) | p99 ms: before the gate / queued / "
        "search | rejected/s | rejection p99 / max ms | generator lag p99 ms | probe: rejection p99 / max ms "
        "| statuses | RSS MB |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    out = []
    for server in result["servers"]:  # type: ignore[attr-defined]
        lines = [
            f"| {r['phase']} | {r['admitted_per_s']:.0f} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} "
            f"({r['server_p50_ms']:.1f} / {r['server_p99_ms']:.1f}) | {parts(r['stages'])} | {r['rejected_per_s']:.0f} "
            f"| {r['rejection_p99_ms']:.1f} / {r['rejection_max_ms']:.1f} | {r['generator_lag_p99_ms']:.1f} "
            f"| {r['probe_rejection_p99_ms']:.1f} / {r['probe_rejection_max_ms']:.1f} "
            f"| {', '.join(f'{k}: {v}' for k, v in sorted(r['statuses'].items()))} "
            f"| {r['rss_before_mb']:.0f} → {r['rss_after_mb']:.0f} |"
            for r in server["rows"]
        ]
        ratios = ", ".join(f"{ratio:.1f}" for ratio in server["p99_ratios"])
        out.append(
            head
            + "\n".join(lines)
            + f"\n\np99 ratio 10x / capacity by round: {ratios} (median {server['median_p99_ratio']:.1f}); "
            f"healthy afterwards: {server['healthy_afterwards']}\n"
        )
    return "\n".join(out)


def parts(stages: dict) -> str:
    if not stages:
        return ""
    return " / ".join(f"{stages[f'{name}_p99_ms']:.1f}" for name in ("before_gate", "queued", "tool"))


def settings(text: str) -> list[tuple[str, str]]:
    """`NAME=VALUE,NAME=VALUE` (empty: the defaults)."""
    return [(name, value) for name, _, value in (item.partition("=") for item in text.split(",") if item)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--capacity", type=int, default=0, help="in-flight limit (default: found by the sweep)")
    parser.add_argument(
        "--config",
        type=settings,
        action="append",
        help="settings of one limited server, NAME=VALUE,NAME=VALUE ('' for the defaults); repeat to compare",
    )
    parser.add_argument(
        "--arrivals",
        choices=("closed", "open", "wrk"),
        default="closed",
        help="overload as factor x capacity clients that never back off (closed), as arrivals at factor x "
        "the capacity phase's rate (open), or as arrivals at that rate plus wrk at factor - 1 times it (wrk)",
    )
    parser.add_argument("--skip-unlimited", action="store_true", help="only the limited servers")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("bench/results/overload.json"))
    parser.add_argument("--profile", type=Path, help="only profile a limited server under the flood, into this file")
    args = parser.parse_args()
    if args.profile is not None:
        if not args.capacity:
            parser.error("--profile needs --capacity")
        profile_flood(args)
        return
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(markdown(result))


if __name__ == "__main__":
    main()
