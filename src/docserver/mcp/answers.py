"""A repeated search answered in the wire form the SDK gave it the first time.

A result-cache hit is cheap for docserver, but the call around it is not: the
SDK validates the call's parameters and arguments into models, builds the
tool's context, calls the tool, then validates and dumps its result into the
wire form. On a repeated search that is most of the server's work
(docs/performance.md, "The worst case: every call a cache hit"). So the wire
form of a successful `search_docs` answer is kept on the cached page it came
from (`SearchPage.rendered`), and `RepeatedSearches` answers a call with the
same arguments from it while the result cache still holds that page.

Why the answer is the one the SDK would give:
- a wire form is kept only after the SDK served a call with these arguments
  successfully, under this protocol version, and only arguments of the exact
  JSON types the tool's schema takes are looked up (no coercion: `"5"` or
  `5.0` for `limit` always go to the SDK);
- it is served only while the result cache holds the very page it was made
  from: the same corpus version, the same sources the caller may read;
- the call's parameters are still checked against the protocol's schema by
  the SDK's own validator (`mcp_types.methods.validate_client_request`).

The lookup is counted as the result cache's hit it is; the MCP span, metrics
and the tool-call log line are McpObserver's, outside this middleware, as for
any call.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from mcp.server.context import CallNext, ServerRequestContext
from mcp_types.methods import validate_client_request

from docserver.access.visible import allowed_sources
from docserver.errors import DocserverError
from docserver.search import SearchPage, SearchService

TOOL = "search_docs"
FORMS_PER_PAGE = 8
"""Wire forms kept per page (protocol versions times queries as sent); the oldest goes first."""

_ARGUMENTS = frozenset({"query", "source", "version", "limit"})
_DEFAULT_LIMIT = 5

_served: ContextVar[list[SearchPage] | None] = ContextVar("docserver_served_page", default=None)


def served(page: SearchPage) -> None:
    """Called by the tool on a successful answer: the page its result was rendered from."""
    holder = _served.get()
    if holder is not None:
        holder.append(page)


class RepeatedSearches:
    """ServerMiddleware (the innermost): a repeated `search_docs` call answered from its kept wire form."""

    def __init__(self, service: SearchService) -> None:
        self.service = service
        self.enabled = service.result_cache.maxsize > 0  # DOCSERVER_CACHE_SIZE=0: no page is kept to answer from

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        call = _search_call(ctx.params) if self.enabled and ctx.method == "tools/call" else None
        if call is None:
            return await call_next(ctx)
        query, source, version, limit = call
        within = allowed_sources(ctx.request)
        form_key = (ctx.protocol_version, query)
        try:
            page = await self.service.cached_page(query, source=source, version=version, limit=limit, within=within)
        except DocserverError:
            page = None  # the SDK's call below meets the same failure and says it
        if page is not None:
            forms = page.rendered
            answer = forms.get(form_key) if isinstance(forms, dict) else None
            if answer is not None and _valid(ctx):
                self.service.served_from_cache(page)
                return dict(answer)
        holder: list[SearchPage] = []
        token = _served.set(holder)
        try:
            result = await call_next(ctx)
        finally:
            _served.reset(token)
        if holder and isinstance(result, dict) and result.get("isError") is not True:
            _keep(holder[-1], form_key, result)
        return result


def _search_call(params: Mapping[str, Any] | None) -> tuple[str, str | None, str | None, int] | None:
    """A `search_docs` call's (query, source, version, limit), when every argument has its schema's exact type."""
    if not params or params.get("name") != TOOL:
        return None
    arguments = params.get("arguments")
    if not isinstance(arguments, dict) or not arguments.keys() <= _ARGUMENTS:
        return None
    query = arguments.get("query")
    source = arguments.get("source")
    version = arguments.get("version")
    limit = arguments.get("limit", _DEFAULT_LIMIT)
    if (
        type(query) is not str
        or (source is not None and type(source) is not str)
        or (version is not None and type(version) is not str)
        or type(limit) is not int
    ):
        return None
    return query, source, version, limit


def _valid(ctx: ServerRequestContext[Any, Any]) -> bool:
    """The call's parameters (`_meta` included) pass the protocol schema, as the SDK checks before any handler."""
    try:
        validate_client_request(ctx.method, ctx.protocol_version, ctx.params)
    except (ValueError, KeyError):  # pydantic's ValidationError is a ValueError
        return False
    return True


def _keep(page: SearchPage, key: tuple[str, str], answer: dict[str, Any]) -> None:
    forms = page.rendered if isinstance(page.rendered, dict) else {}
    if len(forms) >= FORMS_PER_PAGE:
        del forms[next(iter(forms))]
    forms[key] = dict(answer)
    page.rendered = forms
