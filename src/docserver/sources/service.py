"""Sources: ingest from an origin, refresh from the recorded one, remove; each outcome recorded in the store.

A refresh that fails leaves the source as it was (the ingest is one
transaction) and records why, so `docserver sources` and the freshness metrics
show it. A source that another process is refreshing at that moment is
skipped as `busy` (see store/refresh_lock.py): the other does the work.
A git source whose ref still points at the ingested commit is `unchanged`
without reading a file; one that moved re-reads only the files the diff names.
A website is crawled again with conditional GETs: pages that answer 304 are
not even downloaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from docserver.embed.base import Embedder
from docserver.errors import DocserverError, IngestError
from docserver.ingest.pipeline import IngestOptions, IngestSummary, ProgressFn, ingest
from docserver.observability import tracing
from docserver.observability.logging import get_logger
from docserver.sources.git import GitRepositories
from docserver.sources.request import VERSION_SEPARATOR, SourceRequest
from docserver.sources.scope import safe_url
from docserver.sources.web import WebCrawler, ingest_crawl
from docserver.store.base import SourceRecord, Store

log = get_logger("docserver.sources")

REFRESH_RESULTS = ("ok", "unchanged", "failed", "busy")
"""The closed set of `result` values of `docserver_source_refresh_total`."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one ingest or refresh of a source went."""

    source: str
    result: str
    """From REFRESH_RESULTS."""
    summary: IngestSummary | None = None
    revision: str | None = None
    error: str | None = None

    def line(self) -> str:
        at = f" at {self.revision[:12]}" if self.revision else ""
        if self.summary is not None:
            return self.summary.line() + at
        if self.result == "unchanged":
            return f"source {self.source!r}: unchanged{at}"
        if self.result == "busy":
            return f"source {self.source!r}: busy, skipped: another process is refreshing it"
        return f"source {self.source!r}: refresh failed: {self.error}"


@dataclass(frozen=True, slots=True)
class _Fetched:
    roots: list[Path]
    revision: str | None = None
    changed: set[str] | None = None


