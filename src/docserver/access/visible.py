"""What a caller limited to some sources (`docs:read:<source>`) may see: those sources, nothing else.

Another source's document looks exactly like a missing one, and an unknown
source is reported with the caller's own sources only. Callers who may read
everything (auth off, `docs:read`) never come here: the tools call the
search service directly, at no extra cost.
"""

from __future__ import annotations

from typing import Any

from docserver.access.bearer import SOURCES_SCOPE_KEY
from docserver.errors import DocumentNotFoundError, SearchInputError
from docserver.search import SearchPage, SearchService
from docserver.store.base import Document, SourceInfo


def allowed_sources(request: Any) -> frozenset[str] | None:
    """The sources the caller of this HTTP request may read; None for all (no authentication, stdio)."""
    scope = getattr(request, "scope", None)
    return scope.get(SOURCES_SCOPE_KEY) if scope is not None else None


async def visible_sources(service: SearchService, allowed: frozenset[str]) -> list[SourceInfo]:
    return [info for info in await service.list_sources() if info.name in allowed]


async def visible_search(
    service: SearchService, query: str, *, source: str | None, limit: int, allowed: frozenset[str]
) -> SearchPage:
    """The search over the sources the caller may read: one of them, or all of them merged by score."""
    names = [info.name for info in await visible_sources(service, allowed)]
    if source is not None and source not in names:
        known = ", ".join(names) if names else "none; ingest documentation first"
        raise SearchInputError(f"unknown source {source!r}; available sources: {known}")
    searched = [source] if source is not None else names
    pages = [await service.search_page(query, source=name, limit=limit) for name in searched]
    if len(pages) == 1:
        return pages[0]
    hits = sorted((hit for page in pages for hit in page.hits), key=lambda hit: hit.score, reverse=True)
    return SearchPage(hits[:limit])


async def visible_document(service: SearchService, document_id: int, allowed: frozenset[str]) -> Document:
    """The document, if its source is readable; otherwise exactly what a missing id gives."""
    document = await service.get_document(document_id)
    if document.source not in allowed:
        raise DocumentNotFoundError(f"no document with id {document_id}")
    return document
