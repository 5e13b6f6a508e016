"""Scopes and what a caller may read.

`docs:read` reads every source, `docs:read:<source>` one source, `docs:admin`
administers (and reads everything). A principal's `sources` is None when it
may read all of them, else the set it may read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

READ = "docs:read"
ADMIN = "docs:admin"
_READ_ONE = "docs:read:"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its name (never its credential) and the sources it may read."""

    name: str
    sources: frozenset[str] | None
    """None: every source."""
    admin: bool = False
    """Holds `docs:admin`: may read /metrics and /debug/pprof when DOCSERVER_ADMIN_AUTH allows it."""

    @property
    def may_read(self) -> bool:
        return self.sources is None or bool(self.sources)


def check_scope(scope: str) -> str:
    """`scope` if it is one docserver knows, else ValueError naming the allowed forms."""
    if scope in (READ, ADMIN) or (scope.startswith(_READ_ONE) and len(scope) > len(_READ_ONE)):
        return scope
    raise ValueError(f"unknown scope {scope!r}: use {READ}, {_READ_ONE}<source> or {ADMIN}")


def readable_sources(scopes: Iterable[str]) -> frozenset[str] | None:
    """The sources `scopes` grant: None for all, else the named ones (empty: none)."""
    named = set()
    for scope in scopes:
        if scope in (READ, ADMIN):
            return None
        if scope.startswith(_READ_ONE):
            named.add(scope.removeprefix(_READ_ONE))
    return frozenset(named)


def principal_of(name: str, scopes: Iterable[str]) -> Principal:
    granted = list(scopes)
    return Principal(name, readable_sources(granted), ADMIN in granted)
