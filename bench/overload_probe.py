"""A probe for bench/overload.py: one request at a time, at a low rate, from a process of its own.

    python bench/overload_probe.py URL SECONDS [INTERVAL]

The load generator's event loop runs late under its own load; this process
does nothing else, so what it times is the server's answer (and the machine's
scheduling). Prints {"status": [seconds, ...]} as JSON.
"""

from __future__ import annotations

import json
import sys
import time

from harness import HEADERS
from overload import search_call
from rawhttp import BlockingConnection, post_request


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.02
    request = post_request(url, "/mcp", HEADERS, search_call(1, "probe"))
    connection = BlockingConnection(url)
    latencies: dict[int, list[float]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        status = connection.exchange(request)
        latencies.setdefault(status, []).append(time.perf_counter() - started)
        time.sleep(interval)
    print(json.dumps(latencies))


if __name__ == "__main__":
    main()
