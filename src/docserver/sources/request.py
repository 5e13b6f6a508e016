"""What to ingest into a source, built from the command line or from what the store recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from docserver.errors import DocserverError
from docserver.sources.filters import FileFilter
from docserver.sources.origin import Origin, parse_origin
from docserver.store.base import SourceOrigin, SourceRecord

VERSION_SEPARATOR = "@"
"""A versioned source is stored as `NAME@VERSION`: versions of one source live side by side."""


def stored_name(name: str, version: str | None) -> str:
    """The name a source is stored (and searched) under."""
    if not version:
        return name
    if VERSION_SEPARATOR in name:
        raise DocserverError(f"source {name!r}: a name given with --version cannot contain {VERSION_SEPARATOR!r}")
    return f"{name}{VERSION_SEPARATOR}{version}"


@dataclass(frozen=True, slots=True)
class SourceRequest:
    name: str
    """The stored name (with its version)."""
    origin: Origin
    file_filter: FileFilter = field(default_factory=FileFilter)
    version: str | None = None
    paths: tuple[str, ...] = ()
    """For a path origin: every folder or file, when one source gathers several (the first is `origin`)."""

    @property
    def options(self) -> dict[str, Any]:
        """Everything besides the origin that a refresh needs, as stored (JSON)."""
        options = self.file_filter.as_options()
        if self.origin.ref:
            options["ref"] = self.origin.ref
        if self.origin.subpath:
            options["path"] = self.origin.subpath
        if len(self.paths) > 1:
            options["paths"] = list(self.paths)
        return options

    def recorded(self, revision: str | None) -> SourceOrigin:
        return SourceOrigin(self.origin.text, self.options, self.version, revision)

    @classmethod
    def from_record(cls, record: SourceRecord) -> SourceRequest:
        """The request that fetches `record` again; DocserverError when it has no origin recorded."""
        if record.origin is None:
            raise DocserverError(
                f"source {record.name!r} has no recorded origin (ingested by an older docserver); "
                "ingest it once more to make it refreshable"
            )
        options = record.options
        origin = parse_origin(record.origin, ref=options.get("ref"), subpath=options.get("path"))
        paths = (tuple(options.get("paths", ())) or (origin.location,)) if origin.kind == "path" else ()
        return cls(record.name, origin, FileFilter.from_options(options), record.version, paths)
