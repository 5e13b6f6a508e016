"""start_embedding_server: run tests/embedding_server.py as a subprocess on loopback."""

from __future__ import annotations

import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_SCRIPT = Path(__file__).with_name("embedding_server.py")
READY_TIMEOUT = 30.0


@contextmanager
def start_embedding_server(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL ending in /v1, process); the server is stopped on exit.

    Waits for the server's `READY <port>` line, so the URL answers at once.
    Extra `args` go to the server (e.g. "--api-key", "sk-test").
    """
    process = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT), "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
    )
    try:
        port = _wait_ready(process)
        yield f"http://127.0.0.1:{port}/v1", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def _wait_ready(process: subprocess.Popen[bytes]) -> int:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=READY_TIMEOUT):
            raise RuntimeError(f"embedding server printed nothing within {READY_TIMEOUT:g} s")
    line = process.stdout.readline().decode().strip()
    if not line.startswith("READY "):
        raise RuntimeError(f"embedding server did not start (exit code {process.wait()}): {line!r}")
    return int(line.split()[1])
