"""Why a SQLite database's folder cannot be written, in words a person can act on.

SQLite only says "unable to open database file". In a container that is
usually one of three things: no volume is mounted and the root file system is
read-only, the volume is mounted read-only, or the process runs as a user the
volume does not belong to. Each gets its own line naming the fix.
"""

from __future__ import annotations

import os
from pathlib import Path


def unwritable_folder_reason(folder: Path) -> str | None:
    """None when the process may create files in `folder` (the database, its -wal and -shm files)."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        if os.path.ismount(folder):
            return f"{folder} is mounted read-only; mount it read-write"
        return (
            f"{folder} is on a read-only file system and no volume is mounted there; "
            f"mount a writable volume at {folder}, or set DOCSERVER_DATABASE_URL"
        )
    owner = folder.stat()
    return (
        f"{folder} is not writable by user {os.getuid()} (it belongs to {owner.st_uid}:{owner.st_gid}, "
        f"mode {owner.st_mode & 0o777:o}); run as UID {owner.st_uid}, or give this user write access"
    )
