"""Run `docserver` as a real subprocess, the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.processes import free_port, running, stop, wait_until_answers

__all__ = ["ServerProcess", "docserver_env", "free_port", "run_cli", "start_docserver", "stop"]

# Settings the server reads from its environment: a test (or bench) run passes only its own.
SETTING_PREFIXES = ("DOCSERVER_", "LOG_", "OTEL_", "ENABLE_PROF")


def docserver_env(database: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent environment minus docserver's settings (SETTING_PREFIXES), plus a database and `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(SETTING_PREFIXES)}
    env["DOCSERVER_DATABASE_URL"] = f"sqlite:///{database}"
    env.update(extra or {})
    return env


def run_cli(*args: str, env: Mapping[str, str], timeout: float | None = 120) -> subprocess.CompletedProcess[str]:
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
def start_docserver(
    env: Mapping[str, str], log_path: Path, *args: str, append_log: bool = False
) -> Iterator[ServerProcess]:
    """Start `docserver serve` on a free loopback port and wait until /healthz answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "docserver", "serve", "--port", str(port), *args]
    with running(
        command, log_path, f"{url}/healthz", dict(env), name="docserver", append=append_log, stop_timeout=30
    ) as process:
        yield ServerProcess(url, process, log_path)


def _wait_healthy(server: ServerProcess) -> None:
    wait_until_answers(server.process, f"{server.url}/healthz", server.log_path, name="docserver")
