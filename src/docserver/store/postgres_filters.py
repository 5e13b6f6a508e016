"""A search's source filter as SQL: one source, several, or none (every source)."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from docserver.store.base import SourceFilter


def source_condition(column: str, source: SourceFilter) -> tuple[sql.SQL, tuple[Any, ...]]:
    """`AND column = %s` for one source, `AND column = ANY(%s)` for several, nothing for all; with its parameter."""
    if source is None:
        return sql.SQL(""), ()
    if isinstance(source, str):
        return sql.SQL(f"AND {column} = %s"), (source,)
    return sql.SQL(f"AND {column} = ANY(%s)"), (list(source),)


def source_filter(column: str, filtered: bool | sql.SQL) -> sql.SQL:
    """`filtered` itself when it is a condition (`source_condition`), else one source's condition or nothing."""
    if isinstance(filtered, sql.SQL):
        return filtered
    return sql.SQL(f"AND {column} = %s" if filtered else "")
