"""PostgreSQL's statements for sources' own rows: origin, options, version and freshness."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

from docserver.store.base import SourceRecord
from docserver.store.postgres_schema import Connection, fetch_all

if TYPE_CHECKING:
    from docserver.store.base import SourceOrigin


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def source_records(conn: Connection) -> list[SourceRecord]:
    rows = await fetch_all(
        conn,
        """
        SELECT s.name, (SELECT count(*) FROM documents d WHERE d.source = s.name),
               s.origin, s.options, s.version, s.revision, s.refreshed_at, s.last_error, s.last_error_at
        FROM sources s ORDER BY s.name
        """,
    )
    return [
        SourceRecord(name, documents, origin, options or {}, version, revision, _iso(refreshed), error, _iso(failed))
        for name, documents, origin, options, version, revision, refreshed, error, failed in rows
    ]


async def source_paths(conn: Connection, source: str) -> list[str]:
    return [row[0] for row in await fetch_all(conn, "SELECT path FROM documents WHERE source = %s", (source,))]


async def record_origin(conn: Connection, source: str, origin: SourceOrigin) -> None:
    await conn.execute(
        """
        UPDATE sources SET origin = %s, options = %s, version = %s, revision = %s,
               refreshed_at = now(), last_error = NULL, last_error_at = NULL
        WHERE name = %s
        """,
        (origin.origin, Jsonb(origin.options), origin.version, origin.revision, source),
    )


async def record_refresh(conn: Connection, source: str, error: str | None) -> None:
    if error is None:
        sql = "UPDATE sources SET refreshed_at = now(), last_error = NULL, last_error_at = NULL WHERE name = %s"
        await conn.execute(sql, (source,))
    else:
        sql = "UPDATE sources SET last_error = %s, last_error_at = now() WHERE name = %s"
        await conn.execute(sql, (error, source))


_REFRESH_KEY = "hashtextextended('docserver.refresh:' || %s, 0)"
"""The advisory lock key of a source's refresh (its writes take another: `docserver.source:`)."""


async def try_refresh_lock(conn: Connection, source: str) -> bool:
    rows = await fetch_all(conn, f"SELECT pg_try_advisory_lock({_REFRESH_KEY})", (source,))
    return bool(rows[0][0])


async def release_refresh_lock(conn: Connection, source: str) -> None:
    await conn.execute(f"SELECT pg_advisory_unlock({_REFRESH_KEY})", (source,))
