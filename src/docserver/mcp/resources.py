"""Documents as MCP resources: one template, `docs://{source}/{document_id}`, and completions for it.

`resources/read` answers a document's text with a MIME type guessed from its
path; `completion/complete` suggests source names (and nothing for the id,
which comes from search results). `resources/list` pages through the
documents the caller may read, PAGE_SIZE at a time, by document id: the
cursor is opaque to clients, and one that docserver did not hand out is
-32602. Every list is bounded (PAGE_SIZE, MAX_COMPLETIONS), and an unknown
URI, source or document is -32602 with a message that says what to use instead.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from pathlib import PurePosixPath
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    ListResourcesResult,
    ListResourceTemplatesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    ResourceTemplateReference,
    TextResourceContents,
)

from docserver.access.visible import allowed_sources, visible_document, visible_sources
from docserver.errors import DocumentNotFoundError
from docserver.search import SearchService

URI_TEMPLATE = "docs://{source}/{document_id}"
MAX_COMPLETIONS = 100
"""The spec's cap on completion values per answer."""
PAGE_SIZE = 100
"""Resources per `resources/list` page."""

_URI = re.compile(r"docs://(?P<source>[^/]+)/(?P<document_id>[1-9][0-9]{0,17})")
_TEMPLATE = ResourceTemplate(
    uri_template=URI_TEMPLATE,
    name="document",
    title="Documentation file",
    description="The full text of one ingested file: `source` from list_sources, "
    "`document_id` from a search_docs result.",
)


def document_uri(source: str, document_id: int) -> str:
    return f"docs://{source}/{document_id}"


_TEXT_TYPES = {
    ".md": "text/markdown",
    ".mdx": "text/markdown",
    ".markdown": "text/markdown",
    ".rst": "text/x-rst",
    ".txt": "text/plain",
}
"""Documentation formats the platform's mimetypes table may not know."""


def mime_type(path: str) -> str:
    known = _TEXT_TYPES.get(PurePosixPath(path).suffix.lower())
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(path)
    return guessed if guessed is not None and guessed.startswith("text/") else "text/plain"


def register_resources(server: Any, service: SearchService) -> None:
    """Serve the template, reads and completions on the SDK's low-level `server`."""

    async def list_resources(ctx: Any, params: PaginatedRequestParams) -> ListResourcesResult:
        return await list_page(service, params.cursor, _allowed(ctx))

    async def list_templates(ctx: Any, params: PaginatedRequestParams) -> ListResourceTemplatesResult:
        return ListResourceTemplatesResult(resource_templates=[_TEMPLATE])

    async def read(ctx: Any, params: ReadResourceRequestParams) -> ReadResourceResult:
        return await read_document(service, str(params.uri), _allowed(ctx))

    async def complete(ctx: Any, params: CompleteRequestParams) -> CompleteResult:
        return CompleteResult(completion=await completion(service, params, _allowed(ctx)))

    server.add_request_handler("resources/list", PaginatedRequestParams, list_resources)
    server.add_request_handler("resources/templates/list", PaginatedRequestParams, list_templates)
    server.add_request_handler("resources/read", ReadResourceRequestParams, read)
    server.add_request_handler("completion/complete", CompleteRequestParams, complete)


def _allowed(ctx: Any) -> frozenset[str] | None:
    """The sources this message's caller may read (None: all), as the tools see them."""
    return allowed_sources(getattr(ctx, "request", None))


async def list_page(service: SearchService, cursor: str | None, allowed: frozenset[str] | None) -> ListResourcesResult:
    """One page of the documents the caller may read, and the cursor of the next when there is one."""
    after = 0 if cursor is None else _after(cursor)
    sources = None if allowed is None else sorted(allowed)
    entries = await service.store.list_documents(sources, after=after, limit=PAGE_SIZE + 1)
    resources = [
        Resource(
            uri=document_uri(entry.source, entry.document_id),
            name=f"{entry.source}/{entry.path}",
            title=entry.title or None,
            mime_type=mime_type(entry.path),
        )
        for entry in entries[:PAGE_SIZE]
    ]
    following = _cursor(entries[PAGE_SIZE - 1].document_id) if len(entries) > PAGE_SIZE else None
    return ListResourcesResult(resources=resources, next_cursor=following)


def _cursor(after: int) -> str:
    return base64.urlsafe_b64encode(f"docs:{after}".encode()).decode()


def _after(cursor: str) -> int:
    """The document id a cursor continues after; -32602 for anything docserver did not hand out."""
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (UnicodeError, binascii.Error, ValueError):
        decoded = ""
    match = re.fullmatch(r"docs:(0|[1-9][0-9]{0,17})", decoded)
    if match is None:
        message = "invalid cursor; pass the nextCursor of the previous resources/list page, or no cursor to start over"
        raise MCPError(INVALID_PARAMS, message)
    return int(match[1])


async def read_document(service: SearchService, uri: str, allowed: frozenset[str] | None = None) -> ReadResourceResult:
    """The document behind `uri`; another source's document, for a caller limited to some, reads as a missing one."""
    match = _URI.fullmatch(uri)
    if match is None:
        raise MCPError(INVALID_PARAMS, f"unknown resource {uri!r}; use {URI_TEMPLATE}")
    document_id = int(match["document_id"])
    try:
        if allowed is None:
            document = await service.get_document(document_id)
        else:  # another source's document reads exactly as a missing one
            document = await visible_document(service, document_id, allowed)
    except DocumentNotFoundError:
        document = None
    if document is None or document.source != match["source"]:
        message = f"no document {uri!r}; use a source and document_id from a search_docs result"
        raise MCPError(INVALID_PARAMS, message)
    contents = TextResourceContents(uri=uri, mime_type=mime_type(document.path), text=document.content)
    return ReadResourceResult(contents=[contents])


async def completion(
    service: SearchService, params: CompleteRequestParams, allowed: frozenset[str] | None = None
) -> Completion:
    ref = params.ref
    if not isinstance(ref, ResourceTemplateReference) or ref.uri != URI_TEMPLATE:
        raise MCPError(INVALID_PARAMS, f"nothing to complete for {ref.type}; the resource template is {URI_TEMPLATE}")
    if params.argument.name != "source":
        return Completion(values=[], total=0, has_more=False)
    prefix = params.argument.value
    sources = await (service.list_sources() if allowed is None else visible_sources(service, allowed))
    names = sorted(source.name for source in sources if source.name.startswith(prefix))
    return Completion(values=names[:MAX_COMPLETIONS], total=len(names), has_more=len(names) > MAX_COMPLETIONS)
