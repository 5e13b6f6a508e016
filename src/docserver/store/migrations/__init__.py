"""Versioned schema migrations, applied in order, each in its own transaction.

A migration file is `NNNN_name.sql`; the number is its version. Applied
versions are recorded in `schema_migrations`, so upgrades never redo or skip
one, and a database newer than this code is refused rather than damaged.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from docserver.errors import StoreError

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


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


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
