"""The right to refresh a source: one holder at a time across processes, and nobody waits for it.

Two refreshes of one source at once (a CronJob and a replica's schedule, two
replicas, two terminals) would fetch and embed the same content twice; the
second finds the right taken and reports the source `busy` instead. Both
locks vanish with the process that holds them, so a crash never leaves a
source that can no longer be refreshed.

SQLite: an exclusive `flock` on a file per source in a folder beside the
database (`docserver.db.refresh-locks/`). PostgreSQL: a session-level
advisory lock, held on one pooled connection for the refresh (see
PostgresStore.refresh_lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from docserver.errors import StoreError


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:24]


@asynccontextmanager
async def file_lock(database: Path, source: str) -> AsyncIterator[bool]:
    """Hold the refresh of `source` on the SQLite `database` for the block: True if taken, False if held elsewhere."""
    folder = database.with_name(f"{database.name}.refresh-locks")
    try:
        folder.mkdir(exist_ok=True)
        descriptor = os.open(folder / f"{_digest(source)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot take the refresh lock of source {source!r} in {folder}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # closing the descriptor below releases the lock
    finally:
        os.close(descriptor)
