"""The test PostgreSQL (pgvector) over TCP on 127.0.0.1, for clients that cannot reach its Unix socket (containers)."""

from __future__ import annotations

import glob
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import psycopg

from support.postgres_server import shared_server
from support.processes import free_port

PASSWORD = "tcp-s3cret"  # the server trusts local connections: any password works, and none may be logged


@contextmanager
def postgres_on_loopback(prefix: str = "tcp") -> Iterator[str]:
    """A fresh database of the test PostgreSQL (pgvector), over TCP on 127.0.0.1: socat relays to its Unix socket."""
    server = shared_server()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    folder = parse_qs(urlsplit(server.create_database(name)).query)["host"][0]
    [socket] = glob.glob(f"{folder}/.s.PGSQL.*[0-9]")
    port = free_port()
    relay = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"UNIX-CONNECT:{socket}"])
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/{name}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(url, connect_timeout=1).close()
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "socat never relayed to PostgreSQL"
                time.sleep(0.05)  # polling for the relay's listening socket
        yield url
    finally:
        relay.terminate()
        relay.wait(timeout=10)
        server.drop_database(name)
