"""SQLite's approximate vector index: inverted lists of int8 vectors (IVF), then exact re-scoring.

sqlite-vec searches exactly, by scanning every vector: about 1 ms per 1,000
chunks at 512 dimensions, a second at a million. Beside each vector table `T`
the index keeps three plain tables:

- `T_centroids`: a few hundred to a few thousand centroids, trained by
  spherical k-means on a bounded random sample of the vectors, then refined
  by a few fresh samples in turn (mini-batch k-means: one sample held at a time);
- `T_lists`: every vector, quantised to int8 (a quarter of the bytes), filed
  under its nearest centroid. The rowid is `list << 32 | chunk_id`, so one
  list's rows sit together in the file and are read as a range;
- `T_full`: the full float32 vectors by chunk id, to re-score candidates.

A search ranks the centroids, reads the nearest PROBE_SHARE of the lists (a
few percent of the vectors), keeps the best candidates by int8 distance, and
re-scores them with the full vectors: the scores are exact cosine similarities.
Int8 rather than binary: bits lose the hash embedder's sparse query vectors
(docs/search.md). Nothing but the query, the candidate ids and, on the writer,
the centroids is held in Python.

Lifecycle (each step one write transaction, run between ingests, resumable):
1. `T_full` is filled (a database from before the index: from the chunk-id
   cursor `vector_index_cursor`, then meta `vector_index` names `T`);
2. once the store holds MIN_INDEXED_CHUNKS chunks, centroids are trained and
   every vector is filed, BUILD_BATCH per step (meta `vector_lists_build`);
   new vectors are filed as they are written. Until then searches are exact;
3. when the store has grown RETRAIN_GROWTH times past the size the lists were
   trained for, a new generation is trained and filed beside the one searched,
   which keeps answering until the new one is complete; then the old
   generation's rows are deleted in batches (meta `vector_lists_retired`).
"""

from __future__ import annotations

import math
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from docserver.store.base import SourceFilter
from docserver.store.sqlite_tables import Connection, meta, set_meta, source_condition, table_exists

MIN_INDEXED_CHUNKS = 10_000
"""From about this many chunks the lists beat the exact scan (docs/search.md)."""
RETRAIN_GROWTH = 4
"""Train a new generation of lists once the store holds this many times the chunks the current one was trained on."""
MIN_LISTS, MAX_LISTS = 16, 4096
TRAIN_SAMPLE_PER_LIST, MAX_TRAIN_SAMPLE = 32, 32_768
"""k-means holds at most this many vectors at a time: 64 MB at 512 dimensions, whatever the store's size."""
TRAIN_ITERATIONS = 8
TRAIN_ROUNDS, TRAIN_DECAY = 16, 0.5
"""After k-means on one sample, this many fresh samples refine the centroids (mini-batch k-means), each
batch's sums added to the earlier batches' weighted by TRAIN_DECAY: 17 samples seen, one held.

One sample of 32 vectors a list is too few where topics outnumber lists: on the synthetic
million of bench/vector_index.py (5,000 topics, 1,000 lists) recall@10 at 2% of the lists
was 0.61 with one sample, 0.93 with 8 rounds and 0.98 with 16 (docs/search.md). A bigger
sample would do as well but hold its whole size in the server that trains.
"""
PROBE_SHARE, MIN_PROBES = 0.02, 8
"""A search reads this share of the lists (at least MIN_PROBES): recall@10 against size in docs/search.md.

2% rather than 4% since recall@10 on real `local` vectors stayed at 0.98 at 100,000 and
1,000,000 vectors, for half the rows read (docs/performance.md, SQLite at a million chunks).
"""
CANDIDATES_PER_RESULT, MIN_CANDIDATES, MAX_CANDIDATES = 5, 50, 1000
"""The int8 pass keeps this many candidates per result asked for, re-scored with the full vectors."""
BUILD_BATCH = 5000
DENSE_SHARE = 0.5
_LIST_BITS, _GENERATION_BITS = 32, 48
"""rowid = generation << 48 | list << 32 | chunk_id: a generation's lists, and each list, are rowid ranges."""


def coarse_table(table: str) -> str:
    """The int8 vec0 table of the index before the lists: dropped when found."""
    return f"{table}_coarse"


def full_table(table: str) -> str:
    return f"{table}_full"


def lists_table(table: str) -> str:
    return f"{table}_lists"


def centroids_table(table: str) -> str:
    return f"{table}_centroids"


