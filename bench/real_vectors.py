"""Real chunk and query vectors from an ingested database, for bench/vector_index.py --real.

    python bench/real_vectors.py DATABASE --embedder local --chunks 4000 --queries 200 --out local

Reads the first `--chunks` chunks of DATABASE (one written by `docserver ingest`),
embeds them as ingest does (title, heading and text) with the named embedder, and
embeds `--queries` distinct headings, chosen at random, as queries. Writes
OUT-vectors.npy and OUT-queries.npy (float32, unit length).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from docserver.embed.base import Embedder
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.pipeline import embedding_text
from docserver.store.base import ChunkInput


def open_embedder(name: str) -> Embedder:
    if name == "hash":
        return HashEmbedder()
    from docserver.embed.local import LocalEmbedder

    return LocalEmbedder(threads=2)


async def embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    parts = [
        np.asarray(await embedder.embed_batch(texts[i : i + 64]), dtype=np.float32) for i in range(0, len(texts), 64)
    ]
    return np.concatenate(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("database", type=Path)
    parser.add_argument("--embedder", choices=["hash", "local"], default="hash")
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    db = sqlite3.connect(args.database)
    rows = db.execute(
        "SELECT d.title, c.heading, c.text FROM chunks c JOIN documents d ON d.id = c.document_id "
        "ORDER BY c.id LIMIT ?",
        (args.chunks,),
    ).fetchall()
    headings = sorted({heading for _, heading, _ in rows if heading and len(heading.split()) >= 2})
    asked = random.Random(5).sample(headings, min(args.queries, len(headings)))
    texts = [embedding_text(title, ChunkInput(0, heading, text, 0, 0)) for title, heading, text in rows]
    embedder = open_embedder(args.embedder)
    vectors, queries = asyncio.run(embed(embedder, texts)), asyncio.run(embed(embedder, asked))
    np.save(f"{args.out}-vectors.npy", vectors)
    np.save(f"{args.out}-queries.npy", queries)
    print(f"{len(vectors)} vectors, {len(queries)} queries, {vectors.shape[1]} dimensions")


if __name__ == "__main__":
    main()
