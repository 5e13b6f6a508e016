"""A synthetic documentation corpus of a given size, the same for every run (fixed seed)."""

from __future__ import annotations

import random
from pathlib import Path

_TOPICS = [
    "install",
    "configure",
    "deploy",
    "upgrade",
    "backup",
    "restore",
    "monitor",
    "scale",
    "secure",
    "debug",
    "cache",
    "queue",
    "index",
    "search",
    "replicate",
    "migrate",
    "authenticate",
    "authorize",
    "log",
    "trace",
]
_NOUNS = [
    "server",
    "client",
    "cluster",
    "replica",
    "database",
    "token",
    "certificate",
    "endpoint",
    "worker",
    "shard",
    "snapshot",
    "journal",
    "listener",
    "proxy",
    "scheduler",
    "pipeline",
    "bucket",
    "namespace",
    "volume",
    "probe",
]
_VERBS = ["starts", "stops", "rotates", "flushes", "compacts", "retries", "expires", "validates", "streams", "batches"]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_NOUNS), rng.choice(_VERBS), "the", rng.choice(_NOUNS), "when", "the", rng.choice(_NOUNS)]
    words += [rng.choice(_VERBS), f"every {rng.randint(1, 90)} seconds"]
    return " ".join(words).capitalize() + "."


def write_corpus(folder: Path, chunks: int, *, sections_per_file: int = 10, seed: int = 7) -> list[str]:
    """Write Markdown files holding about `chunks` sections; returns a list of queries that match them."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    queries: list[str] = []
    files = max(1, chunks // sections_per_file)
    for number in range(files):
        topic = _TOPICS[number % len(_TOPICS)]
        lines = [f"# {topic.capitalize()} guide {number}", ""]
        for section in range(sections_per_file):
            noun = rng.choice(_NOUNS)
            lines += [f"## How to {topic} the {noun} {section}", ""]
            lines += [" ".join(_sentence(rng) for _ in range(4)), ""]
            if len(queries) < 500:
                queries.append(f"how do I {topic} the {noun}")
        (folder / f"{topic}-{number:05d}.md").write_text("\n".join(lines), encoding="utf-8")
    return queries


def export_markdown(database: Path, folder: Path) -> list[str]:
    """Write the chunks of a database `docserver ingest` wrote as Markdown, a file per document.

    Each chunk becomes a section under its heading, so ingesting the folder
    gives about as many chunks again, with real documentation's words.
    Returns the distinct headings, shuffled (fixed seed), as queries.
    """
    import sqlite3

    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(database)
    sections: dict[int, list[str]] = {}
    titles = dict(db.execute("SELECT id, title FROM documents"))
    headings: set[str] = set()
    for document_id, heading, text in db.execute("SELECT document_id, heading, text FROM chunks ORDER BY id"):
        heading = heading.split(" > ")[-1].rstrip("¶").strip() or "Notes"
        headings.add(heading)
        body = text.removeprefix(heading).lstrip("¶").strip()
        sections.setdefault(document_id, []).append(f"## {heading}\n\n{body}\n")
    db.close()
    for document_id, parts in sections.items():
        title = titles[document_id].split(" — ")[0]
        (folder / f"doc-{document_id:05d}.md").write_text(f"# {title}\n\n" + "\n".join(parts), encoding="utf-8")
    return _shuffled(headings)


def heading_queries(database: Path) -> list[str]:
    """The distinct headings of a database's chunks, as export_markdown returns them."""
    import sqlite3

    db = sqlite3.connect(database)
    rows = db.execute("SELECT DISTINCT heading FROM chunks WHERE id <= 50000").fetchall()
    db.close()
    return _shuffled({heading.split(" > ")[-1].rstrip("¶").strip() or "Notes" for (heading,) in rows})


def _shuffled(headings: set[str]) -> list[str]:
    queries = sorted(h for h in headings if len(h.split()) >= 2)
    random.Random(7).shuffle(queries)
    return queries
