"""Versions of a source, and which stored sources a search reads.

`docserver ingest --version 3.11` stores a source as `NAME@3.11`, beside its
other versions. A search names the source (`NAME`) and, optionally, the
version; without one it reads each source's newest version only, so an
assistant is not handed three versions of the same page.

Newest is decided by the labels, never by ingest times (a refresh of an old
version must not make it the default): they compare like version numbers,
number by number (3.9 < 3.11 < 3.12 < 3.12.1), a pre-release word before
the release it leads to (3.12rc1 < 3.12), words (`main`, `latest`) below any
number, and a leading `v` ignored (v2 = 2). A source ingested without a
label counts as older than any labelled version of the same name.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import NoReturn

from docserver.errors import SearchInputError
from docserver.store.base import SourceFilter, SourceInfo

_PIECE = re.compile(r"\d+|[^\W\d_]+")
_LEADING_V = re.compile(r"^v(?=\d)")
_END = (1, 0, "")
"""Where a label ends: after a word (3.12rc1 < 3.12), before a number (3.12 < 3.12.1)."""


def version_key(label: str | None) -> tuple[tuple[int, int, str], ...]:
    """A sort key that puts newer versions last; no label sorts first."""
    if label is None:
        return ()
    pieces = _PIECE.findall(_LEADING_V.sub("", label.lower()))
    return (*((2, int(p), "") if p.isdigit() else (0, 0, p) for p in pieces), _END, (0, 0, label))


def base_name(info: SourceInfo) -> str:
    """The name a source is searched by: its stored name without `@VERSION`."""
    return info.name.removesuffix(f"@{info.version}") if info.version else info.name


@dataclass(frozen=True, slots=True)
class Catalog:
    """The stored sources by name, each name's versions newest first."""

    versions: dict[str, list[SourceInfo]]
    complete: bool = True
    """Every source of the store is here (not only those a caller may read)."""

    @classmethod
    def of(cls, sources: Iterable[SourceInfo], within: Collection[str] | None = None) -> Catalog:
        """The catalog of `sources`; with `within`, only those whose stored or base name it holds."""
        grouped: dict[str, list[SourceInfo]] = {}
        for info in sources:
            name = base_name(info)
            if within is None or name in within or info.name in within:
                grouped.setdefault(name, []).append(info)
        newest_first = {
            name: sorted(infos, key=lambda info: version_key(info.version), reverse=True)
            for name, infos in grouped.items()
        }
        return cls(newest_first, complete=within is None)

    def searched(self, source: str | None, version: str | None) -> SourceFilter:
        """The stored sources a search of `source` at `version` reads; SearchInputError naming what exists.

        None (no filter) when that is every source of the store.
        """
        if source is None:
            return self._across(version)
        infos = self.versions.get(source)
        if infos is None:
            return (self._stored(source),) if version is None else self._unknown_source(source)
        if version is None:
            return (infos[0].name,)
        chosen = [info.name for info in infos if info.version == version]
        if not chosen:
            raise SearchInputError(f"unknown version {version!r} of source {source!r}; {_listed(infos)}")
        return (chosen[0],)

    def _across(self, version: str | None) -> SourceFilter:
        if version is None:
            if self.complete and all(len(infos) == 1 for infos in self.versions.values()):
                return None  # nothing to leave out: the search needs no filter
            return tuple(sorted(infos[0].name for infos in self.versions.values()))
        chosen = tuple(
            sorted(info.name for infos in self.versions.values() for info in infos if info.version == version)
        )
        if not chosen:
            labels = sorted(
                {i.version for infos in self.versions.values() for i in infos if i.version}, key=version_key
            )
            known = ", ".join(reversed(labels)) if labels else "none (no source was ingested with --version)"
            raise SearchInputError(f"unknown version {version!r}; versions: {known}")
        return chosen

    def _stored(self, name: str) -> str:
        """A stored name given whole (`python@3.11`), as before versions were searched by name."""
        if any(info.name == name for infos in self.versions.values() for info in infos):
            return name
        return self._unknown_source(name)

    def _unknown_source(self, source: str) -> NoReturn:
        known = ", ".join(sorted(self.versions)) if self.versions else "none; ingest documentation first"
        raise SearchInputError(f"unknown source {source!r}; available sources: {known}")


def _listed(infos: list[SourceInfo]) -> str:
    labels = [info.version for info in infos if info.version]
    return f"its versions: {', '.join(labels)}" if labels else "it has no versions; omit version"
