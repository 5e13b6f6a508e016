"""Which sqlite3 module to use, and how a connection is set up.

sqlite-vec is a loadable extension. Some Python builds (pyenv's, often)
compile the standard `sqlite3` without extension loading; pysqlite3-binary
ships a recent SQLite that has it, so it is used when present.
"""

from __future__ import annotations

import sqlite3 as _stdlib_sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlite_vec

from docserver.errors import StoreError


def _pick_driver() -> ModuleType:
    if hasattr(_stdlib_sqlite3.Connection, "enable_load_extension"):
        return _stdlib_sqlite3
    try:
        import pysqlite3.dbapi2 as driver
    except ImportError:  # pragma: no cover - depends on the platform
        return _stdlib_sqlite3
    return driver  # type: ignore[no-any-return]


driver = _pick_driver()
Error: type[Exception] = driver.Error


def connect(path: Path) -> Any:
    """A connection in autocommit mode (transactions are explicit), with sqlite-vec loaded."""
    try:
        connection = driver.connect(str(path), isolation_level=None, check_same_thread=False)
    except driver.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from None
    if not hasattr(connection, "enable_load_extension"):
        raise StoreError(
            "this Python's sqlite3 cannot load extensions, which sqlite-vec needs; "
            "install pysqlite3-binary or use a Python built with loadable SQLite extensions"
        )
    connection.enable_load_extension(True)
    sqlite_vec.load(connection)
    connection.enable_load_extension(False)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA busy_timeout = 10000")
    return connection
