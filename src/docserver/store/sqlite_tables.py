"""SQLite helpers the statements share: `meta` values, the vector tables, transactions.

The vector table's name is recorded in `meta`: `docserver reindex` builds a
new table beside it and switches by rewriting that name, in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from docserver.errors import StoreBusyError, StoreError
from docserver.store import sqlite_driver
from docserver.store.base import EmbedderInfo, SourceFilter

Connection = Any  # sqlite3.Connection from whichever driver sqlite_driver picked

VECTOR_TABLE = re.compile(r"^chunk_vectors(?:_(\d+))?$")
"""Names of vector tables: `chunk_vectors`, then `chunk_vectors_1`, `_2`... one per reindex."""
_SQLITE_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED


def source_condition(column: str, source: SourceFilter) -> tuple[str, list[Any]]:
    """` AND column = ?` for one source, ` AND column IN (?, ...)` for several, nothing for all; with its parameters."""
    if source is None:
        return "", []
    if isinstance(source, str):
        return f" AND {column} = ?", [source]
    return f" AND {column} IN ({','.join('?' * len(source))})", list(source)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def meta(db: Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(db: Connection, values: dict[str, str]) -> None:
    db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))


def bump_corpus_version(db: Connection) -> None:
    db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'corpus_version'")


def read_embedder(db: Connection) -> EmbedderInfo | None:
    rows = dict(
        db.execute(
            "SELECT key, value FROM meta WHERE key IN ('embedder', 'embedding_model', 'embedding_dimension')"
        ).fetchall()
    )
    if "embedder" not in rows:
        return None
    return EmbedderInfo(rows["embedder"], rows["embedding_model"], int(rows["embedding_dimension"]))


def embedder_meta(info: EmbedderInfo) -> dict[str, str]:
    return {"embedder": info.provider, "embedding_model": info.model, "embedding_dimension": str(info.dimension)}


def checked_table(name: str) -> str:
    """`name`, if it is a vector table's name: it is spliced into SQL."""
    if not VECTOR_TABLE.match(name):
        raise StoreError(f"the database names an unexpected vector table {name!r}")
    return name


def vector_table(db: Connection) -> str:
    """The vector table searches and ingests use now."""
    return checked_table(meta(db, "vector_table") or "chunk_vectors")


def table_exists(db: Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def create_vector_table(db: Connection, name: str, dimension: int) -> None:
    db.execute(
        f"CREATE VIRTUAL TABLE {checked_table(name)} USING vec0("
        "chunk_id INTEGER PRIMARY KEY, source TEXT PARTITION KEY, "
        f"embedding FLOAT[{int(dimension)}] distance_metric=cosine)"
    )


@contextmanager
def snapshot(db: Connection) -> Iterator[None]:
    """One read transaction: its statements see one committed version, even if a reindex switches tables meanwhile."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("ROLLBACK")


@contextmanager
def immediate(db: Connection) -> Iterator[None]:
    """A write transaction; StoreBusyError when another process keeps the write lock past the busy timeout."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite_driver.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) in _SQLITE_BUSY or "locked" in str(exc):
            raise StoreBusyError("another process is writing to the database") from None
        raise
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
