"""The `docserver` command: serve, ingest, search, sources, refresh, remove, reindex, eval.

Expected failures (bad settings, missing paths, a store built with another
embedder) print one line and exit 1; usage errors exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

from docserver import __version__
from docserver.config import Settings, load_settings, unknown_variables
from docserver.errors import DocserverError
from docserver.ingest.progress import ProgressBar
from docserver.observability.logging import configure_logging, get_logger
from docserver.observability.logwriter import LogWriter
from docserver.observability.tracing import current_trace_ids
from docserver.paths import SAMPLE_SOURCE, bundled_docs_path
from docserver.runtime import open_runtime, open_unbound
from docserver.search import MAX_LIMIT
from docserver.sources.commands import add_ingest_options, ingest_requests, open_sources, source_lines
from docserver.store.base import Store


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="docserver",
        description="Documentation search for AI assistants over the Model Context Protocol. "
        "Settings come from the environment; see docs/configuration.md.",
    )
    parser.add_argument("--version", action="version", version=f"docserver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve MCP over Streamable HTTP (default) or stdio")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, or DOCSERVER_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080, or DOCSERVER_PORT)")
    serve.add_argument("--stdio", action="store_true", help="speak MCP on stdin/stdout instead of HTTP")
    serve.add_argument(
        "--workers", type=int, default=1, help="must be 1: scale with more processes (replicas), not workers"
    )

    ingest_cmd = commands.add_parser("ingest", help="ingest documentation files (.md .mdx .rst .txt .html)")
    ingest_cmd.add_argument(
        "paths", nargs="*", metavar="ORIGIN", help="folders or files, or a git repository (git+https://…, git+file://…)"
    )
    ingest_cmd.add_argument("--source", help="source name (default: the folder's name, one source per ORIGIN)")
    ingest_cmd.add_argument(
        "--sample", action="store_true", help=f"also ingest docserver's own documentation as source {SAMPLE_SOURCE}"
    )
    add_ingest_options(ingest_cmd)

    sources_refresh = commands.add_parser("refresh", help="fetch sources again from their recorded origins")
    sources_refresh.add_argument("names", nargs="*", metavar="SOURCE", help="sources to refresh (default: all)")

    remove = commands.add_parser("remove", help="delete a source and its vectors, in one transaction")
    remove.add_argument("name", metavar="SOURCE")
    remove.add_argument("--version", dest="version_label", metavar="V", help="only this version of the source")

    search = commands.add_parser("search", help="search the ingested documentation")
    search.add_argument("query")
    search.add_argument("--source", help="search only this source")
    search.add_argument(
        "--version",
        dest="version_label",
        metavar="LABEL",
        help="search only this version (default: each source's newest version)",
    )
    search.add_argument("--limit", type=int, default=5, help=f"results to show (1-{MAX_LIMIT}, default 5)")
    search.add_argument("--json", action="store_true", help="print results as JSON")

    sources = commands.add_parser("sources", help="list the ingested sources")
    sources.add_argument("--json", action="store_true", help="print as JSON")

    reindex_cmd = commands.add_parser(
        "reindex",
        help="re-embed every stored chunk with the configured embedder (after changing DOCSERVER_EMBEDDER "
        "or the model); the current index stays searchable until it finishes",
    )
    reindex_cmd.add_argument(
        "--force", action="store_true", help="re-embed even if the index already uses the configured embedder"
    )

    evaluate = commands.add_parser(
        "eval", help="measure search quality (hit@1, hit@3, MRR) on the built-in evaluation set"
    )
    evaluate.add_argument(
        "--embedders",
        default="hash,local",
        help="comma-separated embedders to evaluate (hash, local, openai; default hash,local)",
    )
    evaluate.add_argument(
        "--questions",
        default="builtin",
        help="the question set: builtin (default), python or postgresql (Debian's python3.11-doc and "
        "postgresql-doc-15, read where they are installed), or a questions file",
    )
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(http={"host": getattr(args, "host", None), "port": getattr(args, "port", None)})
    except DocserverError as exc:
        print(f"docserver: error: {exc}", file=sys.stderr)
        return 1
    if getattr(args, "workers", 1) != 1:
        print(
            "docserver: error: --workers must be 1: metrics, caches and MCP sessions live in one process; "
            "run one docserver process per container and scale with replicas behind a load balancer",
            file=sys.stderr,
        )
        return 2
    http_server = args.command == "serve" and not args.stdio
    # The HTTP server logs to stdout, where log collectors look; the other
    # commands keep stdout for their output (and stdio for the protocol).
    global _writer
    writer = _writer = configure_logging(
        level=_log_level(settings, server=args.command == "serve"),
        log_format=settings.telemetry.log_format,
        service_name=settings.telemetry.service_name,
        environment=settings.telemetry.environment,
        stream=sys.stdout if http_server else sys.stderr,
        secrets=settings.secrets(),
        trace_ids=current_trace_ids if settings.telemetry.tracing_enabled else None,
    )
    for variable, closest in unknown_variables(os.environ):
        get_logger("docserver.config").warning("unknown_setting", variable=variable, closest=closest)
    try:
        return _run(args, settings)
    except DocserverError as exc:
        _say(f"docserver: error: {exc}", sys.stderr)
        return 1
    except KeyboardInterrupt:
        _say("docserver: interrupted; nothing was changed by the unfinished operation", sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`docserver search ... | head -1`): not an error
        # worth a traceback. Point stdout at /dev/null so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        writer.close()


_writer: LogWriter | None = None
BULK_EMBEDDING = frozenset({"ingest", "refresh", "reindex", "eval"})
"""Commands that embed many chunks and serve no searches: the local model gets every core
(DOCSERVER_INGEST_TORCH_THREADS), where `serve` keeps DOCSERVER_TORCH_THREADS."""


def _log_level(settings: Settings, *, server: bool) -> str:
    """The server logs at LOG_LEVEL; a one-shot command only warnings, unless LOG_LEVEL was set."""
    if not settings.telemetry.enabled:
        return "WARNING"
    if server or "log_level" in settings.telemetry.model_fields_set:
        return settings.telemetry.log_level
    return "WARNING"


def _say(text: str, stream: TextIO | None = None) -> None:
    """Print a line for the person at the terminal, after any log lines already queued for the same stream."""
    if _writer is not None:
        _writer.flush()
    print(text, file=stream or sys.stdout)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        from docserver.serve import serve_http, serve_stdio

        asyncio.run(serve_stdio(settings) if args.stdio else serve_http(settings))
        return 0
    if args.command in BULK_EMBEDDING:
        settings = settings.replace(embedding={"torch_threads": settings.embedding.bulk_torch_threads()})
    handler = {
        "ingest": _ingest,
        "search": _search,
        "sources": _sources,
        "refresh": _refresh,
        "remove": _remove,
        "reindex": _reindex,
        "eval": _evaluate,
    }[args.command]
    return asyncio.run(handler(settings, args))


async def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    if not args.paths and not args.sample:
        raise DocserverError("name a folder or file to ingest (docserver ingest PATH), or pass --sample")
    requests = ingest_requests(args, sample=bundled_docs_path() if args.sample else None)
    async with _tracing(settings), open_runtime(settings) as runtime:
        sources = open_sources(settings, runtime)
        for request in requests:
            bar = ProgressBar(f"ingesting {request.name}", log_writer=_writer)
            try:
                outcome = await sources.ingest(request, force=args.force, progress=bar)
            finally:
                bar.close()
            if outcome.summary is not None:
                for path, reason in outcome.summary.skipped_files:
                    _say(f"skipped {path}: {reason}", sys.stderr)
            _say(outcome.line())
        await _finish_vector_index(runtime.store)
    return 0


async def _finish_vector_index(store: Store) -> None:
    """Wait for the index work the writes started (SQLite's approximate vector index; docs/search.md).

    Left undone, the next process to open the database would do it, and a
    server would spend its first minutes training the index beside its searches.
    """
    built = asyncio.ensure_future(store.vector_index_built())
    done, _ = await asyncio.wait({built}, timeout=1.0)
    if not done:
        _say("building the vector index...", sys.stderr)
    await built


async def _refresh(settings: Settings, args: argparse.Namespace) -> int:
    async with _tracing(settings), open_runtime(settings) as runtime:
        outcomes = await open_sources(settings, runtime).refresh(args.names)
        await _finish_vector_index(runtime.store)
    if not outcomes:
        _say("no refreshable sources; ingest some documentation with: docserver ingest ORIGIN")
    for outcome in outcomes:
        _say(outcome.line(), sys.stderr if outcome.result == "failed" else sys.stdout)
    return 1 if any(outcome.result == "failed" for outcome in outcomes) else 0


async def _remove(settings: Settings, args: argparse.Namespace) -> int:
    from docserver.sources.request import stored_name

    name = stored_name(args.name, args.version_label)
    async with open_runtime(settings) as runtime:
        removed = await open_sources(settings, runtime).remove(name)
    _say(f"source {name!r} removed ({removed} documents)")
    return 0


@asynccontextmanager
async def _tracing(settings: Settings) -> AsyncIterator[None]:
    """Trace a one-shot command, when a collector was named (see `TelemetrySettings.tracing_enabled`)."""
    from docserver.serve import start_tracing

    tracing = start_tracing(settings, None)
    try:
        yield
    finally:
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)


async def _search(settings: Settings, args: argparse.Namespace) -> int:
    async with open_runtime(settings) as runtime:
        hits = await runtime.service.search(
            args.query, source=args.source, version=args.version_label, limit=args.limit
        )
    if args.json:
        _print_json([_asdict(hit) for hit in hits])
        return 0
    if not hits:
        _say("no results")
    for rank, hit in enumerate(hits, start=1):
        heading = f" > {hit.heading}" if hit.heading else ""
        place = hit.url or f"{hit.path}:{hit.start_line}-{hit.end_line}"
        print(f"{rank}. [{hit.source}] {place}{heading}  (document {hit.document_id})")
        _say(f"   {hit.snippet}")
    return 0


async def _sources(settings: Settings, args: argparse.Namespace) -> int:
    async with open_runtime(settings) as runtime:
        sources = await runtime.service.list_sources()
        records = {record.name: record for record in await runtime.store.source_records()}
    if args.json:
        _print_json([{**_asdict(source), **_asdict_or_empty(records.get(source.name))} for source in sources])
        return 0
    if not sources:
        _say("no sources; ingest some documentation with: docserver ingest PATH")
    for line in source_lines(sources, records):
        _say(line)
    return 0


async def _reindex(settings: Settings, args: argparse.Namespace) -> int:
    from docserver.reindex import reindex

    async with _tracing(settings), open_unbound(settings) as (store, embedder):
        bar = ProgressBar("re-embedding", unit="chunks", log_writer=_writer)
        try:
            summary = await reindex(store, embedder, force=args.force, progress=bar)
        finally:
            bar.close()
        await _finish_vector_index(store)
    _say(summary.line())
    return 0


async def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from docserver.evaluation.runner import evaluate, render

    names = [name.strip() for name in args.embedders.split(",") if name.strip()]
    unknown = sorted(set(names) - {"hash", "local", "openai"})
    if unknown or not names:
        raise DocserverError(f"--embedders: unknown embedder {', '.join(unknown) or '(none)'}; use hash, local, openai")
    report = await evaluate(settings, names, questions=args.questions)
    if args.json:
        _print_json(report.as_dict())
    else:
        _say(render(report))
    return 0


def _asdict(item: Any) -> dict[str, Any]:
    """A result dataclass's fields, its base classes' included (`__slots__` holds only the class's own)."""
    return {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}


def _asdict_or_empty(item: Any) -> dict[str, Any]:
    return {} if item is None else _asdict(item)


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    print()
