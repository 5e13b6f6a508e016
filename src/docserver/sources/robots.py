"""robots.txt, as RFC 9309 reads it: what the crawler may fetch, how slowly, and the sitemaps it names.

A robots.txt that is missing (any 4xx) allows everything; one the server
cannot give (5xx, timeout, unreachable) forbids everything for this crawl,
since the rules it would say are unknown. The standard library's parser
reads the file; the product token docserver matches is `docserver`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.robotparser import RobotFileParser

USER_AGENT_TOKEN = "docserver"


@dataclass(frozen=True, slots=True)
class Robots:
    parser: RobotFileParser | None = None
    """None: no rules (a missing robots.txt)."""
    unavailable: str | None = None
    """Why robots.txt could not be read, when everything is forbidden for that reason."""
    sitemaps: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> Robots:
        parser = RobotFileParser()
        parser.parse(text.splitlines())
        return cls(parser, None, list(parser.site_maps() or ()))

    def allows(self, url: str) -> bool:
        if self.unavailable is not None:
            return False
        return self.parser is None or self.parser.can_fetch(USER_AGENT_TOKEN, url)

    def crawl_delay(self) -> float:
        """Seconds the site asks between two requests (`Crawl-delay`), 0 when it asks nothing."""
        if self.parser is None:
            return 0.0
        delay = self.parser.crawl_delay(USER_AGENT_TOKEN)
        return float(delay) if delay else 0.0


ALLOW_ALL = Robots()
