"""What a caller limited to some sources (`docs:read:<source>`) may see: those sources, nothing else.

Another source's document looks exactly like a missing one, and an unknown
source is reported with the caller's own sources only. Callers who may read
everything (auth off, `docs:read`) never come here: the tools call the
search service directly, at no extra cost.
"""

from __future__ import annotations

from typing import Any

from docserver.access.bearer import SOURCES_SCOPE_KEY
from docserver.errors import DocumentNotFoundError
from docserver.search import SearchPage, SearchService
from docserver.store.base import Document, SourceInfo
from docserver.versions import base_name


def allowed_sources(request: Any) -> frozenset[str] | None:
    """The sources the caller of this HTTP request may read; None for all (no authentication, stdio)."""
    scope = getattr(request, "scope", None)
    return scope.get(SOURCES_SCOPE_KEY) if scope is not None else None


def is_visible(info: SourceInfo, allowed: frozenset[str]) -> bool:
    """`docs:read:python` reads `python` and every version of it (`python@3.11`); `docs:read:python@3.11` that one."""
    return info.name in allowed or base_name(info) in allowed


async def visible_sources(service: SearchService, allowed: frozenset[str]) -> list[SourceInfo]:
    return [info for info in await service.list_sources() if is_visible(info, allowed)]


async def visible_search(
    service: SearchService,
    query: str,
    *,
    source: str | None,
    limit: int,
    allowed: frozenset[str],
    version: str | None = None,
) -> SearchPage:
    """The search over the sources the caller may read (an unknown source is named among those only)."""
    return await service.search_page(query, source=source, version=version, limit=limit, within=allowed)


async def visible_document(service: SearchService, document_id: int, allowed: frozenset[str]) -> Document:
    """The document, if its source is readable; otherwise exactly what a missing id gives."""
    document = await service.get_document(document_id)
    if document.source not in allowed and not any(
        info.name == document.source and is_visible(info, allowed) for info in await service.list_sources()
    ):
        raise DocumentNotFoundError(f"no document with id {document_id}")
    return document
