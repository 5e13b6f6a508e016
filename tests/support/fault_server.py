"""A small website whose pages misbehave on demand, served over real HTTP (uvicorn on loopback).

    site = FaultSite()
    site.pages["index.html"] = html_page("Home", links=["a.html"])
    site.faults["a.html"] = 503                     # a status instead of the page
    async with serve_over_http(site.app(), loopback_socket()) as base:
        ...                                         # the site is at base + "/site/"

Every page answers with an ETag and honours If-None-Match (304). Faults: a
status code, `"slow"` (the answer never comes: the client's timeout is what
ends it), a redirect (`site.redirects`), a binary body, and robots.txt
(`site.robots`). `site.requests` counts the requests for each path and
`site.not_modified` the 304s sent.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

PREFIX = "/site/"


def html_page(title: str, body: str = "", links: Sequence[str] = (), canonical: str | None = None) -> str:
    """A documentation-like page: navigation and footer around a main section."""
    nav = "".join(f'<li><a href="{href}">{escape(href)}</a></li>' for href in links)
    head = f'<link rel="canonical" href="{canonical}">' if canonical else ""
    return (
        f"<!doctype html><html><head><title>{escape(title)}</title>{head}</head><body>"
        f"<nav><ul>{nav}</ul><p>Site navigation</p></nav>"
        f'<main><section id="{title.lower().replace(" ", "-")}"><h1>{escape(title)}</h1>'
        f"<p>{body or f'All about {escape(title)}.'}</p></section></main>"
        "<footer>Copyright footer text</footer></body></html>"
    )


@dataclass
class FaultSite:
    pages: dict[str, str] = field(default_factory=dict)
    """Path below /site/ -> HTML (or, by suffix, Markdown / text / XML)."""
    faults: dict[str, int | str] = field(default_factory=dict)
    """Path -> a status code to answer instead, "slow" (never answers) or "binary"."""
    redirects: dict[str, str] = field(default_factory=dict)
    """Path -> the Location it redirects to (301)."""
    robots: str | None = None
    """robots.txt's text; None: 404."""
    requests: Counter[str] = field(default_factory=Counter)
    not_modified: int = 0
    _never: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._answer)])

    def close(self) -> None:
        """Let the slow answers end, so the server can stop."""
        self._never.set()

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        self.requests[path] += 1
        if path == "/robots.txt":
            return PlainTextResponse(self.robots) if self.robots is not None else PlainTextResponse("", 404)
        name = path.removeprefix(PREFIX)
        if name in self.redirects:
            return RedirectResponse(self.redirects[name], status_code=301)
        fault = self.faults.get(name)
        if fault == "slow":
            await self._never.wait()
        if fault == "binary":
            return Response(b"\x89PNG\r\n\x1a\n\0\0\0" * 100, media_type="text/html")
        if isinstance(fault, int):
            return PlainTextResponse(f"fault {fault}", fault)
        if not path.startswith(PREFIX) or name not in self.pages:
            return PlainTextResponse("not found", 404)
        return self._page(request, name)

    def _page(self, request: Request, name: str) -> Response:
        body = self.pages[name]
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
        if request.headers.get("if-none-match") == etag:
            self.not_modified += 1
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type=_media_type(name), headers={"ETag": etag})


def _media_type(name: str) -> str:
    if name.endswith(".md"):
        return "text/markdown"
    if name.endswith(".xml"):
        return "application/xml"
    if name.endswith(".txt"):
        return "text/plain"
    return "text/html"
