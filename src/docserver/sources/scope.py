"""A website source's scope: the start URL's scheme, host and path prefix, and the URLs inside it.

`https://docs.example.com/guide/start.html` crawls everything under
`https://docs.example.com/guide/`. URLs are compared in one spelling: the
fragment dropped, the host lowercased, the default port left out. Every URL
written to a log line or an error goes through `safe_url` first, which
drops userinfo and the query string (where credentials hide).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from docserver.errors import DocserverError

WEB_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"[A-Za-z0-9._~%-]+|[0-9A-Fa-f:.]+")
"""A registered name or an IP address (IPv6 without its brackets): no spaces, no stray punctuation."""


def normalize(url: str) -> str | None:
    """`url` in the crawler's one spelling; None when it is no http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in WEB_SCHEMES or not parts.hostname or not _HOST.fullmatch(parts.hostname):
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    # Userinfo is left out: a page's URL is stored and shown; credentials go in the client's auth instead.
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def safe_url(url: str) -> str:
    """`url` without userinfo, query or fragment: fit for a log line, a span or an error message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unparsable URL)"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class Scope:
    start: str
    """The start URL, normalized."""
    prefix: str
    """Scheme, host and the start URL's folder: every URL of the source starts with it."""
    auth: tuple[str, str] | None = None
    """User and password from the start URL's userinfo, sent as HTTP Basic credentials."""

    @classmethod
    def of(cls, url: str) -> Scope:
        """The scope of start URL `url`; DocserverError (one line) when it is no usable http(s) URL."""
        start = normalize(url)
        if start is None:
            raise DocserverError(f"invalid URL: {safe_url(url)} (expected http://HOST/PATH or https://HOST/PATH)")
        parts = urlsplit(start)
        folder = parts.path[: parts.path.rfind("/") + 1]
        typed = urlsplit(url.strip())
        auth = (unquote(typed.username), unquote(typed.password or "")) if typed.username else None
        return cls(start, urlunsplit((parts.scheme, parts.netloc, folder, "", "")), auth)

    @property
    def root(self) -> str:
        """Scheme and host, where robots.txt lives."""
        parts = urlsplit(self.prefix)
        return urlunsplit((parts.scheme, parts.netloc, "/", "", ""))

    def resolve(self, href: str, base: str) -> str | None:
        """The in-scope URL a link on page `base` points to; None when it leaves the scope."""
        try:
            absolute = urljoin(base, href.strip())
        except ValueError:
            return None
        url = normalize(absolute)
        return url if url is not None and self.contains(url) else None

    def resolve_all(self, hrefs: list[str], base: str) -> list[str]:
        """The in-scope URLs among links on page `base`, each once, in order."""
        return list(dict.fromkeys(url for href in hrefs if (url := self.resolve(href, base))))

    def contains(self, url: str) -> bool:
        return url.startswith(self.prefix)

    def relative(self, url: str) -> str:
        """The path of `url` below the prefix, as --include/--exclude globs see it (`index.html` for the folder)."""
        path = urlsplit(url).path[len(urlsplit(self.prefix).path) :]
        return path if path and not path.endswith("/") else path + "index.html"
