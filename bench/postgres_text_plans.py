"""PostgreSQL full text's some-words tier under a custom and a generic plan, and which one the plan cache picks.

    python bench/postgres_text_plans.py --data /tmp/pg [--database bench_100000_m16_ef64]
        [--out bench/results/postgres_text_plans_100k.json]

On a database kept by bench/postgres_scale.py (--keep or --build-only), for
the 96 questions of the real-docs question sets and each filter that bench
measures (the newest versions, one source, one version), the some-words tier
(`postgres_sql.search_text_sql(every=False)`, 80 places, the question's common
words left out as the store leaves them out) is prepared and run by EXPLAIN
(ANALYZE, BUFFERS) with `plan_cache_mode` forcing a custom plan (planned for
the question's words and filter) and a generic one (planned once, for any
words). Each row keeps, per plan: the execution time, the buffers read, the
rows the heap scan read and threw away for their source, the planning time
(a custom plan's is paid by every execution), and whether the GIN
matches were intersected with the source index (BitmapAnd).

Then the plan cache's own choice (`plan_cache_mode` auto, as a statement
psycopg prepares after five executions meets it): each filter's 96 questions
through one prepared statement, and its count of generic and custom plans
(pg_prepared_statements), with the store's source index
(`chunks_by_source_embedding`, migration 0005) and, inside a transaction rolled
back afterwards, with the one before it (`chunks_by_source`, on `source` alone).
Which questions come first decides (the plan cache compares the generic plan
with the first custom plans' average estimate), so last, the store's own
`search_text` on one connection, each filter in turn as bench/postgres_scale.py
times them (the filters share the statements' text, so a plan gone generic
under one filter serves the next): its latency, and the generic and custom
plans of the full-text statements it prepared.
Each filter's 96 questions also go through both tiers one statement at a
time (`tiers`: the every-word tier, the common-words statistics, the
some-words tier when the first leaves places, each the best of three runs),
with each tier's EXPLAIN ANALYZE split into its bitmap index scans (the GIN
index, the source index); again with the index before 0005
(`tiers_source_index_before_0005`, in the rolled-back transaction).
The code under test is the `docserver` on PYTHONPATH (the tier's SQL is the
same at 665c973, ab7ef52 and after; only whether the store prepares it differs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

from docserver.evaluation.runner import load_question_set
from docserver.store.postgres import PostgresStore
from docserver.store.postgres_sql import COMMON_AT_MATCHES, COMMON_TERMS, TEXT_PLAN, search_text, search_text_sql
from docserver.store.terms import query_terms
from postgres_scale import filters
from support.postgres_server import PostgresServer

CANDIDATES = 80
"""What a search of 20 results asks each retriever for (SearchService: limit * 4)."""
PREPARE = "PREPARE tier (text, text, text, text[]) AS {}"


class RolledBack(Exception):
    """Leaves a transaction that changed the schema for a measurement, undoing the change."""


def measured_filters(url: str) -> dict[str, tuple[str, ...]]:
    """The filters bench/postgres_scale.py measures (its `filters`), as the store is asked them."""

    async def read() -> dict[str, tuple[str, ...]]:
        store = PostgresStore(url)
        await store.open()
        try:
            chosen = await filters(store, "python-0")
        finally:
            await store.close()
        return {name: tuple(source) for name, (source, _) in chosen.items() if isinstance(source, tuple)}

    return asyncio.run(read())


def tier_parameters(conn: psycopg.Connection[Any], query: str, sources: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The some-words tier's parameters for `query`, as search_text sends them; None when every word is common."""
    terms = query_terms(query)
    common = {row[0] for row in conn.execute(COMMON_TERMS, (terms, COMMON_AT_MATCHES), prepare=False).fetchall()}
    rare = [f'"{term}"' for term in terms if term not in common]
    if len(terms) < 2 or not rare:
        return None
    quoted = [f'"{term}"' for term in terms]
    return (" or ".join(quoted), " or ".join(rare), " ".join(quoted), list(sources))


def prepare_tier(conn: psycopg.Connection[Any]) -> None:
    """The some-words tier prepared as `tier`, afresh: no plan cached yet.

    Any earlier `tier` goes first, if still there: psycopg sends DEALLOCATE ALL
    of its own after a DROP or a ROLLBACK, which takes ours too.
    """
    if conn.execute("SELECT 1 FROM pg_prepared_statements WHERE name = 'tier'").fetchone():
        conn.execute("DEALLOCATE tier")
    text = search_text_sql(filtered=sql.SQL("AND c.source = ANY(%s)"), limit=CANDIDATES, every=False).as_string(conn)
    for number in range(1, 5):
        text = text.replace("%s", f"${number}", 1)
    conn.execute(sql.SQL(PREPARE).format(sql.SQL(text)))  # type: ignore[arg-type]


