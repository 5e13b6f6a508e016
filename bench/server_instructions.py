"""Server instructions per cache-hit call, measured from outside: `docserver serve` under callgrind.

    python bench/server_instructions.py [--calls 100 400] [--configs off ...]
        [--schedule-delay MS] [--searches] [--chunks N] [--out bench/results/server_instructions.json]

The real server runs under `valgrind --tool=callgrind` (every thread counted),
a plain HTTP client in this process sends current-protocol `search_docs` calls
that all hit the result cache after a warm-up, and the server is stopped with
SIGTERM so callgrind writes its total. Two runs per configuration, with the
small and the large call count: the difference divided by the difference of
the counts is one call's cost, start-up and shutdown excluded. Unlike
bench/instructions.py, the client's own work is not in the count.
Trace export goes over OTLP/HTTP to a sink in this process, on the exporter's
default schedule (every 5 s). Under valgrind a call is slow enough that each
5-second export carries only a few calls' spans, and how many exports fall
within the measured calls follows wall time; `--schedule-delay 600000` leaves
export to full batches (512 spans), as on a busy server, and to the flush at
shutdown, which the small and the large run both make once.

`--searches` turns the result cache off, so every call searches the store;
`--chunks N` serves the generated corpus of bench/overhead.py (about N chunks,
its queries in turn, ingested once before any run and copied for each)
instead of the test corpus: with both, the default 10,000-chunk search of the
overhead table, the server's instructions only.

Two settings of the server's environment take noise out that is neither the
calls' nor telemetry's:
- OPENBLAS_NUM_THREADS=1: numpy's OpenBLAS otherwise starts a worker thread that
  spins after start-up for a wall-clock time (its timeout is in CPU cycles): under
  valgrind a random 6 to 20 M instructions a run, so ±90 k a call at 150 calls. A
  cache hit does no BLAS work, so one thread changes nothing else.
- PYTHONHASHSEED (--hash-seed, 0 by default): each process otherwise hashes strings
  with a random seed, so the same dict lookups meet different collisions in the
  small and the large run, and the lookups of one call cost 5 k in one process and
  50 k in the next (callgrind's `unicodekeys_lookup_unicode`). With one seed for
  every run, the two runs of a configuration differ only by the calls.
And the docserver package is compiled to bytecode before the first run: a server
that compiled a module changed since the last run would count the compiling.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import STEADY_COUNTS, build_database, compile_docserver, fresh_copy, per_call, write_instruction_table
from support.docserver_process import docserver_env
from support.docserver_process import run_cli as run_docserver
from support.otlp_receiver import OtlpReceiver
from support.processes import free_port, wait_until_answers

CONFIGS = {
    "off": {"DOCSERVER_TELEMETRY": "off", "LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"},
    "metrics+logs": {"OTEL_SDK_DISABLED": "true"},
    "+tracing 0 (unsampled)": {"OTEL_TRACE_SAMPLE_RATE": "0", "TRACED": "1"},
    "+tracing 0.1": {"OTEL_TRACE_SAMPLE_RATE": "0.1", "TRACED": "1"},
    "+tracing 1.0": {"OTEL_TRACE_SAMPLE_RATE": "1.0", "TRACED": "1"},
}
WARM_UP = 20
QUERIES = ["enable TLS certificate", "rotate access tokens", "build from source", "journal flush interval"]
HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/call",
    "mcp-name": "search_docs",
}
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def serve_and_count(
    env: dict[str, str], calls: int, work: Path, threads: list[int] | None = None, queries: list[str] = QUERIES
) -> int:
    """The server's instructions over a run of `calls` calls; with `threads`, each thread's total is added to it
    (in the order callgrind numbers the threads: their creation order)."""
    port = free_port()
    out = work / f"callgrind-{port}.out"
    log = work / f"server-{port}.log"
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    if threads is not None:
        command.append("--separate-threads=yes")
    command += [sys.executable, "-m", "docserver"]
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [*command, "serve", "--port", str(port)], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answers(server, f"{url}/healthz", log, name="docserver under valgrind", timeout=1800)
        with httpx.Client(base_url=url, timeout=120) as client:
            for index in range(WARM_UP + calls):
                arguments = {"query": queries[index % len(queries)]}
                body = {
                    "jsonrpc": "2.0",
                    "id": index,
                    "method": "tools/call",
                    "params": {"name": "search_docs", "_meta": META, "arguments": arguments},
                }
                response = client.post("/mcp", json=body, headers=HEADERS)
                assert response.status_code == 200, response.text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=600)
    if threads is not None:
        parts = sorted(work.glob(f"{out.name}-*"), key=lambda path: int(path.name.rsplit("-", 1)[1]))
        threads += [int(re.search(r"^totals: (\d+)", path.read_text(), re.M).group(1)) for path in parts]  # type: ignore[union-attr]
    match = re.search(r"Collected : (\d+)", log.read_text(errors="replace"))
    if match is None:
        raise RuntimeError(f"callgrind printed no total:\n{log.read_text(errors='replace')[-2000:]}")
    return int(match.group(1))


def fresh_env(template: Path, work: Path, settings: dict[str, str]) -> dict[str, str]:
    """A server's environment on a fresh copy of the prepared database."""
    return docserver_env(fresh_copy(template, work, "run"), settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs=2, default=[100, 400])
    parser.add_argument("--out", type=Path, default=Path("bench/results/server_instructions.json"))
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--threads", action="store_true", help="also each server thread's instructions per call")
    parser.add_argument("--hash-seed", type=int, default=0, help="PYTHONHASHSEED of every server run")
    parser.add_argument("--schedule-delay", type=int, help="OTEL_BSP_SCHEDULE_DELAY of traced runs, ms")
    parser.add_argument("--searches", action="store_true", help="result cache off: every call searches")
    parser.add_argument("--chunks", type=int, help="serve the generated corpus of about this many chunks")
    args = parser.parse_args()
    compile_docserver()
    work = Path(tempfile.mkdtemp(prefix="docserver-server-callgrind-"))
    queries = QUERIES
    if args.chunks:
        template, queries = build_database(work, args.chunks)
    else:
        template = work / "bench.db"
        corpus = Path(__file__).resolve().parents[1] / "tests" / "corpus"
        ingested = run_docserver("ingest", str(corpus), "--source", "corpus", env=docserver_env(template))
        assert ingested.returncode == 0, ingested.stderr
    rows = []
    with OtlpReceiver(mode="discard") as sink:
        for name in args.configs:
            extra = CONFIGS[name]
            settings = {key: value for key, value in extra.items() if key != "TRACED"}
            if "TRACED" in extra:
                # The exporter's default 5 s schedule: under valgrind's slowdown a run of 400 calls
                # still sees a few exports, each carrying about a hundred calls' spans, as a busy
                # server's would. A short delay would charge every call a whole HTTP export.
                settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
                if args.schedule_delay is not None:
                    settings["OTEL_BSP_SCHEDULE_DELAY"] = str(args.schedule_delay)
            if args.searches:
                settings["DOCSERVER_CACHE_SIZE"] = "0"
            steady = STEADY_COUNTS | {"PYTHONHASHSEED": str(args.hash_seed)}
            small: list[int] | None = [] if args.threads else None
            large: list[int] | None = [] if args.threads else None
            totals = (
                serve_and_count(fresh_env(template, work, settings) | steady, args.calls[0], work, small, queries),
                serve_and_count(fresh_env(template, work, settings) | steady, args.calls[1], work, large, queries),
            )
            cost = per_call(totals, tuple(args.calls))
            rows.append({"configuration": name, "instructions_per_call": cost})
            if small is not None and large is not None:
                rows[-1]["threads"] = [per_call(pair, tuple(args.calls)) for pair in zip(small, large, strict=False)]
            print(f"{name:>14}: {cost / 1e6:.3f} M instructions per call {rows[-1].get('threads', '')}", flush=True)
    write_instruction_table(rows, args.out, "server instructions")


if __name__ == "__main__":
    main()
