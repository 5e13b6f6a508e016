"""settings.sources: keeping sources fresh from where they live, and crawling websites politely."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from docserver import __version__
from docserver.config.fields import Group, env

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any) -> Any:
    """`6h`, `30m`, `1d`, `90s` or plain seconds; `off`, `0` or empty: None (no schedule)."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in ("", "off", "0", "none"):
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError("must be a duration such as 6h, 30m, 1d or 3600 (seconds), or off")
    return float(match[1]) * _UNIT_SECONDS[match[2]]


Duration = Annotated[float | None, BeforeValidator(_seconds)]


class SourcesSettings(Group):
    refresh_interval: Duration = env("DOCSERVER_REFRESH_INTERVAL", None, ge=60)
    """How often `serve` refreshes every source from its recorded origin (`6h`, `30m`, `1d`); off when unset.
    With several replicas each refreshes on its own schedule; one process refreshes a source at a time (the
    others skip it as `busy`), and a source whose origin has not moved is `unchanged` at the cost of a fetch."""

    crawl_max_pages: int = env("DOCSERVER_CRAWL_MAX_PAGES", 5000, ge=1)
    """The most pages one crawl of a website source keeps; the crawl stops there (a warning says so)."""
    crawl_max_page_bytes: int = env("DOCSERVER_CRAWL_MAX_PAGE_BYTES", 5_000_000, ge=1024)
    """The largest page body a crawl reads, in bytes; a larger page is skipped (and what was stored for it kept)."""
    crawl_max_depth: int = env("DOCSERVER_CRAWL_MAX_DEPTH", 20, ge=0)
    """How many links away from the start URL a crawl goes (pages named by a sitemap or llms.txt are one away)."""
    crawl_concurrency: int = env("DOCSERVER_CRAWL_CONCURRENCY", 4, ge=1, le=64)
    """Requests one crawl has in flight at most."""
    crawl_rate: float = env("DOCSERVER_CRAWL_RATE", 5.0, gt=0)
    """Requests one crawl starts per second at most; a site's robots.txt `Crawl-delay` can only slow it further."""
    crawl_timeout: float = env("DOCSERVER_CRAWL_TIMEOUT", 30.0, gt=0, le=600)
    """Seconds one page may take, redirects and body included; a page that takes longer counts as failed."""
    crawl_user_agent: str = env("DOCSERVER_CRAWL_USER_AGENT", f"docserver/{__version__}")
    """The `User-Agent` of crawl requests. robots.txt rules are matched against the token `docserver`."""
