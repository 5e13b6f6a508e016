"""Origins: where a source's documents come from, parsed from what the user typed.

A folder or file on disk (as `docserver ingest PATH` always took), a website
(`http://` or `https://`: crawled from that URL, within its folder), or a git
repository: `git+file://`, `git+https://`, `git+ssh://` or `git+git://` (git daemon) followed by the URL
git itself understands, with a ref (branch, tag or commit) and a folder inside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from docserver.config.urls import redact_url
from docserver.errors import DocserverError
from docserver.sources.scope import Scope

GIT_SCHEMES = ("git+file://", "git+https://", "git+ssh://", "git+git://")
_WEB_SCHEMES = ("http://", "https://")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Origin:
    kind: Literal["path", "git", "web"]
    location: str
    """An absolute path, a website's start URL, or the URL handed to git (without `git+`)."""
    ref: str | None = None
    subpath: str | None = None
    """The folder inside a repository to ingest; None for all of it."""

    @property
    def text(self) -> str:
        """The origin as stored and shown: the path, the start URL, or `git+URL`."""
        return f"git+{self.location}" if self.kind == "git" else self.location

    def default_name(self) -> str:
        """The source name when `--source` is not given: the folder's or the repository's name."""
        if self.kind == "path":
            path = Path(self.location)
            return (path if path.is_dir() else path.parent).name or "docs"
        if self.kind == "web":
            return _site_name(Scope.of(self.location))
        name = PurePosixPath(self.location.rstrip("/")).name
        return name.removesuffix(".git") or "docs"


def parse_origin(text: str, *, ref: str | None = None, subpath: str | None = None) -> Origin:
    """The origin `text` names; DocserverError (one line) for what cannot be fetched."""
    lowered = text.lower()
    if lowered.startswith(GIT_SCHEMES):
        return Origin("git", text[len("git+") :], ref or None, _inner_path(subpath))
    if ref or subpath:
        raise DocserverError("--ref and --path apply to git repositories (git+https://…, git+file://…, git+ssh://…)")
    if lowered.startswith(_WEB_SCHEMES):
        Scope.of(text)  # an invalid URL is refused now, with its reason
        return Origin("web", text.strip())
    if _SCHEME.match(text):
        raise DocserverError(
            f"cannot ingest {redact_url(text)}: unknown scheme; use a path, http(s)://, or {', '.join(GIT_SCHEMES)}"
        )
    path = Path(text)
    if not path.exists():
        raise DocserverError(f"path not found: {text}")
    return Origin("path", str(path.resolve()))


def _site_name(scope: Scope) -> str:
    """`docs.example.com` for a site's root, `docs.example.com-guide` for a folder of it."""
    host = scope.prefix.split("/")[2].split(":")[0]
    folder = "-".join(part for part in scope.prefix.split("/")[3:] if part)
    return f"{host}-{folder}" if folder else host


def _inner_path(subpath: str | None) -> str | None:
    if not subpath:
        return None
    parts = PurePosixPath(subpath.strip("/")).parts
    if ".." in parts:
        raise DocserverError(f"--path {subpath}: must stay inside the repository")
    return "/".join(parts) or None
