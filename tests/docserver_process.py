"""Run `docserver` as a real subprocess, the way a user does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docserver_env(database: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent environment minus DOCSERVER_* and LOG_* settings, plus a database and `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DOCSERVER_", "LOG_", "OTEL_"))}
    env["DOCSERVER_DATABASE_URL"] = f"sqlite:///{database}"
    env.update(extra or {})
    return env


def run_cli(*args: str, env: Mapping[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docserver", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def start_docserver(env: Mapping[str, str], log_path: Path, *args: str) -> Iterator[ServerProcess]:
    """Start `docserver serve` on a free loopback port and wait until /healthz answers."""
    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "docserver", "serve", "--port", str(port), *args],
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def _wait_healthy(server: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"docserver exited with {server.process.returncode}:\n{server.logs()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling for start-up; the condition, not the sleep, is what is awaited
    raise RuntimeError(f"docserver did not answer /healthz within {START_TIMEOUT} s:\n{server.logs()}")
