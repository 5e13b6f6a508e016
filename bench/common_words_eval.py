"""`docserver eval` with the words more than half the chunks hold left out at every store size.

    python bench/common_words_eval.py [--questions python|postgresql] [--embedders hash] [--json]

The store leaves such words out only from RELAX_FROM_CHUNKS chunks (100,000),
and the question sets' stores are far smaller, so `docserver eval` alone does
not see the rule. This runs the same evaluation with the rule applied whatever
the size (an experiment, not a setting): the scores say whether leaving the
words out loses answers on the sets' corpora. Arguments are `docserver eval`'s.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from docserver.cli import main
from docserver.store import sqlite_sql
from docserver.store.base import RankedId

_search_text = sqlite_sql.search_text


def search_text(db: object, terms: list[str], source: object, limit: int) -> list[RankedId]:
    counts = sqlite_sql.word_counts(db, terms)
    held = [term for term in terms if counts[term]]
    return _search_text(db, sqlite_sql.informative(held, counts), source, limit)  # type: ignore[arg-type]


if __name__ == "__main__":
    sqlite_sql.search_text = search_text
    raise SystemExit(main(["eval", *sys.argv[1:]]))
