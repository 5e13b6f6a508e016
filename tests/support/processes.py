"""A helper process's life: start it with its output in a log file, wait until it answers, stop it.

Shared by the tests (docserver, via docserver_process), bench/harness.py and
deploy/stack.py (Prometheus, Alertmanager).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    """Whether a GET of `url` answers 200."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_until_answers(
    process: subprocess.Popen[bytes], url: str, log_path: Path, *, name: str, timeout: float = START_TIMEOUT
) -> None:
    """Return once `url` answers 200; RuntimeError, with the log, if `process` exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not answers(url):
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{_read(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer {url} within {timeout:g} s:\n{_read(log_path)}")
        time.sleep(0.05)  # polling for start-up; the condition, not the sleep, is what is awaited


def _read(log_path: Path) -> str:
    return log_path.read_text(errors="replace")


def stop(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Terminate `process` if it still runs (kill it after `timeout` s); its exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@contextmanager
def running(
    command: list[str],
    log_path: Path,
    ready_url: str,
    env: dict[str, str] | None = None,
    *,
    name: str | None = None,
    append: bool = False,
    stop_timeout: float = 10,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` (output to `log_path`) until the context exits; wait until `ready_url` answers 200."""
    with log_path.open("ab" if append else "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until_answers(process, ready_url, log_path, name=name or command[0])
        yield process
    finally:
        stop(process, stop_timeout)


def npm_ci(folder: Path, what: str, timeout: float) -> None:
    """`npm ci` in `folder` from its lock file; a failure is the test's, with npm's own words."""
    npm = shutil.which("npm")
    assert npm is not None, f"npm is needed to install {what}"
    command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr
