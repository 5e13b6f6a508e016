"""SQLite's statements for sources' own rows: origin, options, version and freshness."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from docserver.store.base import SourceRecord
from docserver.store.sqlite_tables import Connection, now

if TYPE_CHECKING:
    from docserver.store.base import SourceOrigin


def source_records(db: Connection) -> list[SourceRecord]:
    rows = db.execute(
        """
        SELECT s.name, (SELECT COUNT(*) FROM documents d WHERE d.source = s.name),
               s.origin, s.options, s.version, s.revision, s.refreshed_at, s.last_error, s.last_error_at
        FROM sources s ORDER BY s.name
        """
    ).fetchall()
    return [
        SourceRecord(name, documents, origin, json.loads(options or "{}"), *rest)
        for name, documents, origin, options, *rest in rows
    ]


def source_paths(db: Connection, source: str) -> list[str]:
    return [row[0] for row in db.execute("SELECT path FROM documents WHERE source = ?", (source,))]


def record_origin(db: Connection, source: str, origin: SourceOrigin) -> None:
    db.execute(
        """
        UPDATE sources SET origin = ?, options = ?, version = ?, revision = ?,
               refreshed_at = ?, last_error = NULL, last_error_at = NULL
        WHERE name = ?
        """,
        (origin.origin, json.dumps(origin.options, sort_keys=True), origin.version, origin.revision, now(), source),
    )


def record_refresh(db: Connection, source: str, error: str | None) -> None:
    if error is None:
        sql = "UPDATE sources SET refreshed_at = ?, last_error = NULL, last_error_at = NULL WHERE name = ?"
        db.execute(sql, (now(), source))
    else:
        db.execute("UPDATE sources SET last_error = ?, last_error_at = ? WHERE name = ?", (error, now(), source))
