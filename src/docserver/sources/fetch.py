"""One page fetched over HTTP: redirects followed by hand, size capped, conditional, paced, classified.

Every fetch ends in one result from HTTP_FETCH_RESULTS, which labels
`docserver_fetch_requests_total{kind="http"}`, and a reason a person can read
for the ones that failed. Redirects are followed here rather than by the
client, so a loop, a hop out of the source's scope and a hop robots.txt
forbids are each caught by name. Requests are paced: at most `concurrency`
at a time and one start every `interval` seconds, whatever the number of
crawl workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import NamedTuple

import httpx

from docserver.observability import tracing
from docserver.sources.scope import normalize, safe_url

HTTP_FETCH_RESULTS = (
    *("ok", "not_modified", "not_found", "redirect_loop", "redirected_away", "too_large", "unsupported"),
    *("client_error", "server_error", "timeout", "unreachable"),
)
"""The closed set of `result` values of `docserver_fetch_requests_total{kind="http"}`."""
MAX_REDIRECTS = 10
_BINARY_PROBE_BYTES = 8192
_HTML = ("text/html", "application/xhtml+xml")
_MARKDOWN = ("text/markdown", "text/x-markdown")
_XML = ("application/xml", "text/xml")
_SUFFIX_KINDS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".txt": "txt"}


class Validators(NamedTuple):
    """What a conditional GET sends back: the page's `ETag` and `Last-Modified`."""

    etag: str | None
    last_modified: str | None


NO_VALIDATORS = Validators(None, None)


@dataclass(frozen=True, slots=True)
class Response:
    url: str
    """The final URL, after redirects."""
    result: str
    """From HTTP_FETCH_RESULTS."""
    reason: str = ""
    """Why it failed, in a few words (`503 Service Unavailable`, `over the 5000000-byte limit`)."""
    kind: str = ""
    """`html`, `md`, `txt` or (a sitemap) `xml` for a body that came back."""
    text: str = ""
    validators: Validators = NO_VALIDATORS
    size: int = 0
    """Body bytes received."""

    @property
    def ok(self) -> bool:
        return self.result == "ok"


class Fetcher:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_bytes: int,
        timeout: float,
        concurrency: int,
        interval: float,
        may_follow: Callable[[str], str | None],
        on_fetch: Callable[[str, int], None] | None = None,
    ) -> None:
        self._client = client
        self._max_bytes = max_bytes
        self._timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._interval = interval
        self._next_start = 0.0
        self._may_follow = may_follow
        """Why a redirect target may not be fetched (out of scope, robots.txt), None when it may."""
        self._on_fetch = on_fetch
        """Called with (result, bytes received) after every fetch, for the fetch metrics."""

    def slow_down(self, interval: float) -> None:
        """Start requests at least `interval` seconds apart (a robots.txt `Crawl-delay`)."""
        self._interval = max(self._interval, interval)

    async def get(self, url: str, validators: Callable[[str], Validators | None] = lambda _: None) -> Response:
        """GET `url`, following redirects; conditional when `validators` knows a hop's URL."""
        with tracing.span("fetch http", attributes={"url.full": safe_url(url)}) as span:
            response = await self._get(url, validators)
            if span is not None:
                span.set_attribute("docserver.fetch.result", response.result)
                if not response.ok and response.result != "not_modified":
                    tracing.mark_error(span, response.result)
        if self._on_fetch is not None:
            self._on_fetch(response.result, response.size)
        return response

    async def _get(self, url: str, validators: Callable[[str], Validators | None]) -> Response:
        first, seen = url, {url}
        for _ in range(MAX_REDIRECTS + 1):
            async with self._slots:
                await self._pace()
                try:
                    async with asyncio.timeout(self._timeout):
                        response, location = await self._request(url, validators(url))
                except (TimeoutError, httpx.TimeoutException):
                    return Response(url, "timeout", f"no answer within {self._timeout:g} s")
                except httpx.HTTPError as exc:
                    return Response(url, "unreachable", _transport_reason(exc))
            if location is None:
                return response
            target = normalize(httpx.URL(url).join(location).__str__())
            if target is None or target in seen:
                return Response(first, "redirect_loop", f"redirect loop at {safe_url(target or location)}")
            refused = self._may_follow(target)
            if refused is not None:
                return Response(url, "redirected_away", f"redirects to {safe_url(target)}: {refused}")
            seen.add(target)
            url = target
        return Response(first, "redirect_loop", f"more than {MAX_REDIRECTS} redirects")

    async def _request(self, url: str, validators: Validators | None) -> tuple[Response, str | None]:
        """The response to one request, and where it redirects to (None when it does not)."""
        async with self._client.stream("GET", url, headers=_conditional(validators)) as answer:
            status = answer.status_code
            if answer.is_redirect and "location" in answer.headers:
                return Response(url, "ok"), answer.headers["location"]
            if status == 304:
                return Response(url, "not_modified", validators=validators or NO_VALIDATORS), None
            if status >= 400:
                return Response(url, _status_result(status), f"{status} {answer.reason_phrase}".strip()), None
            if status >= 300:
                return Response(url, "client_error", f"{status} without a Location"), None
            return await self._page(url, answer), None

    async def _page(self, url: str, answer: httpx.Response) -> Response:
        declared = answer.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            return Response(url, "too_large", f"over the {self._max_bytes}-byte limit")
        content_type = answer.headers.get("content-type", "")
        kind = _kind(content_type, url)
        if kind is None:
            return Response(url, "unsupported", f"not a page: {content_type or 'no content type'}")
        body = bytearray()
        async for part in answer.aiter_bytes():
            body += part
            if len(body) > self._max_bytes:
                return Response(url, "too_large", f"over the {self._max_bytes}-byte limit", size=len(body))
        if b"\0" in body[:_BINARY_PROBE_BYTES]:
            return Response(url, "unsupported", "binary content", size=len(body))
        validators = Validators(answer.headers.get("etag"), answer.headers.get("last-modified"))
        text = body.decode(_charset(content_type), errors="replace").replace("\r\n", "\n")
        return Response(url, "ok", kind=kind, text=text, validators=validators, size=len(body))

    async def _pace(self) -> None:
        # A schedule of start times, not a sleep per worker: N workers still start one request per interval.
        now = time.monotonic()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


def _conditional(validators: Validators | None) -> dict[str, str]:
    headers = {}
    if validators is not None and validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators is not None and validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


def _status_result(status: int) -> str:
    if status in (404, 410):
        return "not_found"
    return "server_error" if status >= 500 else "client_error"


def _kind(content_type: str, url: str) -> str | None:
    media = content_type.partition(";")[0].strip().lower()
    suffix = "." + url.rsplit("/", 1)[-1].rpartition(".")[2].lower()
    if media in _HTML:
        return "html"
    if media in _MARKDOWN or (media == "text/plain" and _SUFFIX_KINDS.get(suffix) == "md"):
        return "md"
    if media == "text/plain":
        return "txt"
    if media in _XML:
        return "xml"
    return _SUFFIX_KINDS.get(suffix) if not media else None


def _charset(content_type: str) -> str:
    message = Message()
    message["content-type"] = content_type or "text/plain"
    charset = message.get_param("charset")
    name = charset if isinstance(charset, str) else "utf-8"
    try:
        "".encode(name)
    except LookupError:
        return "utf-8"
    return name


def _transport_reason(exc: httpx.HTTPError) -> str:
    kind = "cannot connect" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
    detail = str(exc).strip()
    return f"{kind} ({detail})" if detail else kind