def index_tables(table: str) -> tuple[str, ...]:
    """Every table the index keeps for `table` (or once kept), to drop with it."""
    return coarse_table(table), full_table(table), lists_table(table), centroids_table(table)


def create_index_tables(db: Connection, table: str) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {full_table(table)} (chunk_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL)"
    )
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {lists_table(table)} "
        "(chunk_id INTEGER NOT NULL, source TEXT NOT NULL, embedding BLOB NOT NULL)"
    )
    db.execute(f"CREATE INDEX IF NOT EXISTS {lists_table(table)}_chunk ON {lists_table(table)} (chunk_id)")
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {centroids_table(table)} (list INTEGER PRIMARY KEY, embedding BLOB NOT NULL)"
    )


def has_index(db: Connection, table: str) -> bool:
    """`table` has its full-vector copy (kept up to date by every write since it was created)."""
    return table_exists(db, full_table(table))


# -- generations of lists, recorded in meta ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generation:
    """One training of the lists: its number, the chunks it was trained on, its centroids' identity."""

    table: str
    number: int
    lists: int
    trained_on: int
    token: str
    cursor: int = 0

    @classmethod
    def read(cls, db: Connection, key: str, table: str) -> Generation | None:
        value = meta(db, key)
        if value is None:
            return None
        name, number, lists, trained_on, token, cursor = value.split()
        return cls(name, int(number), int(lists), int(trained_on), token, int(cursor)) if name == table else None

    def write(self, db: Connection, key: str) -> None:
        fields = (self.table, self.number, self.lists, self.trained_on, self.token, self.cursor)
        set_meta(db, {key: " ".join(map(str, fields))})

    def at(self, cursor: int) -> Generation:
        return Generation(self.table, self.number, self.lists, self.trained_on, self.token, cursor)

    def rowids(self) -> tuple[int, int]:
        return self.number << _GENERATION_BITS, ((self.number + 1) << _GENERATION_BITS) - 1

    def list_id(self, index: int) -> int:
        return self.number << (_GENERATION_BITS - _LIST_BITS) | index


SEARCHED, BUILDING, RETIRED = "vector_lists", "vector_lists_build", "vector_lists_retired"


def _written(db: Connection, table: str) -> list[Generation]:
    """The generations a new vector is filed in: the one searched and the one being built."""
    return [g for key in (SEARCHED, BUILDING) if (g := Generation.read(db, key, table)) is not None]


# -- the writer's centroids, kept between writes --------------------------------------------------

_CACHED = 4
_centroid_cache: OrderedDict[str, np.ndarray] = OrderedDict()


def _centroids(db: Connection, generation: Generation) -> np.ndarray:
    """A generation's centroids, row i for list i; cached by the generation's random token."""
    found = _centroid_cache.get(generation.token)
    if found is None:
        rows = db.execute(
            f"SELECT embedding FROM {centroids_table(generation.table)} WHERE list BETWEEN ? AND ? ORDER BY list",
            (generation.list_id(0), generation.list_id(generation.lists - 1)),
        ).fetchall()
        found = np.stack([np.frombuffer(row[0], dtype=np.float32) for row in rows])
        _centroid_cache[generation.token] = found
        while len(_centroid_cache) > _CACHED:
            _centroid_cache.popitem(last=False)
    return found


def _file(db: Connection, generation: Generation, rows: list[tuple[int, str, bytes]]) -> None:
    """File (chunk id, source, float32 bytes) rows under their nearest centroid of `generation`."""
    vectors = np.stack([np.frombuffer(row[2], dtype=np.float32) for row in rows])
    nearest = np.argmax(vectors @ _centroids(db, generation).T, axis=1)
    base = generation.number << _GENERATION_BITS
    db.executemany(
        f"INSERT OR REPLACE INTO {lists_table(generation.table)} (rowid, chunk_id, source, embedding) "
        "VALUES (?, ?, ?, vec_quantize_int8(?, 'unit'))",
        [
            (base | int(index) << _LIST_BITS | chunk_id, chunk_id, source, embedding)
            for (chunk_id, source, embedding), index in zip(rows, nearest, strict=True)
        ],
    )


# -- writing -----------------------------------------------------------------------------------


