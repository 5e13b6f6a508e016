"""SQLite vector search, exact against the approximate index: recall@10, latency, memory, size.

    python bench/vector_index.py [--sizes 10000 100000] [--real vectors.npy queries.npy]
        [--probe-shares 0.02 0.04 0.08] [--train-rounds 8] [--label local] [--append]
    python bench/vector_index.py --training DATABASE [--train-rounds 0 16] --out OUT.json

With `--training`, no vectors are written: one training of DATABASE's lists
(e.g. one bench/replicate.py grew) per --train-rounds value is timed and its
peak Python memory traced (numpy's arrays included), in a transaction rolled
back, so the database is left as it was.

Vectors are written straight through the store's statements (no embedding):
clustered random unit vectors (a few thousand topics, each a direction with
noise), plus, with `--real`, a slice of real chunk embeddings and their
queries (bench/real_vectors.py makes them). The store's build steps then
train the lists and file every vector. Each query is searched both ways in
the same database, the lists once per probe share (the share of the lists a
search reads); recall@10 is the share of the exact top 10 the lists return,
for all queries and for the real ones alone.

Recall is counted two ways. `recall_at_10`: the ids of the exact top 10
(ties at the 10th distance broken by the scan's order). `recall_at_10_ties`:
as ANN-benchmarks counts it, a returned item is a hit when its distance is
within the exact 10th neighbour's plus EPSILON, so an item tied with the 10th
counts whichever of the tied ones the lists return. `ties_at_10`: how many
of the exact top 20 lie within the 10th distance (+1e-6, and +EPSILON);
10 means no ties, 20 that 20 or more tie.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from docserver.store import sqlite_driver, sqlite_sql
from docserver.store import sqlite_vector_index as vector_index
from docserver.store.base import EmbedderInfo
from docserver.store.migrations import apply_sqlite_migrations

BATCH = 10_000
EPSILON = 1e-3
"""ANN-benchmarks' default: a returned neighbour within the exact 10th distance plus this counts."""


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, centres: np.ndarray, count: int, noise: float) -> np.ndarray:
    picked = centres[rng.integers(0, len(centres), count)]
    return unit(picked + noise * rng.standard_normal(picked.shape))


