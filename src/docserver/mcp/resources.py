"""Documents as MCP resources: one template, `docs://{source}/{document_id}`, and completions for it.

`resources/read` answers a document's text with a MIME type guessed from its
path; `completion/complete` suggests source names (and nothing for the id,
which comes from search results). `resources/list` is empty: documents are
reached through the template, since the store has no paged listing yet.
Every list is bounded (MAX_COMPLETIONS), and an unknown URI, source or
document is -32602 with a message that says what to use instead.
"""

from __future__ import annotations

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
        return ListResourcesResult(resources=[])

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