class Sources:
    """Ingest, refresh and remove sources of one store, with one embedder."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        git: GitRepositories,
        web: WebCrawler,
        *,
        max_chars: int,
        on_refresh: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.git = git
        self.web = web
        self.max_chars = max_chars
        self._on_refresh = on_refresh
        """Called with every outcome's result, for the refresh metric."""

    async def ingest(
        self, request: SourceRequest, *, force: bool = False, progress: ProgressFn | None = None
    ) -> Outcome:
        """Bring the source in line with its origin; raises DocserverError (recorded with the source) on failure."""
        previous = await self._record(request.name)
        with tracing.root_span(f"refresh {request.name}", {"docserver.source": request.name}):
            try:
                outcome = await self._ingest(request, previous, force, progress)
            except DocserverError as exc:
                await self._failed(request.name, request.origin.text, exc, recorded=previous is not None)
                raise
        self._count(outcome.result)
        return outcome

    async def refresh(self, names: Sequence[str] = ()) -> list[Outcome]:
        """Refresh the named sources (a name without `@VERSION` names all its versions), or every refreshable one."""
        records = await self.store.source_records()
        chosen = [record for record in records if _named(record.name, names)] if names else records
        missing = [name for name in names if not any(_named(record.name, [name]) for record in records)]
        if missing:
            raise DocserverError(f"no such source: {', '.join(missing)}")
        outcomes = []
        for record in chosen:
            if record.origin is None and not names:
                continue  # ingested by an older docserver: nothing to fetch it from
            async with self.store.refresh_lock(record.name) as held:
                outcomes.append(await self._refresh(record) if held else self._busy(record.name))
        return outcomes

    async def _refresh(self, record: SourceRecord) -> Outcome:
        """Refresh one source, holding its refresh lock."""
        try:
            request = SourceRequest.from_record(record)
        except DocserverError as exc:  # the origin itself is gone (a folder deleted)
            await self._failed(record.name, record.origin or "", exc)
            return Outcome(record.name, "failed", error=str(exc))
        try:
            return await self.ingest(request)
        except DocserverError as exc:
            return Outcome(record.name, "failed", error=str(exc))

    def _busy(self, name: str) -> Outcome:
        """Another process (or task) is refreshing the source now: it does the work, this refresh skips it."""
        log.info("source_refresh_busy", source=name)
        self._count("busy")
        return Outcome(name, "busy")

    async def remove(self, name: str) -> int:
        """Delete the source and its vectors in one transaction; returns the documents it held."""
        if await self._record(name) is None:
            raise DocserverError(f"no such source: {name}")
        async with self.store.update_source(name) as writer:
            await writer.delete_all()
        log.info("source_removed", source=name, documents=writer.stats.deleted)
        return writer.stats.deleted

    async def _ingest(
        self, request: SourceRequest, previous: SourceRecord | None, force: bool, progress: ProgressFn | None
    ) -> Outcome:
        if request.origin.kind == "web":
            return await self._ingest_web(request, previous, force, progress)
        same_options = previous is not None and previous.options == request.options
        fetched = await self._fetch(request, previous if same_options else None)
        if fetched.revision is not None and same_options and not force:
            assert previous is not None  # same_options says so
            if previous.revision == fetched.revision:
                await self.store.record_refresh(request.name, error=None)
                return Outcome(request.name, "unchanged", revision=fetched.revision)
        options = IngestOptions(request.file_filter, force, fetched.changed, request.recorded(fetched.revision))
        summary = await ingest(
            self.store,
            self.embedder,
            fetched.roots,
            request.name,
            max_chars=self.max_chars,
            progress=progress,
            options=options,
        )
        # A refresh that found nothing new (files all as stored) is `unchanged`, as an unmoved git ref is.
        same = previous is not None and not force and summary.changed == 0 and summary.removed == 0
        return Outcome(request.name, "unchanged" if same else "ok", summary, fetched.revision)

    async def _ingest_web(
        self, request: SourceRequest, previous: SourceRecord | None, force: bool, progress: ProgressFn | None
    ) -> Outcome:
        stored = set(await self.store.document_hashes(request.name))
        crawl = await self.web.crawl(request.origin.location, request.file_filter, stored, request.name, force=force)
        if not crawl.pages and not crawl.unchanged and not stored:
            raise IngestError(f"no pages found at {safe_url(request.origin.location)} ({len(crawl.skipped)} left out)")
        options = IngestOptions(request.file_filter, force, None, request.recorded(None))
        summary = await ingest_crawl(
            self.store, self.embedder, request.name, crawl, max_chars=self.max_chars, progress=progress, options=options
        )
        same = previous is not None and not force and summary.changed == 0 and summary.removed == 0
        return Outcome(request.name, "unchanged" if same else "ok", summary)

    async def _fetch(self, request: SourceRequest, previous: SourceRecord | None) -> _Fetched:
        origin = request.origin
        if origin.kind == "path":
            return _Fetched([Path(path) for path in request.paths or (origin.location,)])
        with tracing.span("fetch git", attributes={"docserver.source": request.name}):
            checkout = await asyncio.to_thread(self.git.fetch, origin.location, origin.ref)
        root = checkout.folder / origin.subpath if origin.subpath else checkout.folder
        if not root.is_dir():
            raise DocserverError(f"--path {origin.subpath}: no such folder in {origin.text} at {checkout.commit[:12]}")
        changed = None
        if previous is not None and previous.revision and previous.revision != checkout.commit:
            diff = await asyncio.to_thread(self.git.changed_paths, checkout.folder, previous.revision, checkout.commit)
            prefix = f"{origin.subpath}/" if origin.subpath else ""
            changed = None if diff is None else {p.removeprefix(prefix) for p in diff if p.startswith(prefix)}
        return _Fetched([root], checkout.commit, changed)

    async def _failed(self, name: str, origin: str, exc: DocserverError, *, recorded: bool = True) -> None:
        self._count("failed")
        # info, not warning: a command already says it in its one error line; the freshness metrics alert.
        log.info("source_refresh_failed", source=name, origin=safe_url(origin), error=str(exc))
        if recorded:  # a first ingest that fails leaves no source to record it on
            await self.store.record_refresh(name, error=str(exc))

    async def _record(self, name: str) -> SourceRecord | None:
        return next((record for record in await self.store.source_records() if record.name == name), None)

    def _count(self, result: str) -> None:
        if self._on_refresh is not None:
            self._on_refresh(result)


def _named(stored: str, names: Sequence[str]) -> bool:
    return any(stored == name or stored.startswith(name + VERSION_SEPARATOR) for name in names)
