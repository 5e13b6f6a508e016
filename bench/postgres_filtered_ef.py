"""Filtered HNSW search on PostgreSQL: recall@10 and latency against `hnsw.ef_search`, per filter's share.

    flock /tmp/bench.lock chrt -r 10 python bench/postgres_filtered_ef.py --data /tmp/pgp \\
        --ef-search 400 600 800 1000 --out bench/results/postgres_filtered_ef.json

Measures a database that bench/postgres_scale.py built and kept (`--keep --data DIR`;
by default the distinct products at 300,000 chunks). Every search goes through the
HNSW index (no exact search), at each `ef_search` of the sweep, under each filter:
the smallest 4 to 7 of the newest sources together, the largest 2 to 4 together and
two more mixes (MIXED): a third to four fifths of the distinct vectors,
the newest versions of every source, one version (`1.0`) and none. For each: the
filter's chunks, its distinct vectors, its share (chunks against the graph's
vectors, `pg_class.reltuples`: what the store can read cheaply), vector search
p50 / p95 ms (80 candidates, what a search of 20 results asks for) and recall@10
against an exact scan under the same filter (ties counted as bench/postgres_scale.py
counts them). It is the measurement behind the store's filtered `ef_search` rule
(store/postgres_share.py).

With `--store`, no sweep: the store as it is configured by default (exact search
under its thresholds, else HNSW with its filtered `ef_search` rule), under the
same filters: recall@10, vector search p50 / p95 ms (80 candidates), the server's CPU
time per vector search of 20 candidates (what a search of 5 results asks for; from
/proc, the store's PostgreSQL processes: steadier than times on a shared machine), and
SearchService.search p50 / p95 ms (limit 5, both retrievers fused, caches off) by a
caller whose share is the filter's sources; the newest versions and one version as
search_docs asks for them. Each timing starts after 50 warm-up calls, so a
filter's decision (once per corpus version) is not in it. Run it with another
checkout's `src` on PYTHONPATH to measure that code the same way.

With `--variant-of DATABASE --database NAME` (and `--m`, `--ef-construction`),
before anything else: NAME, if it does not exist yet, is made a copy of DATABASE
(the built database stays as it was), opened by the store on PYTHONPATH (which
migrates it: this checkout's migration 0006 rebuilds the HNSW index at half
precision, main's code leaves it as it is) and its HNSW index built again with the
code's own definition (`vector_index_sql`) where its `m` or `ef_construction`
differ; the seconds of each step, the index's definition and size are printed and
kept in the database. Run that under `nice -n 10` with `--build-only`, then
measure NAME as any other database; every run's output names its index.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from docserver.embed.hashing import HashEmbedder
from docserver.evaluation.runner import load_question_set
from docserver.search import Fusion, SearchService
from docserver.store import postgres_exact
from docserver.store.base import SourceFilter
from docserver.store.postgres import PostgresOptions, PostgresStore
from docserver.store.postgres_schema import VECTOR_INDEX, vector_index_sql
from postgres_scale import BUILD_MEMORY, CANDIDATES, exact_at_most, exact_distances, recall_at_10, renice, timed
from support.postgres_server import PostgresServer

DATABASE = "bench_300000_m16_ef64_products"
MIXED = (("python", "postgresql"), ("python", "erlang", "django", "sqlalchemy", "git"))
"""Products whose newest versions together make further filters: a third and about 0.7 of the vectors."""


async def chosen_filters(store: PostgresStore) -> list[tuple[str, SourceFilter]]:
    """(name, filter) of each filter measured, smallest share first among the combinations of sources."""
    service = SearchService(store, HashEmbedder(), cache_size=0)
    catalog = await service.catalog(await store.corpus_version())
    newest = catalog.searched(None, None)
    assert isinstance(newest, tuple), newest
    async with store._ready_pool().connection() as conn:
        cursor = await conn.execute(
            "SELECT source FROM chunks WHERE source = ANY(%s) GROUP BY source ORDER BY count(*)", (list(newest),)
        )
        names = [row[0] for row in await cursor.fetchall()]
    together: list[tuple[str, SourceFilter]] = [(f"smallest {n}", tuple(names[:n])) for n in range(4, len(names))]
    together += [(f"largest {n}", tuple(names[-n:])) for n in range(2, len(names) - 3)]
    for others in MIXED:
        if set(others) <= set(name.split("@")[0] for name in names):
            together.append((" + ".join(others), tuple(name for name in names if name.split("@")[0] in others)))
    return [*together, ("newest", newest), ("version 1.0", catalog.searched(None, "1.0")), ("none", None)]


async def describe(store: PostgresStore, source: SourceFilter) -> dict[str, Any]:
    async with store._ready_pool().connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*), count(DISTINCT embedding_id), "
            "(SELECT reltuples FROM pg_class WHERE oid = 'embeddings'::regclass) FROM chunks "
            "WHERE %s::text[] IS NULL OR source = ANY(%s::text[])",
            (None if source is None else list(source), None if source is None else list(source)),
        )
        chunks, distinct, vectors = await cursor.fetchone()  # type: ignore[misc]
    return {"chunks": chunks, "distinct_vectors": distinct, "share": chunks / vectors}


def report(point: dict[str, Any], label: Any, measured: dict[str, float]) -> None:
    rounded = {key: round(value, 4 if key == "recall" else 1) for key, value in measured.items()}
    print(
        json.dumps({"filter": point["filter"], "share": round(point["share"], 3), "at": label, **rounded}), flush=True
    )


async def run(
    url: str, ef_values: list[int], calls: int, store_mode: bool, filtered_ef: int | None = None
) -> list[dict[str, Any]]:
    embedder = HashEmbedder()
    questions = [q.query for name in ("python", "postgresql") for q in load_question_set(name).questions]
    queries = [questions[n % len(questions)] for n in range(calls + 50)]
    vectors = list(await embedder.embed(queries))
    recall_vectors = vectors[: len(questions) : 2]
    store = PostgresStore(url, PostgresOptions(min_size=1, max_size=2))
    await store.open()
    try:
        filters = await chosen_filters(store)
        points = [{"filter": name, "sources": source, **await describe(store, source)} for name, source in filters]
        truths = [[await exact_distances(store, v, source) for v in recall_vectors] for _, source in filters]
    finally:
        await store.close()
    if store_mode:
        await run_store(url, points, filters, truths, queries, vectors, recall_vectors, calls, filtered_ef)
        return points
    for ef in ef_values:
        store = PostgresStore(url, PostgresOptions(min_size=1, max_size=2, hnsw_ef_search=ef))
        store.options = replace(store.options, hnsw_filtered_ef_search=ef)
        await store.open()
        try:
            for point, (_, source), truth in zip(points, filters, truths, strict=True):
                latency = await timed(
                    calls, lambda n, s=source, st=store: st.search_vector(vectors[n], source=s, limit=CANDIDATES)
                )
                point[f"ef{ef}"] = {"recall": await recall_at_10(store, recall_vectors, source, truth)}
                point[f"ef{ef}"] |= latency
                report(point, ef, point[f"ef{ef}"])
        finally:
            await store.close()
    return points


async def run_store(
    url: str,
    points: list[dict[str, Any]],
    filters: list[tuple[str, SourceFilter]],
    truths: list[list[list[float]]],
    queries: list[str],
    vectors: list[Any],
    recall_vectors: list[Any],
    calls: int,
    filtered_ef: int | None = None,
) -> None:
    """The store as configured by default (its thresholds, its ef_search rule): recall@10, vector search alone
    (80 candidates) and SearchService.search (limit 5, both retrievers fused, caches off) by a caller whose
    share is the filter's sources (`within`); the newest versions and one version as search_docs asks for them,
    and no search for no filter (search_docs never reads every version)."""
    options = PostgresOptions(min_size=1, max_size=2)
    if filtered_ef is not None:
        options = replace(options, hnsw_filtered_ef_search=filtered_ef)
    store = PostgresStore(url, options)
    await store.open()
    try:
        service = SearchService(store, HashEmbedder(), cache_size=0, fusion=Fusion(1.0, 1.0))
        for point, (name, source), truth in zip(points, filters, truths, strict=True):
            store.declined = postgres_exact.Declined()
            vector = await timed(calls, lambda n, s=source: store.search_vector(vectors[n], source=s, limit=CANDIDATES))
            measured = {"recall": await recall_at_10(store, recall_vectors, source, truth)}
            measured |= {f"vector_{key}": value for key, value in vector.items()}
            measured["vector20_server_cpu_ms"] = await server_cpu_ms(
                store, calls, lambda n, s=source: store.search_vector(vectors[n], source=s, limit=20)
            )
            arguments: dict[str, Any] = {"newest": {}, "version 1.0": {"version": "1.0"}}.get(
                name, {"within": frozenset(source or ())}
            )
            if source is not None:
                search = await timed(calls, lambda n, a=arguments: service.search(queries[n], limit=5, **a))
                measured |= {f"search_{key}": value for key, value in search.items()}
            point["store"] = measured
            report(point, "store", measured)
    finally:
        await store.close()


async def server_cpu_ms(store: PostgresStore, calls: int, work: Callable[[int], Awaitable[object]]) -> float:
    """PostgreSQL's CPU time (user + system, the store's server processes, from /proc) per call of `work`, in ms:
    steadier than its latency on a machine shared with other work."""
    async with store._ready_pool().connection() as conn:
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'docserver'"
        )
        pids = [row[0] for row in await cursor.fetchall()]

    def ticks() -> int:
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total

    before = ticks()
    for n in range(calls):
        await work(n)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK") * 1000 / calls


def make_variant(
    server: PostgresServer, template: str, name: str, m: int, ef_construction: int, rebuild: bool = False
) -> dict[str, Any]:
    """`name` as a copy of `template` (if not there yet), migrated by this code, its HNSW index built with
    `m` and `ef_construction` by this code's definition; seconds of each step, the index's definition and size."""
    steps: dict[str, Any] = {}
    if not server.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
        started = time.perf_counter()
        server.execute("postgres", f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        steps["copy_s"] = time.perf_counter() - started
    # The migration's index build gets the memory a bulk build gets (bench/postgres_scale.py).
    server.execute("postgres", f"ALTER DATABASE \"{name}\" SET maintenance_work_mem = '{BUILD_MEMORY}'")
    options = PostgresOptions(min_size=1, max_size=1, hnsw_m=m, hnsw_ef_construction=ef_construction)

    async def migrate() -> None:
        store = PostgresStore(server.url(name), options)
        await store.open()
        await store.close()

    started = time.perf_counter()
    asyncio.run(migrate())
    steps["migrate_s"] = time.perf_counter() - started
    if rebuild or index_settings(server, name) != {"m": str(m), "ef_construction": str(ef_construction)}:
        [(dimension,)] = server.execute(
            name, "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'"
        )
        # main's definition has no `dimension` (a full-precision index of the column)
        wanted = {"dimension": dimension} if "dimension" in inspect.signature(vector_index_sql).parameters else {}
        started = time.perf_counter()
        server.execute(name, f"DROP INDEX {VECTOR_INDEX}")
        with psycopg.connect(server.url(name), autocommit=True) as conn:
            conn.execute(vector_index_sql(options, **wanted))
        steps["hnsw_s"] = time.perf_counter() - started
    steps |= index_of(server, name)
    server.execute(
        name,
        "INSERT INTO meta (key, value) VALUES ('bench_variant', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = meta.value || ' ' || EXCLUDED.value",
        (json.dumps(steps),),
    )
    print(json.dumps(steps), flush=True)
    return steps


def index_settings(server: PostgresServer, name: str) -> dict[str, str]:
    [(options,)] = server.execute(name, "SELECT reloptions FROM pg_class WHERE oid = to_regclass(%s)", (VECTOR_INDEX,))
    return dict(option.split("=", 1) for option in options or [])


def index_of(server: PostgresServer, name: str) -> dict[str, Any]:
    """The HNSW index's definition and size (MB)."""
    [(definition, size)] = server.execute(
        name,
        "SELECT pg_get_indexdef(oid), pg_relation_size(oid) FROM pg_class WHERE oid = to_regclass(%s)",
        (VECTOR_INDEX,),
    )
    return {"index": definition, "index_mb": size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the kept PostgreSQL data folder")
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[400, 600, 800, 1000])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--store",
        action="store_true",
        help="instead of the sweep: the store with its defaults (exact or HNSW, its filtered ef_search rule), "
        "recall@10, vector search and SearchService.search per filter",
    )
    parser.add_argument(
        "--filtered-ef-search",
        type=int,
        help="with --store: the store's filtered ef_search (DOCSERVER_HNSW_FILTERED_EF_SEARCH) instead of its default",
    )
    parser.add_argument(
        "--variant-of",
        metavar="DATABASE",
        help="first make --database a copy of DATABASE (if it is not there), migrated by this code, its HNSW index "
        "built with --m and --ef-construction by this code's definition",
    )
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--rebuild", action="store_true", help="build the variant's index again even if it matches")
    parser.add_argument("--build-only", action="store_true", help="build the variant (--variant-of), measure nothing")
    parser.add_argument(
        "--out",
        type=Path,
        help="results (default bench/results/postgres_filtered_ef.json; with --build-only, the build's steps, "
        "written only when given)",
    )
    args = parser.parse_args()
    server = PostgresServer(args.data)
    try:
        variant = (
            make_variant(server, args.variant_of, args.database, args.m, args.ef_construction, args.rebuild)
            if args.variant_of
            else {}
        )
        index = index_of(server, args.database)
    except BaseException:
        server.close()
        raise
    if args.build_only:
        server.close()
        if args.out:
            row = {"database": args.database, "mode": "build", "variant": variant, **index}
            args.out.write_text(json.dumps({**row, "load_average": os.getloadavg()}, indent=2))
        return
    args.out = args.out or Path("bench/results/postgres_filtered_ef.json")
    niceness = os.getpriority(os.PRIO_PROCESS, 0)
    renice(server.folder, -15)
    load_before = os.getloadavg()
    try:
        with exact_at_most(-1 if not args.store else postgres_exact.EXACT_AT_MOST):  # the sweep: through the index
            url = server.url(args.database)
            points = asyncio.run(run(url, args.ef_search, args.calls, args.store, args.filtered_ef_search))
    finally:
        renice(server.folder, niceness)
        server.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    row = {"database": args.database, "calls": args.calls, "mode": "store" if args.store else "sweep", **index}
    row |= {"filtered_ef_search": args.filtered_ef_search} if args.filtered_ef_search else {}
    row |= {"variant": variant} if variant else {}
    row |= {"load_average_before": load_before, "load_average_after": os.getloadavg()}
    args.out.write_text(json.dumps({**row, "points": points}, indent=2))


if __name__ == "__main__":
    main()
