"""Versioned schema migrations, applied in order, each in its own transaction.

A migration file is `NNNN_name.sql`; the number is its version. Applied
versions are recorded in `schema_migrations`, so upgrades never redo or skip
one, and a database newer than this code is refused rather than damaged.
Migrations only add, except where data moves: none drops a table or a column
whose data is not kept elsewhere (PostgreSQL's 0004 moves the vectors from
`chunks` to `embeddings`, then drops the old column).

On PostgreSQL several replicas may start at once: the whole check-and-apply
runs under one session-level advisory lock, so exactly one of them migrates
and the others wait, then find nothing left to do.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from docserver.errors import StoreError

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

MIGRATION_LOCK = 0x646F_6373_6572_7665
"""pg_advisory_lock key held while migrating ("docserve" in ASCII); any other value is as good."""


def migrations(backend: str) -> list[tuple[int, str]]:
    """(version, SQL) for every migration of `backend`, in order."""
    folder = resources.files(__package__).joinpath(backend)
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def apply_sqlite_migrations(db: Any) -> list[int]:
    """Bring a SQLite database up to date; returns the versions applied."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
    known = migrations("sqlite")
    newest = known[-1][0] if known else 0
    if current > newest:
        raise StoreError(
            f"the database schema is version {current}, newer than this docserver knows ({newest}); upgrade docserver"
        )
    applied = []
    for version, sql in known:
        if version <= current:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, datetime('now'))", (version,))
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise
        applied.append(version)
    return applied


async def apply_postgres_migrations(conn: Any, *, prepare: Callable[[Any], Awaitable[None]] | None = None) -> list[int]:
    """Bring a PostgreSQL database up to date on `conn` (a psycopg AsyncConnection in autocommit mode).

    `prepare` runs first, under the same lock (the store creates the pgvector
    extension there). Returns the versions applied.
    """
    # Migrations may build indexes on large tables, and waiting for another
    # replica's migration is expected: no statement timeout in this session.
    await conn.execute("SET statement_timeout = 0")
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        if prepare is not None:
            await prepare(conn)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        row = await cursor.fetchone()
        current = int(row[0])
        known = migrations("postgresql")
        newest = known[-1][0] if known else 0
        if current > newest:
            raise StoreError(
                f"the database schema is version {current}, newer than this docserver knows ({newest}); "
                "upgrade docserver"
            )
        applied = []
        for version, sql in known:
            if version <= current:
                continue
            async with conn.transaction():
                await conn.execute(sql)  # no parameters: the whole file goes as one simple query
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
        return applied
    finally:
        if not conn.broken:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            await conn.execute("RESET statement_timeout")


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