def execute(params: tuple[Any, ...]) -> sql.Composed:
    """EXECUTE of the prepared tier with `params` as literals (a utility statement takes no bound parameters)."""
    return sql.SQL("EXECUTE tier ({})").format(sql.SQL(", ").join(sql.Literal(value) for value in params))


def explained(conn: psycopg.Connection[Any], params: tuple[Any, ...]) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of the prepared tier: time, buffers, rows thrown away, and the plan's shape."""
    statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + execute(params)
    plan = conn.execute(statement).fetchone()[0][0]  # type: ignore[index]
    nodes = list(walk(plan["Plan"]))
    heap = next(node for node in nodes if node["Node Type"] == "Bitmap Heap Scan")
    return {
        "ms": plan["Execution Time"],
        "planning_ms": plan["Planning Time"],
        "buffers": plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"],
        "heap_blocks": heap.get("Exact Heap Blocks", 0) + heap.get("Lossy Heap Blocks", 0),
        "removed_by_filter": heap.get("Rows Removed by Filter", 0),
        "bitmap_and": any(node["Node Type"] == "BitmapAnd" for node in nodes),
    }


def walk(node: dict[str, Any]) -> Any:
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def plans(conn: psycopg.Connection[Any], questions: list[str], sources: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for question in questions:
        params = tier_parameters(conn, question, sources)
        if params is None:
            continue
        row: dict[str, Any] = {"question": question}
        for mode in ("custom", "generic"):
            conn.execute(f"SET plan_cache_mode = force_{mode}_plan")
            explained(conn, params)  # the first run reads what the second finds cached
            row[mode] = explained(conn, params)
        rows.append(row)
    conn.execute("RESET plan_cache_mode")
    return rows


def cache_choice(conn: psycopg.Connection[Any], questions: list[str], sources: tuple[str, ...]) -> dict[str, int]:
    """The plan cache's own choice over the questions, in order, through one prepared statement."""
    prepare_tier(conn)
    for question in questions:
        params = tier_parameters(conn, question, sources)
        if params is not None:
            conn.execute(execute(params)).fetchall()
    row = conn.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = 'tier'").fetchone()
    assert row is not None
    return {"generic_plans": row[0], "custom_plans": row[1]}


def store_statements(url: str, questions: list[str], filters: dict[str, tuple[str, ...]], calls: int) -> dict[str, Any]:
    """The store's own full-text statement (`postgres_sql.search_text` on PYTHONPATH) on one connection, each
    filter in turn as bench/postgres_scale.py times them (50 warm-up calls, then `calls` timed, the questions in
    its order): p50 / p95 ms, and the generic and custom plans so far of the full-text statements the connection
    prepared (none when the statements are never prepared). The filters share the statements' text."""

    async def run() -> dict[str, Any]:
        found: dict[str, Any] = {}
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for name, sources in filters.items():
                seconds = []
                for n in range(50 + calls):
                    started = time.perf_counter()
                    await search_text(conn, query_terms(questions[n % len(questions)]), sources, CANDIDATES)
                    if n >= 50:
                        seconds.append(time.perf_counter() - started)
                cursor = await conn.execute(
                    "SELECT count(*), coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
                    "FROM pg_prepared_statements WHERE statement LIKE '%ts_rank_cd%'"
                )
                row = await cursor.fetchone()
                assert row is not None
                quantiles = statistics.quantiles(seconds, n=100)
                found[name] = {
                    "p50_ms": quantiles[49] * 1000,
                    "p95_ms": quantiles[94] * 1000,
                    "prepared": int(row[0]),
                    "generic_plans": int(row[1]),
                    "custom_plans": int(row[2]),
                }
        return found

    return asyncio.run(run())


def best_ms(conn: psycopg.Connection[Any], statement: Any, params: tuple[Any, ...]) -> tuple[float, int]:
    """The best of three runs of `statement` (ms), and the rows it returned."""
    times, found = [], 0
    for _ in range(3):
        started = time.perf_counter()
        found = len(conn.execute(statement, params, prepare=False).fetchall())
        times.append((time.perf_counter() - started) * 1000)
    return min(times), found


def index_scans_ms(conn: psycopg.Connection[Any], statement: Any, params: tuple[Any, ...]) -> dict[str, float]:
    """EXPLAIN ANALYZE of `statement`: each bitmap index scan's time (ms), by index."""
    plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + statement, params, prepare=False).fetchone()
    nodes = walk(plan[0][0]["Plan"])  # type: ignore[index]
    return {n["Index Name"]: n["Actual Total Time"] for n in nodes if n["Node Type"] == "Bitmap Index Scan"}


