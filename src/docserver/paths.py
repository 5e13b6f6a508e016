"""Where docserver keeps its files when nobody said: the platform's user data folder.

A relative `sqlite:///docserver.db` would land in whatever folder a client
happened to start the server from (an editor, an assistant), and every search
there would come back empty. The default is one fixed file per user instead,
under the platform's convention (`~/.local/share/docserver` on Linux, or
`$XDG_DATA_HOME/docserver`; `~/Library/Application Support/docserver` on macOS;
`%LOCALAPPDATA%\\docserver` on Windows).
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path

from platformdirs import user_data_path

APP_NAME = "docserver"
DATABASE_FILE = "docserver.db"
SAMPLE_SOURCE = "docserver-docs"


def default_database_path() -> Path:
    """The SQLite file used when DOCSERVER_DATABASE_URL is unset."""
    return user_data_path(APP_NAME, appauthor=False) / DATABASE_FILE


def default_database_url() -> str:
    """`sqlite:////…/docserver.db` in the user data folder, which is created here if it can be.

    A folder that cannot be created is left to the store to report: it names
    the folder in one line when it opens the database.
    """
    path = default_database_path()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def bundled_docs_path() -> Path:
    """docserver's own documentation: the sample corpus `make serve` and `docserver ingest --sample` ingest.

    An installed wheel carries it as `docserver/sample_docs`; a source checkout
    (an editable install) has it as the repository's `docs` folder.
    """
    packaged = Path(str(resources.files("docserver").joinpath("sample_docs")))
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "docs"