def build(path: Path, size: int, dimension: int, real: np.ndarray | None, seed: int) -> tuple[float, float]:
    db = sqlite_driver.connect(path)
    apply_sqlite_migrations(db)
    sqlite_sql.bind_embedder(db, EmbedderInfo("bench", "synthetic", dimension))
    db.execute("INSERT INTO sources (name, updated_at) VALUES ('bench', '')")
    db.execute(
        "INSERT INTO documents (id, source, path, title, content_hash, content, ingested_at) "
        "VALUES (1, 'bench', 'x.md', 'x', '', '', '')"
    )
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((max(size // 200, 50), dimension)))
    started = time.perf_counter()
    for start in range(0, size, BATCH):
        count = min(BATCH, size - start)
        rows = clustered(rng, centres, count, noise=0.06)
        if real is not None and start == 0:
            rows[: len(real)] = real[:count]
        ids = range(start + 1, start + count + 1)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO chunks (id, document_id, ordinal, heading, text, start_line, end_line) "
            "VALUES (?, 1, 0, '', '', 0, 0)",
            [(i,) for i in ids],
        )
        table = sqlite_sql.vector_table(db)
        vector_index.put_vectors(db, table, [(i, "bench", row.tobytes()) for i, row in zip(ids, rows, strict=True)])
        db.execute("COMMIT")
    written = time.perf_counter() - started
    while not sqlite_sql.build_vector_index(db):  # train the lists and file every vector, as a store does
        pass
    db.close()
    return written, time.perf_counter() - started - written


def queries(size: int, dimension: int, real_queries: np.ndarray | None, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rebuilt = np.random.default_rng(seed - 1)  # the corpus's centres: the same generator state as build()
    centres = unit(rebuilt.standard_normal((max(size // 200, 50), dimension)))
    synthetic = clustered(rng, centres, count, noise=0.08)
    if real_queries is None:
        return synthetic
    return np.concatenate([synthetic[: count // 2], real_queries[: count - count // 2]])


def lists(path: Path) -> dict[str, int]:
    db = sqlite_driver.connect(path)
    generation = vector_index.Generation.read(db, vector_index.SEARCHED, sqlite_sql.vector_table(db))
    db.close()
    assert generation is not None
    return {"lists": generation.lists}


def timed(fn, *args):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - started) * 1000


def measure(path: Path, asked: np.ndarray, real: int, limit: int, shares: list[float]) -> list[dict[str, float]]:
    """One row per probe share: recall@10 against the exact scan (all queries, and the last `real` alone), latency."""
    db = sqlite_driver.connect(path)
    table = sqlite_sql.vector_table(db)
    exact_ms, truths, tenths, ties, near = [], [], [], [], []
    for vector in asked:
        exact, spent = timed(sqlite_sql._exact_search, db, table, vector.tobytes(), None, 2 * limit)
        exact_ms.append(spent)
        truths.append({chunk_id for chunk_id, _ in exact[:limit]})
        tenth = exact[limit - 1][1] if len(exact) >= limit else float("inf")
        tenths.append(tenth)
        ties.append(sum(distance <= tenth + 1e-6 for _, distance in exact))
        near.append(sum(distance <= tenth + EPSILON for _, distance in exact))
    generation = vector_index.searched(db, table)
    assert generation is not None, "the lists were not built"
    rows = []
    for share in shares:
        vector_index.PROBE_SHARE = share
        index_ms, recalls, tie_recalls = [], [], []
        for vector, truth, tenth in zip(asked, truths, tenths, strict=True):
            approximate, spent = timed(vector_index.search, db, table, generation, vector.tobytes(), None, limit)
            index_ms.append(spent)
            recalls.append(len(truth & {chunk_id for chunk_id, _ in approximate}) / max(len(truth), 1))
            tie_recalls.append(sum(distance <= tenth + EPSILON for _, distance in approximate) / max(len(truth), 1))
        rows.append(
            {
                "probe_share": share,
                "recall_at_10": float(np.mean(recalls)),
                "recall_min": float(np.min(recalls)),
                "recall_real": float(np.mean(recalls[len(recalls) - real :])) if real else float("nan"),
                "recall_synthetic": float(np.mean(recalls[: len(recalls) - real])),
                "recall_at_10_ties": float(np.mean(tie_recalls)),
                "recall_ties_synthetic": float(np.mean(tie_recalls[: len(tie_recalls) - real])),
                "ties_at_10_mean": float(np.mean(ties)),
                "ties_at_10_max": int(np.max(ties)),
                "within_epsilon_of_10th_mean": float(np.mean(near)),
                "within_epsilon_of_10th_max": int(np.max(near)),
                "exact_p50_ms": float(np.percentile(exact_ms, 50)),
                "exact_p95_ms": float(np.percentile(exact_ms, 95)),
                "index_p50_ms": float(np.percentile(index_ms, 50)),
                "index_p95_ms": float(np.percentile(index_ms, 95)),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    db.close()
    return rows


def training(database: Path, rounds: list[int]) -> list[dict[str, float]]:
    """Seconds and traced peak MB of one training of `database`'s lists per rounds value (rolled back)."""
    import tracemalloc

    db = sqlite_driver.connect(database)
    table = sqlite_sql.vector_table(db)
    size = vector_index._size(db, table)
    rows = []
    for count in rounds:
        vector_index.TRAIN_ROUNDS = count
        db.execute("BEGIN IMMEDIATE")
        tracemalloc.start()
        _, spent = timed(vector_index.train, db, table, size)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        db.execute("ROLLBACK")
        rows.append({"database": database.name, "vectors": size, "train_rounds": count, "train_seconds": spent / 1000})
        rows[-1] |= {"traced_peak_mb": peak, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        print(json.dumps(rows[-1]), flush=True)
    db.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--real", type=Path, nargs=2, metavar=("VECTORS", "QUERIES"))
    parser.add_argument("--probe-shares", type=float, nargs="+", default=[vector_index.PROBE_SHARE])
    parser.add_argument("--training", type=Path, metavar="DATABASE", help="time one training of DATABASE's lists")
    parser.add_argument(
        "--train-rounds",
        type=int,
        nargs="+",
        default=[vector_index.TRAIN_ROUNDS],
        help="fresh samples that refine the centroids after k-means (0: one sample, the training before)",
    )
    parser.add_argument("--append", action="store_true", help="add the rows to OUT's")
    parser.add_argument("--label", default="synthetic", help="names the corpus in the results (e.g. local, hash)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/vector_index.json"))
    parser.add_argument("--work", type=Path, help="folder for the databases (default: the system's temporary one)")
    args = parser.parse_args()
    real = real_queries = None
    if args.real:
        real, real_queries = (np.load(p).astype(np.float32) for p in args.real)
        args.dimension = real.shape[1]
    if args.training:
        args.out.write_text(json.dumps(training(args.training, args.train_rounds), indent=2))
        return
    vector_index.TRAIN_ROUNDS = args.train_rounds[0]
    work = Path(tempfile.mkdtemp(prefix="docserver-vector-index-", dir=args.work))
    rows = []
    for size in args.sizes:
        path = work / f"vectors-{size}.db"
        written, indexed = build(path, size, args.dimension, real, seed=size)
        asked = queries(size, args.dimension, real_queries, args.queries, seed=size + 1)
        row = {"size": size, "dimension": args.dimension, "candidates": vector_index.candidates_for(10)}
        row |= {"train_rounds": args.train_rounds[0]}
        row |= {"write_seconds": written, "index_seconds": indexed, "database_mb": path.stat().st_size / 2**20}
        row |= lists(path)
        real_count = 0 if real_queries is None else args.queries - args.queries // 2
        for measured in measure(path, asked, real_count, 10, args.probe_shares):
            vector_index.PROBE_SHARE = measured["probe_share"]
            probes = vector_index.probes_for(int(row["lists"]))
            rows.append(row | {"probes": probes} | measured | {"corpus": args.label})
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}), flush=True)
        path.unlink()
    previous = json.loads(args.out.read_text()) if args.append and args.out.exists() else []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(previous + rows, indent=2))


if __name__ == "__main__":
    main()
