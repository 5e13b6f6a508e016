"""The MCP tools. Their docstrings and field descriptions are what the model reads."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from docserver.access.visible import allowed_sources, visible_document, visible_search, visible_sources
from docserver.empty_store import EMPTY_STORE_HINT, store_is_empty
from docserver.errors import DocumentNotFoundError, EmbeddingError, SearchInputError, StoreError
from docserver.mcp.answers import served
from docserver.mcp.listing import SourceList, source_list
from docserver.search import MAX_LIMIT, MAX_QUERY_CHARS, SearchHit, SearchPage, SearchService

TOOL_NAMES = ("search_docs", "list_sources", "get_document")
MAX_DOCUMENT_CHARS = 100_000
MAX_VERSION_CHARS = 100

_READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


class Hit(BaseModel):
    document_id: int = Field(description="Pass to get_document to read the whole file.")
    chunk_id: int
    source: str
    path: str = Field(description="File path within the source, or the page's URL for a website source.")
    url: str | None = Field(
        default=None, description="For a website source: the page's address, with the section's anchor. Cite it."
    )
    title: str
    heading: str = Field(description="Heading path of the section, e.g. 'Install > From source'.")
    lines: str = Field(description="Line range in the file, e.g. '12-40'.")
    score: float = Field(description="Relevance; higher is better. Only comparable within one search.")
    snippet: str


class SearchResults(BaseModel):
    query: str
    source: str | None
    results: list[Hit]


class DocumentContent(BaseModel):
    document_id: int
    source: str
    path: str
    title: str
    chunks: int
    truncated: bool = Field(description=f"True when the content was cut at {MAX_DOCUMENT_CHARS} characters.")
    content: str


def _hit(hit: SearchHit) -> Hit:
    return Hit(
        document_id=hit.document_id,
        chunk_id=hit.chunk_id,
        source=hit.source,
        path=hit.path,
        url=hit.url,
        title=hit.title,
        heading=hit.heading,
        lines=f"{hit.start_line}-{hit.end_line}",
        score=hit.score,
        snippet=hit.snippet,
    )


def _rendered(page: SearchPage, query: str, source: str | None) -> CallToolResult:
    """The tool result for a page (the query and source it echoes are part of it)."""
    results = SearchResults(query=query, source=source, results=[_hit(hit) for hit in page.hits])
    return _structured_result(results.model_dump(mode="json"))


def _empty_store_result(query: str, source: str | None) -> CallToolResult:
    """No results, and what to do about it: nothing is indexed."""
    return _structured_result({"query": query, "source": source, "results": [], "hint": EMPTY_STORE_HINT})


def _structured_result(structured: dict[str, Any]) -> CallToolResult:
    """A tool result as the SDK would build it from the model: the structure, and its indented JSON as text."""
    text = orjson.dumps(structured, option=orjson.OPT_INDENT_2).decode()
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def _unavailable(exc: Exception) -> ToolError:
    if isinstance(exc, EmbeddingError):
        return ToolError(f"search is unavailable right now: the embedding provider failed ({exc}). Try again shortly.")
    return ToolError(f"search is unavailable right now: the document store failed ({exc}). Try again shortly.")


def _allowed(ctx: Context | None) -> frozenset[str] | None:
    """The sources this call's caller may read (None: all): set by authentication on the HTTP request."""
    if ctx is None:
        return None
    return allowed_sources(ctx.request_context.request)


def register_tools(mcp: MCPServer, service: SearchService) -> None:
    """Bind the three tools to `service` on `mcp`."""

    @mcp.tool(annotations=_READ_ONLY, title="Search documentation")
    async def search_docs(
        query: Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_QUERY_CHARS,
                description="What you are looking for, as a question or keywords, "
                "e.g. 'how do I set the database URL'.",
            ),
        ],
        source: Annotated[
            str | None,
            Field(description="Search only this source (names come from list_sources). Omit to search all."),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="How many results to return.")] = 5,
        version: Annotated[
            str | None,
            Field(
                max_length=MAX_VERSION_CHARS,
                description="Search only this version, e.g. '3.11' (versions come from list_sources). "
                "Omit to search the newest version of each source.",
            ),
        ] = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, SearchResults]:
        """Search the ingested technical documentation and return the most relevant sections.

        Use this before answering questions about the documented software: it combines
        keyword and semantic search, so both exact names (settings, functions, error
        messages) and paraphrased questions work. Each result gives the file path, the
        section heading, a snippet, a document_id and, for web pages, the url to cite
        (with the section's anchor); call get_document with that id
        when you need the full text. If nothing relevant comes back, try other words
        or a broader query, or check list_sources for what is indexed.

        Where a source has several versions (e.g. 3.11 and 3.12), only its newest is
        searched unless you pass `version`; a result's `source` says which version
        it came from (e.g. 'python@3.12').
        """
        try:
            allowed = _allowed(ctx)
            if allowed is None:
                page = await service.search_page(query, source=source, version=version, limit=limit)
            else:
                page = await visible_search(
                    service, query, source=source, version=version, limit=limit, allowed=allowed
                )
            if not page.hits and await store_is_empty(service):  # the hint to run `docserver ingest`
                return _empty_store_result(query, source)
        except SearchInputError as exc:
            raise ToolError(str(exc)) from None
        except (EmbeddingError, StoreError) as exc:
            raise _unavailable(exc) from None
        served(page)  # its wire form is kept for the same call again (mcp/answers.py)
        return _rendered(page, query, source)

    @mcp.tool(annotations=_READ_ONLY, title="List documentation sources")
    async def list_sources(ctx: Context | None = None) -> SourceList:
        """List the documentation sources that are indexed: their versions, sizes and freshness.

        Use it to learn what documentation is available, to get the exact `source`
        name and `version` label for search_docs, or to judge how current the
        documentation is: each version says where it comes from, when it was last
        refreshed successfully, and why its latest refresh failed, if it did.
        """
        try:
            allowed = _allowed(ctx)
            sources = await (service.list_sources() if allowed is None else visible_sources(service, allowed))
            records = {record.name: record for record in await service.source_records()}
        except StoreError as exc:
            raise _unavailable(exc) from None
        return source_list(sources, records)

    @mcp.tool(annotations=_READ_ONLY, title="Read a whole document")
    async def get_document(
        id: Annotated[int, Field(ge=1, description="The document_id from a search_docs result.")],
        ctx: Context | None = None,
    ) -> DocumentContent:
        """Return the full text of one documentation file, by the document_id that search_docs gave.

        Use it when a search snippet is not enough: to read a whole page, follow a
        procedure end to end, or quote exact text. Very long files are cut at
        100,000 characters (see `truncated`).
        """
        try:
            allowed = _allowed(ctx)
            document = await (service.get_document(id) if allowed is None else visible_document(service, id, allowed))
        except DocumentNotFoundError:
            raise ToolError(f"no document with id {id}; use a document_id from a search_docs result") from None
        except StoreError as exc:
            raise _unavailable(exc) from None
        content = document.content
        return DocumentContent(
            document_id=document.document_id,
            source=document.source,
            path=document.path,
            title=document.title,
            chunks=document.chunk_count,
            truncated=len(content) > MAX_DOCUMENT_CHARS,
            content=content[:MAX_DOCUMENT_CHARS],
        )