def put_vectors(db: Connection, table: str, rows: list[tuple[int, str, bytes]]) -> None:
    """Store (chunk id, source, float32 bytes) rows in `table`, and in its index when it has one."""
    db.executemany(f"INSERT INTO {table} (chunk_id, source, embedding) VALUES (?, ?, ?)", rows)
    if rows and has_index(db, table):
        db.executemany(
            f"INSERT OR REPLACE INTO {full_table(table)} (chunk_id, embedding) VALUES (?, ?)",
            [(chunk_id, embedding) for chunk_id, _, embedding in rows],
        )
    if rows:
        for generation in _written(db, table):  # none until the lists exist
            _file(db, generation, rows)


def delete_vectors(db: Connection, table: str, chunk_ids: list[int]) -> None:
    marks = ",".join("?" * len(chunk_ids))
    db.execute(f"DELETE FROM {table} WHERE chunk_id IN ({marks})", chunk_ids)
    if has_index(db, table):
        db.execute(f"DELETE FROM {full_table(table)} WHERE chunk_id IN ({marks})", chunk_ids)
    if table_exists(db, lists_table(table)):
        db.execute(f"DELETE FROM {lists_table(table)} WHERE chunk_id IN ({marks})", chunk_ids)


def mark_complete(db: Connection, table: str) -> None:
    """`T_full` holds every vector of `table` (its lists are trained by the build steps)."""
    set_meta(db, {"vector_index": table})
    db.execute("DELETE FROM meta WHERE key = 'vector_index_cursor'")


# -- searching ----------------------------------------------------------------------------------


def searched(db: Connection, table: str) -> Generation | None:
    """The complete generation of lists that covers `table`, or None: searches stay exact."""
    return Generation.read(db, SEARCHED, table) if meta(db, "vector_index") == table else None


def usable(db: Connection, table: str) -> bool:
    """A complete generation of lists covers `table`."""
    return searched(db, table) is not None


def dense(vector: np.ndarray) -> bool:
    """Whether `vector` has a value in most dimensions, as a language model's do.

    The hash embedder's query vectors are sparse (a short query sets a few
    dozen of 512 dimensions): their nearest neighbours share a word or two and
    lie in every list, so the nearest lists miss many of them (recall@10 0.71
    at 4% of the lists, 0.94 at 32%; docs/search.md). Those are searched exactly.
    """
    return bool(np.count_nonzero(vector) >= DENSE_SHARE * vector.size)


def probes_for(lists: int) -> int:
    return min(lists, max(MIN_PROBES, math.ceil(lists * PROBE_SHARE)))


def candidates_for(limit: int) -> int:
    return min(max(limit * CANDIDATES_PER_RESULT, MIN_CANDIDATES), MAX_CANDIDATES)


def search(
    db: Connection, table: str, generation: Generation, vector: bytes, source: SourceFilter, limit: int
) -> list[Any]:
    """(chunk id, cosine distance) of the best `limit` in the nearest lists of `generation` (`searched`),
    re-scored with the full vectors.

    May return fewer than `limit` when a source filter leaves the nearest lists
    nearly empty; the caller then searches exactly.
    """
    nearest = [
        row[0]
        for row in db.execute(
            f"SELECT list FROM {centroids_table(table)} WHERE list BETWEEN ? AND ? "
            "ORDER BY vec_distance_cosine(embedding, ?) LIMIT ?",
            (generation.list_id(0), generation.list_id(generation.lists - 1), vector, probes_for(generation.lists)),
        )
    ]
    ranges = " OR ".join("rowid BETWEEN ? AND ?" for _ in nearest)
    bounds = [bound for lst in nearest for bound in (lst << _LIST_BITS, (lst << _LIST_BITS) | 0xFFFFFFFF)]
    condition, names = source_condition("source", source)
    query = db.execute("SELECT vec_quantize_int8(?, 'unit')", (vector,)).fetchone()[0]
    ids = [
        row[0]
        for row in db.execute(
            f"SELECT chunk_id FROM {lists_table(table)} WHERE ({ranges}){condition} "
            "ORDER BY vec_distance_l2(vec_int8(embedding), vec_int8(?)) LIMIT ?",
            [*bounds, *names, query, candidates_for(limit)],
        )
    ]
    if not ids:
        return []
    return db.execute(  # type: ignore[no-any-return]
        f"SELECT chunk_id, vec_distance_cosine(embedding, ?) AS distance FROM {full_table(table)} "
        f"WHERE chunk_id IN ({','.join('?' * len(ids))}) ORDER BY distance LIMIT ?",
        [vector, *ids, limit],
    ).fetchall()


