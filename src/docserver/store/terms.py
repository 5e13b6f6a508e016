"""Query terms for keyword search: the words that carry meaning, and how their matches rank.

Keyword search that ORs every query word, stopwords included, "matches"
nearly every document; fusion then rewards noise. Backends build their
full-text query from these terms instead, and rank the chunks that hold
every term above those that hold some (`text_score`).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 32

STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves
    get use using want need way make tell show find please
    """.split()
)


def query_terms(query: str) -> list[str]:
    """Lower-cased words of `query` without stopwords, in order, without repeats.

    When every word is a stopword the words themselves are kept, so a query
    such as "how to" still searches for something.
    """
    words = [word.lower() for word in _WORD.findall(query)]
    unique = list(dict.fromkeys(words))
    meaningful = [word for word in unique if word not in STOPWORDS]
    return (meaningful or unique)[:MAX_TERMS]


def text_score(every: bool, strength: float) -> float:
    """A full-text match's score: chunks holding every query term first, then by the engine's rank.

    `strength` is the engine's relevance, 0 or more (bm25 negated, ts_rank_cd),
    squeezed into [0, 1) so that the tiers never overlap and scores fall in
    result order. Search engines call this coordination: on the real-docs
    questions it raised MRR and lost no easy question (docs/search.md).
    """
    return float(every) + strength / (1.0 + strength)
