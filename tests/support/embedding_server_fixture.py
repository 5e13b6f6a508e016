"""start_embedding_server: run tests/embedding_server.py as a subprocess on loopback."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

SERVER_SCRIPT = Path(__file__).with_name("embedding_server.py")
READY_TIMEOUT = 30.0


@contextmanager
def start_embedding_server(
    *args: str,
    log_path: Path | None = None,
    script: Path = SERVER_SCRIPT,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield (base URL ending in /v1, process); the server is stopped on exit.

    Waits for the server's `READY <port>` line, so the URL answers at once.
    Extra `args` go to the server (e.g. "--api-key", "sk-test"). The server
    then logs JSON lines on stdout: they are copied to `log_path` (complete
    once the context has exited), or discarded, by a thread that keeps the
    pipe drained so the server never blocks on a full stdout.
    """
    process = subprocess.Popen(
        [sys.executable, str(script), "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        env=env,
    )
    drain: threading.Thread | None = None
    try:
        port = _wait_ready(process)
        assert process.stdout is not None
        drain = threading.Thread(target=_copy, args=(process.stdout, log_path), name="embedding-server-log")
        drain.start()
        yield f"http://127.0.0.1:{port}/v1", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if drain is not None:
            drain.join(timeout=10)  # the pipe reaches EOF once the process has exited
        assert process.stdout is not None
        process.stdout.close()


def _copy(stdout: IO[bytes], log_path: Path | None) -> None:
    with log_path.open("wb") if log_path is not None else open(os.devnull, "wb") as sink:
        while chunk := stdout.read1(65536):  # type: ignore[attr-defined]
            sink.write(chunk)
            sink.flush()


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