# -- building, a step at a time -------------------------------------------------------------------


def build_step(db: Connection, table: str) -> bool:
    """One step of the index's lifecycle (inside the caller's write transaction); True when nothing is left to do."""
    if meta(db, "embedding_dimension") is None:  # no embedder bound yet: bind_embedder creates the index
        return True
    if table_exists(db, coarse_table(table)):  # the index before the lists; its full vectors are kept
        db.execute(f"DROP TABLE {coarse_table(table)}")
    if not table_exists(db, lists_table(table)):
        create_index_tables(db, table)
    if meta(db, "vector_index") != table:
        return _copy_step(db, table)
    if (retired := Generation.read(db, RETIRED, table)) is not None:
        return _retire_step(db, retired)
    if (building := Generation.read(db, BUILDING, table)) is not None:
        return _filing_step(db, building)
    return not _train_if_due(db, table)


def _copy_step(db: Connection, table: str) -> bool:
    """Copy the next BUILD_BATCH vectors of `table` into `T_full`."""
    cursor = int(meta(db, "vector_index_cursor") or 0)
    rows = db.execute(
        f"SELECT chunk_id, embedding FROM {table} WHERE chunk_id > ? ORDER BY chunk_id LIMIT ?", (cursor, BUILD_BATCH)
    ).fetchall()
    db.executemany(f"INSERT OR REPLACE INTO {full_table(table)} (chunk_id, embedding) VALUES (?, ?)", rows)
    if rows:
        set_meta(db, {"vector_index_cursor": str(rows[-1][0])})
    if len(rows) < BUILD_BATCH:
        mark_complete(db, table)
    return False


def _size(db: Connection, table: str) -> int:
    """About how many vectors `table` holds: the largest chunk id (a rowid lookup, not a count)."""
    return int(db.execute(f"SELECT max(chunk_id) FROM {full_table(table)}").fetchone()[0] or 0)


def _train_if_due(db: Connection, table: str) -> bool:
    """Train a new generation when the store is large enough, or has outgrown the one searched."""
    size = _size(db, table)
    searched = Generation.read(db, SEARCHED, table)
    due = size >= RETRAIN_GROWTH * searched.trained_on if searched else size >= MIN_INDEXED_CHUNKS
    return due and train(db, table, size)


def train(db: Connection, table: str, size: int) -> bool:
    """Train a generation of lists for a store of `size` chunks (√size lists), to be filed by the next steps.

    The build steps call it when the store has grown; bench/replicate.py,
    which grows a database by copies, calls it once for the final size.
    """
    searched = Generation.read(db, SEARCHED, table)
    lists = min(MAX_LISTS, max(MIN_LISTS, round(math.sqrt(size))))
    sample = _sample(db, table, _size(db, table), lists)
    if len(sample) < MIN_LISTS:  # ids freed by deletes: too few vectors left to train on
        return False
    centroids = _kmeans(sample, lists)
    del sample  # one sample held at a time
    sums = np.zeros_like(centroids)
    for _ in range(TRAIN_ROUNDS):
        centroids, sums = _refine(centroids, sums, _sample(db, table, _size(db, table), lists))
    number = searched.number + 1 if searched else 1
    generation = Generation(table, number, len(centroids), size, secrets.token_hex(8))
    db.execute(  # leftovers of an earlier generation of this number
        f"DELETE FROM {centroids_table(table)} WHERE list BETWEEN ? AND ?",
        (generation.list_id(0), generation.list_id((1 << 16) - 1)),
    )
    db.executemany(
        f"INSERT INTO {centroids_table(table)} (list, embedding) VALUES (?, ?)",
        [(generation.list_id(index), row.tobytes()) for index, row in enumerate(centroids)],
    )
    generation.write(db, BUILDING)
    return True


