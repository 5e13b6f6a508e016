"""Finding the documentation files under a folder, and reading one of them as text.

Discovery never leaves the tree it was given: a symlink is followed only when its
target resolves inside the root, so pointing docserver at a folder cannot pull in
a home directory through a stray link.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from docserver.errors import IngestError

SUPPORTED_SUFFIXES = frozenset({".md", ".mdx", ".rst", ".txt", ".html", ".htm"})

# Other people's docs and build output: ingesting them would bury the project's own pages.
SKIPPED_DIRS = frozenset(
    {
        "node_modules",
        "vendor",
        "third_party",
        "site-packages",
        "__pycache__",
        "venv",
        ".venv",
        "dist",
        "build",
        "_build",
        "target",
    }
)

# Git and most editors judge "binary" by a NUL byte near the start; so do we.
_BINARY_PROBE_BYTES = 8192


@dataclass(frozen=True, slots=True)
class DiscoveredFile:
    path: str
    """Relative POSIX path (`guide/intro.md`), stored as the document's path."""
    abspath: Path


class SkippedPath(NamedTuple):
    # A tuple, so callers may unpack it: `for path, reason in result.skipped`.
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    files: tuple[DiscoveredFile, ...]
    """Sorted by `path`."""
    skipped: tuple[SkippedPath, ...]
    """Folders and links left out for a reason worth telling the user."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    path: str
    abspath: Path
    real: str
    via_symlink: bool


class UnreadableFileError(Exception):
    """A discovered file cannot be used as text; `reason` says why, in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def discover(root: Path) -> DiscoveryResult:
    """The documentation files at `root`: a folder walked recursively, or one file."""
    if not root.exists():
        raise IngestError(f"path not found: {root}")
    if root.is_file():
        return DiscoveryResult(files=(_single_file(root),), skipped=())
    if not root.is_dir():
        raise IngestError(f"not a file or a folder: {root}")
    return _walk(root)


def read_text(path: Path) -> str:
    """The file's text, decoded as UTF-8 with `\\n` line endings."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(_os_reason(exc)) from exc
    if b"\0" in data[:_BINARY_PROBE_BYTES]:
        raise UnreadableFileError("binary file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError("not valid UTF-8 text") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _single_file(path: Path) -> DiscoveredFile:
    if not _is_supported(path.name):
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise IngestError(f"unsupported file type: {path.name} (supported: {supported})")
    return DiscoveredFile(path=path.name, abspath=path.absolute())


def _walk(root: Path) -> DiscoveryResult:
    top = os.path.realpath(root)
    candidates: list[_Candidate] = []
    skipped: list[SkippedPath] = []
    visited: set[str] = set()
    # Real folders are walked before symlinked ones, so a file reachable both ways
    # keeps its real path rather than whichever spelling the walk met first.
    folders: list[tuple[Path, str, str]] = [(root.absolute(), top, "")]
    linked: list[tuple[Path, str, str]] = []
    while folders or linked:
        folder, real, rel = folders.pop() if folders else linked.pop()
        if real in visited:
            continue
        visited.add(real)
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            if not rel:
                raise IngestError(f"cannot read folder: {root} ({_os_reason(exc)})") from exc
            skipped.append(SkippedPath(rel, _os_reason(exc)))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                _add_symlink(entry, path, top, candidates, skipped, linked)
            elif entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIPPED_DIRS:
                    folders.append((Path(entry.path), os.path.join(real, entry.name), path))
            elif entry.is_file(follow_symlinks=False) and _is_supported(entry.name):
                real_file = os.path.join(real, entry.name)
                candidates.append(_Candidate(path, Path(entry.path), real_file, via_symlink=False))
    return DiscoveryResult(files=_unique(candidates), skipped=tuple(skipped))


def _add_symlink(
    entry: os.DirEntry[str],
    path: str,
    top: str,
    candidates: list[_Candidate],
    skipped: list[SkippedPath],
    linked: list[tuple[Path, str, str]],
) -> None:
    # realpath (not Path.resolve) because a link loop must be a skip, not an error.
    real = os.path.realpath(entry.path)
    if os.path.commonpath([top, real]) != top:
        skipped.append(SkippedPath(path, "symlink points outside the folder"))
    elif os.path.isdir(real):
        if entry.name not in SKIPPED_DIRS:
            linked.append((Path(entry.path), real, path))
    elif os.path.isfile(real):
        if _is_supported(entry.name):
            candidates.append(_Candidate(path, Path(entry.path), real, via_symlink=True))
    else:
        skipped.append(SkippedPath(path, "broken symlink"))


def _unique(candidates: list[_Candidate]) -> tuple[DiscoveredFile, ...]:
    """One entry per real file, preferring a real path over a symlink to it."""
    seen: set[str] = set()
    files: list[DiscoveredFile] = []
    for candidate in sorted(candidates, key=lambda c: (c.via_symlink, c.path)):
        if candidate.real not in seen:
            seen.add(candidate.real)
            files.append(DiscoveredFile(candidate.path, candidate.abspath))
    return tuple(sorted(files, key=lambda file: file.path))


def _is_supported(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in SUPPORTED_SUFFIXES


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return (exc.strerror or type(exc).__name__).lower()
