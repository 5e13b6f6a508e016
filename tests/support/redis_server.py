"""A real Redis for tests: the machine's own on 127.0.0.1:6379 when it answers, else one started here."""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import time

MACHINE_REDIS = ("127.0.0.1", 6379)


def answers(host: str, port: int) -> bool:
    """Whether a Redis on host:port answers PING."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(port: int) -> subprocess.Popen[bytes]:
    """`redis-server` on 127.0.0.1:port, keeping nothing on disk; returns once it answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no Redis answers on 127.0.0.1:6379 and redis-server is not installed (apt install redis)")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not answers("127.0.0.1", port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.02)  # polling for start-up; the condition is what is awaited
    return process


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)


_started: subprocess.Popen[bytes] | None = None
_url: str | None = None


def redis_url() -> str:
    """The test session's Redis: the machine's, or one started on a free port (stopped at exit)."""
    global _started, _url
    if _url is None:
        if answers(*MACHINE_REDIS):
            _url = "redis://127.0.0.1:6379/0"
        else:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            _started = start_redis(port)
            atexit.register(stop_redis, _started)
            _url = f"redis://127.0.0.1:{port}/0"
    return _url
