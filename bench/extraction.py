"""Main-content extraction on real documentation pages: quality and CPU time of three candidates.

    pip install trafilatura readability-lxml selectolax   # into any venv
    PYTHONPATH=src python bench/extraction.py [--out bench/results/extraction.json]

The candidates: trafilatura (`extract(..., output_format="html")`),
readability-lxml (`Document(html).summary()`), and docserver's own selectolax
heuristic (docserver.sources.extract: the page's main/article element, with
navigation, headers, footers and sidebars cut out).

Pages: Python's HTML docs (Debian python3.11-doc) and PostgreSQL's (Debian
postgresql-doc-15). What a page should yield (the gold):
- Python: the page's reStructuredText source, which Sphinx ships beside it
  (`_sources/PAGE.rst.txt`): what its authors wrote, independent of any extractor;
- PostgreSQL: the page's `<body>` without DocBook's navheader and navfooter
  (the only chrome those pages have).
Quality is word-level: recall (share of the gold's words, counted with
multiplicity, found in the output), precision (share of the output's words
that are in the gold), and anchors (share of the gold page's section ids kept
in the output, which search results need to link to a section). CPU time is
process time per page, the best of three interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from selectolax.lexbor import LexborHTMLParser

from docserver.sources.extract import extract as selectolax_extract

PYTHON = Path("/usr/share/doc/python3.11/html")
POSTGRES = Path("/usr/share/doc/postgresql-doc-15/html")
PYTHON_PAGES = (
    "library/os.html",
    "library/json.html",
    "library/functions.html",
    "library/asyncio-task.html",
    "tutorial/classes.html",
    "howto/logging.html",
    "reference/datamodel.html",
    "faq/programming.html",
)
POSTGRES_PAGES = (
    "sql-createtable.html",
    "sql-select.html",
    "tutorial-join.html",
    "indexes-types.html",
    "datatype-json.html",
    "functions-string.html",
    "runtime-config-resource.html",
    "plpgsql-control-structures.html",
)
_WORD = re.compile(r"\w+")
_ID = re.compile(r'\bid="([^"]+)"')


def _trafilatura(html: str) -> str:
    import trafilatura

    return trafilatura.extract(html, output_format="html", include_tables=True, include_formatting=True) or ""


def _readability(html: str) -> str:
    from readability import Document

    return str(Document(html).summary())


def _selectolax(html: str) -> str:
    return selectolax_extract(html).html


CANDIDATES: dict[str, Callable[[str], str]] = {
    "trafilatura": _trafilatura,
    "readability-lxml": _readability,
    "selectolax (docserver)": _selectolax,
}


def words(text: str) -> Counter[str]:
    return Counter(word.lower() for word in _WORD.findall(text))


def text_of(html: str) -> str:
    return LexborHTMLParser(html).text(separator=" ")


def python_gold(page: str) -> tuple[str, set[str]]:
    source = (PYTHON / "_sources" / (page.removesuffix(".html") + ".rst.txt")).read_text()
    body = LexborHTMLParser((PYTHON / page).read_text()).css_first("[role=main]")
    return source, {node.attributes["id"] or "" for node in body.css("section[id]")}


def postgres_gold(page: str) -> tuple[str, set[str]]:
    tree = LexborHTMLParser((POSTGRES / page).read_text())
    for node in tree.css(".navheader, .navfooter"):
        node.decompose()
    ids = {node.attributes["id"] or "" for node in tree.css("div.sect1[id], div.sect2[id], div.refsect1[id]")}
    return tree.body.text(separator=" ") if tree.body else "", ids


def score(output_html: str, gold_text: str, gold_ids: set[str]) -> dict[str, float]:
    got, want = words(text_of(output_html)), words(gold_text)
    common = sum((got & want).values())
    kept_ids = set(_ID.findall(output_html)) & gold_ids
    return {
        "recall": common / max(sum(want.values()), 1),
        "precision": common / max(sum(got.values()), 1),
        "anchors": len(kept_ids) / len(gold_ids) if gold_ids else 1.0,
    }


def measure(root: Path, pages: tuple[str, ...], gold: Callable[[str], tuple[str, set[str]]]) -> dict[str, dict]:
    htmls = {page: (root / page).read_text() for page in pages}
    golds = {page: gold(page) for page in pages}
    cpu: dict[str, float] = {name: float("inf") for name in CANDIDATES}
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in CANDIDATES}
    for round_ in range(3):
        for name, candidate in CANDIDATES.items():  # interleaved: the machine's noise hits every candidate alike
            started = time.process_time()
            outputs = [candidate(htmls[page]) for page in pages]
            cpu[name] = min(cpu[name], (time.process_time() - started) / len(pages))
            if round_ == 0:
                scores[name] = [score(out, *golds[page]) for out, page in zip(outputs, pages, strict=True)]
    keys = ("recall", "precision", "anchors")
    return {
        name: {
            **{key: round(sum(s[key] for s in scores[name]) / len(pages), 3) for key in keys},
            "cpu_ms_per_page": round(cpu[name] * 1000, 1),
        }
        for name in CANDIDATES
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/extraction.json"))
    args = parser.parse_args()
    results = {
        "python3.11-doc": measure(PYTHON, PYTHON_PAGES, python_gold),
        "postgresql-doc-15": measure(POSTGRES, POSTGRES_PAGES, postgres_gold),
        "pages": {"python3.11-doc": list(PYTHON_PAGES), "postgresql-doc-15": list(POSTGRES_PAGES)},
        "python": sys.version.split()[0],
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
