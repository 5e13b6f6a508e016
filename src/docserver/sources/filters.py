"""Which discovered files a source keeps: `--include` and `--exclude` globs over their relative paths.

A glob ending in `/` names a folder anywhere in the tree (`_static/`); one
with another `/` matches the whole relative path (`api/*.html`, where `*` also
crosses folders); any other matches the file's name (`*.rst.txt`). The
defaults leave out what documentation builds put beside the pages: Sphinx's
`_sources/` copies of every page, `_static/`, `_templates/` and its generated
index pages, `node_modules/`, `.git/` and build output folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

DEFAULT_EXCLUDES = (
    "_sources/",
    "_static/",
    "_templates/",
    "_images/",
    "_downloads/",
    "node_modules/",
    ".git/",
    "_build/",
    "build/",
    "dist/",
    "target/",
    "genindex*.html",
    "py-modindex.html",
    "search.html",
    "requirements*.txt",
)


@dataclass(frozen=True, slots=True)
class FileFilter:
    include: tuple[str, ...] = ()
    """When given, a file must match one of these."""
    exclude: tuple[str, ...] = ()
    """Left out, on top of the defaults."""
    default_excludes: bool = True

    def allows(self, path: str) -> bool:
        """Whether the file at relative POSIX `path` belongs to the source."""
        if self.include and not any(_matches(pattern, path) for pattern in self.include):
            return False
        return not self.excluded(path)

    def excluded(self, path: str) -> bool:
        """Whether an exclude glob leaves `path` out (a crawl neither fetches nor keeps it)."""
        return any(_matches(pattern, path) for pattern in self.excludes)

    @property
    def excludes(self) -> tuple[str, ...]:
        return (DEFAULT_EXCLUDES if self.default_excludes else ()) + self.exclude

    def as_options(self) -> dict[str, Any]:
        """The filter as stored with the source (JSON)."""
        return {"include": list(self.include), "exclude": list(self.exclude), "default_excludes": self.default_excludes}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> FileFilter:
        return cls(
            include=tuple(options.get("include", ())),
            exclude=tuple(options.get("exclude", ())),
            default_excludes=bool(options.get("default_excludes", True)),
        )


def _matches(pattern: str, path: str) -> bool:
    if pattern.endswith("/"):
        folders = path.split("/")[:-1]
        return any(fnmatchcase(folder, pattern[:-1]) for folder in folders)
    if "/" in pattern:
        return fnmatchcase(path, pattern.lstrip("/"))
    return fnmatchcase(path.rsplit("/", 1)[-1], pattern)
