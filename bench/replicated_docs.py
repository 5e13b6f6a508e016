"""Real documentation, replicated under several source and version names, up to a given number of chunks.

The pages are Python 3.11's HTML docs (Debian `python3.11-doc`) and PostgreSQL
15's (`postgresql-doc-15`), chunked by docserver's own chunker: 1,699 pages,
22,317 chunks. An organisation's documentation grows the same way: every
product in several versions side by side, most sections unchanged from one
version to the next. So copy `r` of both sets goes in as the sources
`python-{p}` and `postgresql-{p}` at version `{v}.0` (p = r // VERSIONS,
v = r % VERSIONS + 1), with the same text: 1,000,000 chunks are 45 copies,
9 products of each set, 5 versions each. The last copy stops at the page
that reaches the size asked for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from docserver.ingest.chunk import Chunk, chunk_document
from docserver.ingest.discover import discover, read_text

SETS = {
    "python": Path("/usr/share/doc/python3.11/html"),
    "postgresql": Path("/usr/share/doc/postgresql-doc-15/html"),
}
"""Each set's folder (Debian packages python3.11-doc and postgresql-doc-15)."""
PRODUCTS = {
    **SETS,
    "django": Path("/usr/share/doc/python-django-doc/html"),
    "sqlalchemy": Path("/usr/share/doc/python-sqlalchemy-doc/html"),
    "nodejs": Path("/usr/share/doc/nodejs/api"),
    "git": Path("/usr/share/doc/git-doc"),
    "flask": Path("/usr/share/doc/python-flask-doc/html"),
    "erlang": Path("/usr/share/doc/erlang-doc"),
    "scipy": Path("/usr/share/doc/python-scipy-doc/html"),
    "pandas": Path("/usr/share/doc/python-pandas-doc/html"),
}
"""Distinct products for `product_copies` (Debian packages python-django-doc, python-sqlalchemy-doc,
nodejs-doc, git-doc, python-flask-doc, erlang-doc, python-scipy-doc, python-pandas-doc as well)."""
SKIPPED = ("_sources/", "_static/", "_downloads/", "_images/", "_modules/")
"""Sphinx's copies of the sources, its highlighted module sources and its assets: not documentation pages."""
VERSIONS = 5
"""Versions of each product side by side."""


@dataclass(frozen=True, slots=True)
class Page:
    path: str
    title: str
    content: str
    content_hash: str
    chunks: list[Chunk]


@dataclass(frozen=True, slots=True)
class Copy:
    """One source at one version: the stored name is `base@version`, as `docserver ingest --version` stores it."""

    base: str
    version: str
    set_name: str
    pages: list[Page]

    @property
    def name(self) -> str:
        return f"{self.base}@{self.version}"


def pages(set_name: str, folder: Path | None = None) -> list[Page]:
    """The pages of one set, chunked as `docserver ingest` chunks them, in path order; from `folder`
    instead of the set's own (PRODUCTS) when given: a package extracted elsewhere (`dpkg-deb -x`)."""
    found = []
    for item in sorted(discover(folder or PRODUCTS[set_name]).files, key=lambda item: item.path):
        if item.path.startswith(SKIPPED) or "/_sources/" in item.path or "/_modules/" in item.path:
            continue
        text = read_text(item.abspath)
        title, chunks = chunk_document(text, item.abspath.suffix.lower())
        if chunks:
            digest = hashlib.sha256(text.encode()).hexdigest()
            found.append(Page(item.path, title or item.abspath.stem, text, digest, chunks))
    return found


def copies(size: int, sets: dict[str, list[Page]]) -> Iterator[Copy]:
    """Copies of the sets, in order, holding `size` chunks in all."""
    left = size
    replica = 0
    while left > 0:
        product, version = divmod(replica, VERSIONS)
        for set_name, set_pages in sets.items():
            taken, left = _take(set_pages, left)
            if taken:
                yield Copy(f"{set_name}-{product}", f"{version + 1}.0", set_name, taken)
        replica += 1


def _take(pages: list[Page], left: int) -> tuple[list[Page], int]:
    """The pages, in order, until `left` chunks are taken; and how many are still to take."""
    taken = []
    for page in pages:
        if left <= 0:
            break
        taken.append(page)
        left -= len(page.chunks)
    return taken, left


def product_copies(size: int, sets: dict[str, list[Page]]) -> Iterator[Copy]:
    """Each set a product of its own, at VERSIONS versions side by side with the same text, in order,
    holding `size` chunks in all: distinct products, so far fewer copies of each vector than `copies`."""
    left = size
    for set_name, set_pages in sets.items():
        for version in range(VERSIONS):
            taken, left = _take(set_pages, left)
            if taken:
                yield Copy(set_name, f"{version + 1}.0", set_name, taken)
    if left > 0:
        raise ValueError(f"the products hold {size - left} chunks in {VERSIONS} versions, fewer than {size}")
