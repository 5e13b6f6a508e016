"""What a crawl remembers of each page for the next one: its validators and its links.

Kept as one JSON file per website source in the cache folder (beside the git
cache), written whole after each crawl. A refresh sends the validators back
(a conditional GET: a page that answers 304 costs no body and no embedding)
and, since a 304 has no body, takes the page's links from here to go on
finding pages. A missing or unreadable file only costs full GETs; the
store, not this file, says which pages exist.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from docserver.sources.fetch import Validators


@dataclass(frozen=True, slots=True)
class PageMemo:
    validators: Validators
    links: list[str]


@dataclass(slots=True)
class CrawlState:
    path: Path
    pages: dict[str, PageMemo] = field(default_factory=dict)

    @classmethod
    def load(cls, cache: Path, start: str) -> CrawlState:
        path = cache / f"{hashlib.sha256(start.encode()).hexdigest()[:16]}.json"
        try:
            raw = json.loads(path.read_text())
            pages = {url: PageMemo(Validators(*memo["validators"]), list(memo["links"])) for url, memo in raw.items()}
        except (OSError, ValueError, KeyError, TypeError):
            pages = {}
        return cls(path, pages)

    def save(self) -> None:
        """Write the file whole: a crash leaves the previous one, never half of one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = {url: {"validators": list(memo.validators), "links": memo.links} for url, memo in self.pages.items()}
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(raw))
        os.replace(partial, self.path)