def tier_times(conn: psycopg.Connection[Any], questions: list[str], sources: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each question's full text as search_text runs it (80 places), one statement at a time."""
    condition = sql.SQL("AND c.source = ANY(%s)")
    rows = []
    for question in questions:
        terms = query_terms(question)
        quoted = [f'"{term}"' for term in terms]
        every_params = (" or ".join(quoted), " ".join(quoted), list(sources))
        every = search_text_sql(filtered=condition, limit=CANDIDATES)
        every_ms, found = best_ms(conn, every, every_params)
        row: dict[str, Any] = {"question": question, "every_ms": every_ms, "every_rows": found}
        row["every_index_scans_ms"] = index_scans_ms(conn, every, every_params)
        row |= {"common_ms": 0.0, "some_ms": 0.0, "some_index_scans_ms": {}}
        if found < CANDIDATES and len(terms) > 1:
            row["common_ms"], _ = best_ms(conn, COMMON_TERMS, (terms, COMMON_AT_MATCHES))
            params = tier_parameters(conn, question, sources)
            if params is not None:
                some = search_text_sql(filtered=condition, limit=CANDIDATES - found, every=False)
                row["some_ms"], _ = best_ms(conn, some, params)
                row["some_index_scans_ms"] = index_scans_ms(conn, some, params)
        row["total_ms"] = row["every_ms"] + row["common_ms"] + row["some_ms"]
        rows.append(row)
    return rows


def tier_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in ("every_ms", "common_ms", "some_ms", "total_ms"):
        times = sorted(row[part] for row in rows)
        found[part] = {"p50": statistics.median(times), "p95": statistics.quantiles(times, n=100)[94]}
    for tier in ("every", "some"):
        scans = [row[f"{tier}_index_scans_ms"] for row in rows if row[f"{tier}_index_scans_ms"]]
        found[f"{tier}_tier_questions"] = len(scans)
        for index in sorted({name for scan in scans for name in scan}):
            found[f"{tier}_mean_{index}_ms"] = statistics.fmean(scan.get(index, 0.0) for scan in scans)
    found["slowest"] = sorted(rows, key=lambda row: -row["total_ms"])[:8]
    return found


def summary(rows: list[dict[str, Any]], mode: str) -> dict[str, float]:
    times = sorted(row[mode]["ms"] for row in rows)
    return {
        "p50_ms": statistics.median(times),
        "p95_ms": statistics.quantiles(times, n=100)[94],
        "max_ms": times[-1],
        "planning_p50_ms": statistics.median(row[mode]["planning_ms"] for row in rows),
        "mean_buffers": statistics.fmean(row[mode]["buffers"] for row in rows),
        "mean_removed_by_filter": statistics.fmean(row[mode]["removed_by_filter"] for row in rows),
        "bitmap_and_share": sum(row[mode]["bitmap_and"] for row in rows) / len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, required=True, help="the PostgreSQL data folder bench/postgres_scale.py kept"
    )
    parser.add_argument("--database", default="bench_100000_m16_ef64")
    parser.add_argument("--calls", type=int, default=200, help="as bench/postgres_scale.py --calls")
    parser.add_argument("--out", type=Path, default=Path("bench/results/postgres_text_plans_100k.json"))
    args = parser.parse_args()
    questions = [q.query for name in ("python", "postgresql") for q in load_question_set(name).questions]
    server = PostgresServer(args.data)
    result: dict[str, Any] = {"database": args.database, "filters": {}}
    try:
        with psycopg.connect(server.url(args.database), autocommit=True) as conn:
            conn.execute(TEXT_PLAN.replace(", true)", ", false)"))  # the store's planner settings, for the session
            prepare_tier(conn)
            chosen = measured_filters(server.url(args.database))
            for name, sources in chosen.items():
                rows = plans(conn, questions, sources)
                found: dict[str, Any] = {"sources": list(sources), "questions": len(rows)}
                found |= {f"{mode}_plan": summary(rows, mode) for mode in ("custom", "generic")}
                found["cache_choice"] = cache_choice(conn, questions, sources)
                found["tiers"] = tier_summary(tier_times(conn, questions, sources))
                try:
                    with conn.transaction():
                        conn.execute("CREATE INDEX chunks_by_source ON chunks (source)")
                        conn.execute("DROP INDEX chunks_by_source_embedding")
                        found["cache_choice_source_index_before_0005"] = cache_choice(conn, questions, sources)
                        before_0005 = tier_summary(tier_times(conn, questions, sources))
                        found["tiers_source_index_before_0005"] = before_0005
                        raise RolledBack
                except RolledBack:
                    pass
                prepare_tier(conn)
                found["rows"] = rows
                result["filters"][name] = found
                print(name, json.dumps({k: v for k, v in found.items() if k != "rows"}), flush=True)
        result["store_statements"] = store_statements(server.url(args.database), questions, chosen, args.calls)
        print("store", json.dumps(result["store_statements"]), flush=True)
    finally:
        server.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
