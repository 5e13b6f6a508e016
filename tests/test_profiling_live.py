"""Real profiles from a real uvicorn server on loopback, judged by the real `go tool pprof`.

The server runs in a thread of this process, so a test can make it busy (a
handler that burns CPU on the event loop, a thread that burns CPU, a handler
that keeps memory) while a profile runs, and then check that pprof reads
the profile and shows that work. Tests need `go` (Debian `golang-go`) and
fail without it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from docserver.config import load_settings
from docserver.observability.profiling import profiling_routes
from support.captured_logs import capture_events

TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
LOOP_THREAD = "live-uvicorn"
TOP_LINE = re.compile(r"^\s*(\S+)\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)\s+([\d.]+)%\s+(.+?)\s*$")


# --- the work the profiles must show -------------------------------------------------------------


def crunch_numbers(seconds: float) -> int:
    """Pure CPU for `seconds`."""
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        for i in range(2000):
            total += i * i
    return total


def burn_cpu_until(stop: threading.Event) -> None:
    while not stop.is_set():
        crunch_numbers(0.01)


HOARD: list[bytearray] = []


def hoard_memory(blocks: int) -> None:
    HOARD.extend(bytearray(10_000) for _ in range(blocks))


async def spin(request: Request) -> PlainTextResponse:
    """Burns CPU on the event loop (the profile must show spin -> crunch_numbers); answers the CPU seconds used."""
    started = time.thread_time()
    crunch_numbers(float(request.query_params["seconds"]))
    return PlainTextResponse(str(time.thread_time() - started))


async def allocate(request: Request) -> PlainTextResponse:
    hoard_memory(int(request.query_params["blocks"]))
    return PlainTextResponse("kept")


PARKED: list[asyncio.Task[None]] = []


async def parked_forever(release: asyncio.Event) -> None:
    await release.wait()


async def park(request: Request) -> PlainTextResponse:
    release = asyncio.Event()
    request.app.state.release = release
    PARKED.extend(asyncio.create_task(parked_forever(release)) for _ in range(int(request.query_params["n"])))
    return PlainTextResponse("parked")


async def unpark(request: Request) -> PlainTextResponse:
    request.app.state.release.set()
    await asyncio.gather(*PARKED)
    PARKED.clear()
    return PlainTextResponse("released")


async def probe(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


# --- fixtures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    url: str
    port: int

    def get(self, path: str, timeout: float = 30, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=timeout, headers=headers)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    settings = load_settings(profiling={"enabled": True, "token": TOKEN, "min_interval": 0, "max_seconds": 10})
    routes = [
        Route("/spin", spin),
        Route("/allocate", allocate),
        Route("/park", park),
        Route("/unpark", unpark),
        Route("/probe", probe),
        *profiling_routes(settings),
    ]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections queue until uvicorn accepts them: no start-up race
    port = sock.getsockname()[1]
    config = uvicorn.Config(Starlette(routes=routes), log_level="warning", access_log=False, ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=LOOP_THREAD, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


class ProfileLog:
    """Events a test can wait on: a profile has started / finished (no sleeps standing in for them).

    A structlog processor, placed before the capturing one."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.finished = threading.Event()
        self.finished_events: list[dict[str, Any]] = []

    def __call__(self, logger: object, method_name: str, event: dict[str, Any]) -> dict[str, Any]:
        if event["event"] == "pprof_profile_started":
            self.started.set()
        elif event["event"] == "pprof_profile_finished":
            self.finished_events.append(event)
            self.finished.set()
        return event


@pytest.fixture
def profile_log() -> Iterator[ProfileLog]:
    watcher = ProfileLog()
    with capture_events():
        structlog.configure(processors=[watcher, *structlog.get_config()["processors"]])
        yield watcher


@pytest.fixture(scope="session")
def go() -> str:
    path = shutil.which("go")
    if path is None:
        pytest.fail("`go tool pprof` is the judge of these tests: apt-get install -y golang-go", pytrace=False)
    return path


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-client") as executor:
        yield executor