def _sample(db: Connection, table: str, size: int, lists: int) -> np.ndarray:
    """Up to lists × TRAIN_SAMPLE_PER_LIST stored vectors, read by random chunk id (never the whole table), unit length.

    Filled into one array and normalised in place: the sample's own size is all it holds.
    """
    wanted = min(MAX_TRAIN_SAMPLE, lists * TRAIN_SAMPLE_PER_LIST)
    rng = np.random.default_rng()
    ids = np.unique(rng.integers(1, size + 1, wanted)).tolist()
    sample: np.ndarray | None = None
    count = 0
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        sql = f"SELECT embedding FROM {full_table(table)} WHERE chunk_id IN ({','.join('?' * len(part))})"
        for (blob,) in db.execute(sql, part):
            if sample is None:
                sample = np.empty((len(ids), len(blob) // 4), dtype=np.float32)
            sample[count] = np.frombuffer(blob, dtype=np.float32)
            count += 1
    if sample is None:
        return np.zeros((0, 1), dtype=np.float32)
    sample = sample[:count]
    norms = np.linalg.norm(sample, axis=1)
    if not norms.all():
        sample, norms = sample[norms > 0], norms[norms > 0]
    sample /= norms[:, None]
    return sample


def _cluster_sums(sample: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The sum of the sample's vectors nearest each centroid (largest dot product); zero where none is.

    A block of rows at a time, so nothing the sample's size is copied.
    """
    sums = np.zeros_like(centroids)
    for i in range(0, len(sample), 4096):
        block = sample[i : i + 4096]
        nearest = np.argmax(block @ centroids.T, axis=1)
        order = np.argsort(nearest, kind="stable")
        filled, starts = np.unique(nearest[order], return_index=True)
        sums[filled] += np.add.reduceat(block[order], starts, axis=0)
    return sums


def _kmeans(sample: np.ndarray, lists: int) -> np.ndarray:
    """Spherical k-means: unit centroids, assignment by the largest dot product."""
    rng = np.random.default_rng(0)
    lists = min(lists, len(sample))
    centroids = sample[rng.choice(len(sample), lists, replace=False)].copy()
    for _ in range(TRAIN_ITERATIONS):
        sums = _cluster_sums(sample, centroids)
        norms = np.linalg.norm(sums, axis=1)
        empty = norms == 0
        sums[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]  # re-seed empty lists
        centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    return centroids.astype(np.float32)


def _refine(centroids: np.ndarray, sums: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two k-means passes over a fresh batch, its sums added to the decayed sums of the batches before.

    Returns the new centroids and the sums to carry. A list no batch has reached keeps its centroid;
    an empty batch (every id read freed by deletes) changes nothing.
    """
    if len(batch) == 0:
        return centroids, sums
    added = np.zeros_like(centroids)
    for _ in range(2):
        added = _cluster_sums(batch, centroids)
        total = TRAIN_DECAY * sums + added
        norms = np.linalg.norm(total, axis=1)
        reached = norms > 0
        centroids = centroids.copy()
        centroids[reached] = total[reached] / norms[reached, None]
    return centroids.astype(np.float32), TRAIN_DECAY * sums + added


def _filing_step(db: Connection, building: Generation) -> bool:
    """File the next BUILD_BATCH vectors in the generation being built; switch searches to it when done."""
    table = building.table
    rows = db.execute(  # the source from the chunk's document: sqlite-vec reads a row by id slowly
        f"SELECT f.chunk_id, d.source, f.embedding FROM {full_table(table)} f "
        "JOIN chunks c ON c.id = f.chunk_id JOIN documents d ON d.id = c.document_id "
        "WHERE f.chunk_id > ? ORDER BY f.chunk_id LIMIT ?",
        (building.cursor, BUILD_BATCH),
    ).fetchall()
    if rows:
        _file(db, building, rows)
        building.at(rows[-1][0]).write(db, BUILDING)
    if len(rows) < BUILD_BATCH:
        if (searched := Generation.read(db, SEARCHED, table)) is not None:
            searched.write(db, RETIRED)
        building.at(0).write(db, SEARCHED)
        db.execute("DELETE FROM meta WHERE key = ?", (BUILDING,))
    return False


def _retire_step(db: Connection, retired: Generation) -> bool:
    """Delete the next rows of a generation no longer searched."""
    low, high = retired.rowids()
    deleted = db.execute(
        f"DELETE FROM {lists_table(retired.table)} WHERE rowid IN "
        f"(SELECT rowid FROM {lists_table(retired.table)} WHERE rowid BETWEEN ? AND ? LIMIT ?)",
        (low, high, BUILD_BATCH * 4),
    ).rowcount
    if deleted < BUILD_BATCH * 4:
        db.execute(
            f"DELETE FROM {centroids_table(retired.table)} WHERE list BETWEEN ? AND ?",
            (retired.list_id(0), retired.list_id((1 << 16) - 1)),
        )
        db.execute("DELETE FROM meta WHERE key = ?", (RETIRED,))
    return False