def run_pprof(go: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PPROF_TMPDIR": str(tmp_path)}  # where pprof saves fetched profiles
    return subprocess.run([go, "tool", "pprof", *args], capture_output=True, text=True, timeout=60, env=env)


def pprof(go: str, tmp_path: Path, *args: str) -> str:
    result = run_pprof(go, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def top(go: str, tmp_path: Path, profile: Path, *args: str) -> dict[str, tuple[float, float]]:
    """function -> (flat %, cum %) from `go tool pprof -top`."""
    output = pprof(go, tmp_path, "-top", "-nodecount=500", "-nodefraction=0", "-edgefraction=0", *args, str(profile))
    rows = {}
    for line in output.splitlines():
        match = TOP_LINE.match(line)
        if match:
            rows[match.group(6)] = (float(match.group(2)), float(match.group(5)))
    assert rows, output
    return rows


def thread_totals(go: str, tmp_path: Path, profile: Path) -> dict[str, float]:
    """thread label -> milliseconds (CPU or wall), from `go tool pprof -tags`."""
    output = pprof(go, tmp_path, "-tags", "-unit=ms", str(profile))
    return {m.group(2): float(m.group(1)) for m in re.finditer(r"^\s+([\d.]+)ms \(\s*[\d.]+%\): (.+)$", output, re.M)}


def flat_ms_by_function(go: str, tmp_path: Path, profile: Path, *args: str) -> dict[str, float]:
    """function -> flat milliseconds, from `go tool pprof -top -unit=ms`."""
    output = pprof(go, tmp_path, "-top", "-unit=ms", "-nodefraction=0", *args, str(profile))
    return {m.group(6): float(m.group(1).removesuffix("ms")) for m in map(TOP_LINE.match, output.splitlines()) if m}


def fetch(live: LiveServer, path: str, target: Path) -> Path:
    response = live.get(path, headers=BEARER)
    assert response.status_code == 200, response.text
    target.write_bytes(response.content)
    return target


def start_profile(pool: ThreadPoolExecutor, live: LiveServer, path: str, target: Path, log: ProfileLog) -> Future[Path]:
    future = pool.submit(fetch, live, path, target)
    assert log.started.wait(10), "the profile did not start"
    return future


# --- tests ---------------------------------------------------------------------------------------


def test_cpu_profile_shows_the_busy_coroutine_chain(
    go: str, live: LiveServer, profile_log: ProfileLog, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    profile = start_profile(pool, live, "/debug/pprof/profile?seconds=2", tmp_path / "cpu.pb.gz", profile_log)
    spun = live.get("/spin?seconds=1.2")
    path = profile.result()

    raw = pprof(go, tmp_path, "-raw", str(path))
    assert "PeriodType: cpu nanoseconds" in raw
    assert "Period: 10000000" in raw
    assert "samples/count cpu/nanoseconds" in raw
    assert re.search(rf"crunch_numbers {re.escape(__file__)}:\d+", raw)

    rows = top(go, tmp_path, path)
    assert max(rows, key=lambda name: rows[name][0]) == "crunch_numbers"
    assert rows["crunch_numbers"][0] >= 50, rows
    # Plausible: about the CPU time /spin measured for itself (less than 1.2 s on a busy
    # machine), not the idle rest of the 2 s.
    flat_ms = re.search(r"^\s*([\d.]+)ms .* crunch_numbers$", pprof(go, tmp_path, "-top", "-unit=ms", str(path)), re.M)
    assert flat_ms, rows
    assert 0.75 <= float(flat_ms.group(1)) / 1000 / float(spun.text) <= 1.25, (flat_ms.group(0), spun.text)

    traces = pprof(go, tmp_path, "-traces", str(path))
    chains = [block for block in traces.split("-----------+") if "crunch_numbers" in block]
    assert chains and all(re.search(r"crunch_numbers\s*\n\s*spin\b", block) for block in chains), traces


def test_idle_time_does_not_dominate_a_cpu_profile_but_does_a_wall_profile(
    go: str, live: LiveServer, tmp_path: Path
) -> None:
    stop = threading.Event()
    burner = threading.Thread(target=burn_cpu_until, args=(stop,), name="burner")
    burner.start()
    try:
        cpu = fetch(live, "/debug/pprof/profile?seconds=1", tmp_path / "cpu.pb.gz")
        wall = fetch(live, "/debug/pprof/wall?seconds=1", tmp_path / "wall.pb.gz")
    finally:
        stop.set()
        burner.join()
    assert "wall/nanoseconds" in pprof(go, tmp_path, "-raw", str(wall))

    # Per thread (the `thread` label): the event loop is idle but for serving the profile.
    cpu_ms, wall_ms = thread_totals(go, tmp_path, cpu), thread_totals(go, tmp_path, wall)
    assert not [name for name in [*cpu_ms, *wall_ms] if name.startswith("docserver-pprof")]  # not itself
    assert cpu_ms.get(LOOP_THREAD, 0.0) < 100, cpu_ms
    assert cpu_ms["burner"] >= 5 * cpu_ms.get(LOOP_THREAD, 0.0), cpu_ms
    assert wall_ms[LOOP_THREAD] >= 800 and wall_ms["burner"] >= 800, wall_ms
    # ... and in the wall profile the loop's second is spent in its idle wait: the selector,
    # or Runner.run under uvloop (whose wait is C code).
    loop_rows = flat_ms_by_function(go, tmp_path, wall, f"-tagfocus=thread={LOOP_THREAD}")
    idle_function = max(loop_rows, key=loop_rows.__getitem__)
    assert re.search(r"select|Runner\.run$", idle_function), loop_rows
    assert loop_rows[idle_function] >= 0.8 * wall_ms[LOOP_THREAD], loop_rows


def test_heap_profile_is_led_by_the_allocation_site(
    go: str, live: LiveServer, profile_log: ProfileLog, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    profile = start_profile(pool, live, "/debug/pprof/heap?seconds=1&gc=1", tmp_path / "heap.pb.gz", profile_log)
    try:
        assert live.get("/allocate?blocks=1000").status_code == 200
        path = profile.result()
    finally:
        HOARD.clear()

    raw = pprof(go, tmp_path, "-raw", str(path))
    assert "alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes" in raw
    assert "PeriodType: space bytes" in raw
    assert re.search(rf"hoard_memory {re.escape(__file__)}:\d+", raw)
    for index in ("inuse_space", "alloc_space"):
        rows = top(go, tmp_path, path, f"-sample_index={index}")
        assert max(rows, key=lambda name: rows[name][0]) == "hoard_memory", rows
        assert rows["hoard_memory"][0] >= 80, rows
        assert rows["allocate"][1] >= 80, rows  # the handler is on the allocation stacks (cum %)


def test_tasks_profile_counts_the_tasks_waiting_at_each_stack(go: str, live: LiveServer, tmp_path: Path) -> None:
    assert live.get("/park?n=5").status_code == 200
    try:
        path = fetch(live, "/debug/pprof/tasks", tmp_path / "tasks.pb.gz")
        text = live.get("/debug/pprof/tasks?debug=1", headers=BEARER).text
    finally:
        assert live.get("/unpark").status_code == 200

    raw = pprof(go, tmp_path, "-raw", str(path))
    assert "PeriodType: tasks count" in raw
    parked_location = re.search(r"^\s+(\d+): 0x0 M=1 parked_forever ", raw, re.MULTILINE)
    assert parked_location, raw
    assert re.search(rf"^\s+5: \d+ {parked_location.group(1)} ", raw, re.MULTILINE), raw
    assert "parked_forever" in top(go, tmp_path, path)
    assert text.count("coro=parked_forever") == 5
    assert "Event.wait (" in text


def test_go_tool_pprof_fetches_live_profiles_with_the_token_in_the_url(
    go: str, live: LiveServer, tmp_path: Path
) -> None:
    base = f"http://:{TOKEN}@127.0.0.1:{live.port}/debug/pprof"
    # With seconds=1 go tool pprof gives up after 1.5 s: the server must answer in time.
    cpu = pprof(go, tmp_path, "-top", f"{base}/profile?seconds=1")
    assert "Type: cpu" in cpu
    assert "Type: wall" in pprof(go, tmp_path, "-top", f"{base}/profile?seconds=1&mode=wall")
    assert "Type: inuse_space" in pprof(go, tmp_path, "-top", f"{base}/heap?seconds=1")
    assert "Type: tasks" in pprof(go, tmp_path, "-top", f"{base}/tasks")


def test_go_tool_pprof_prints_the_servers_error_message(go: str, live: LiveServer, tmp_path: Path) -> None:
    wrong = run_pprof(go, tmp_path, "-top", f"http://:nope@127.0.0.1:{live.port}/debug/pprof/profile?seconds=1")
    too_long = run_pprof(go, tmp_path, "-top", f"http://:{TOKEN}@127.0.0.1:{live.port}/debug/pprof/heap?seconds=11")
    assert wrong.returncode != 0
    assert "401 Unauthorized - unauthorized" in wrong.stderr
    assert too_long.returncode != 0
    assert "exceeds PROFILING_MAX_SECONDS (10s)" in too_long.stderr


def test_the_server_keeps_answering_while_a_cpu_profile_runs(
    live: LiveServer, profile_log: ProfileLog, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    profile = start_profile(pool, live, "/debug/pprof/profile?seconds=2", tmp_path / "cpu.pb.gz", profile_log)
    latencies = []
    with httpx.Client(base_url=live.url, timeout=5) as client:
        while not profile.done():
            started = time.perf_counter()
            assert client.get("/probe").status_code == 200
            latencies.append(time.perf_counter() - started)
    profile.result()
    assert len(latencies) >= 20
    assert max(latencies) < 0.5, max(latencies)
    assert sorted(latencies)[len(latencies) // 2] < 0.05


def test_a_client_that_disconnects_stops_its_profile(live: LiveServer, profile_log: ProfileLog) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        live.get("/debug/pprof/profile?seconds=10", headers=BEARER, timeout=0.5)
    assert profile_log.finished.wait(5)
    assert time.monotonic() - started < 3
    assert profile_log.finished_events[0]["client_gone"] is True
    assert live.get("/debug/pprof/wall?seconds=1", headers=BEARER).status_code == 200  # the gate is free
