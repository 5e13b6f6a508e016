"""The `docserver` command: serve, ingest, search, sources, reindex, eval.

Expected failures (bad settings, missing paths, a store built with another
embedder) print one line and exit 1; usage errors exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

from docserver import __version__
from docserver.config import Settings, load_settings
from docserver.errors import DocserverError
from docserver.ingest.pipeline import default_source_name, ingest
from docserver.ingest.progress import ProgressBar
from docserver.observability.logging import configure_logging
from docserver.observability.logwriter import LogWriter
from docserver.observability.tracing import current_trace_ids
from docserver.paths import SAMPLE_SOURCE, bundled_docs_path
from docserver.runtime import open_runtime, open_unbound
from docserver.search import MAX_LIMIT


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
    ingest_cmd.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="folders or files")
    ingest_cmd.add_argument("--source", help="source name (default: the folder's name, one source per PATH)")
    ingest_cmd.add_argument(
        "--sample", action="store_true", help=f"also ingest docserver's own documentation as source {SAMPLE_SOURCE}"
    )

    search = commands.add_parser("search", help="search the ingested documentation")
    search.add_argument("query")
    search.add_argument("--source", help="search only this source")
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
    handler = {"ingest": _ingest, "search": _search, "sources": _sources, "reindex": _reindex, "eval": _evaluate}[
        args.command
    ]
    return asyncio.run(handler(settings, args))


async def _ingest(settings: Settings, args: argparse.Namespace) -> int:
    paths: list[Path] = args.paths
    if not paths and not args.sample:
        raise DocserverError("name a folder or file to ingest (docserver ingest PATH), or pass --sample")
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise DocserverError(f"path not found: {', '.join(missing)}")
    groups = (
        [(args.source, paths)] if args.source and paths else [(default_source_name(path), [path]) for path in paths]
    )
    if args.sample:
        groups.append((SAMPLE_SOURCE, [bundled_docs_path()]))
    async with _tracing(settings):
        return await _ingest_groups(settings, groups)


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


async def _ingest_groups(settings: Settings, groups: list[tuple[str, list[Path]]]) -> int:
    max_chars = settings.store.chunk_max_chars
    async with open_runtime(settings) as runtime:
        for source, roots in groups:
            bar = ProgressBar(f"ingesting {source}")
            try:
                summary = await ingest(
                    runtime.store, runtime.embedder, roots, source, max_chars=max_chars, progress=bar
                )
            finally:
                bar.close()
            for path, reason in summary.skipped_files:
                _say(f"skipped {path}: {reason}", sys.stderr)
            _say(summary.line())
    return 0


async def _search(settings: Settings, args: argparse.Namespace) -> int:
    async with open_runtime(settings) as runtime:
        hits = await runtime.service.search(args.query, source=args.source, limit=args.limit)
    if args.json:
        _print_json([_asdict(hit) for hit in hits])
        return 0
    if not hits:
        _say("no results")
    for rank, hit in enumerate(hits, start=1):
        heading = f" > {hit.heading}" if hit.heading else ""
        print(
            f"{rank}. [{hit.source}] {hit.path}:{hit.start_line}-{hit.end_line}{heading}  (document {hit.document_id})"
        )
        _say(f"   {hit.snippet}")
    return 0


async def _sources(settings: Settings, args: argparse.Namespace) -> int:
    async with open_runtime(settings) as runtime:
        sources = await runtime.service.list_sources()
    if args.json:
        _print_json([_asdict(source) for source in sources])
        return 0
    if not sources:
        _say("no sources; ingest some documentation with: docserver ingest PATH")
    for source in sources:
        _say(f"{source.name}\t{source.documents} documents\t{source.chunks} chunks\tupdated {source.updated_at}")
    return 0


async def _reindex(settings: Settings, args: argparse.Namespace) -> int:
    from docserver.reindex import reindex

    async with _tracing(settings), open_unbound(settings) as (store, embedder):
        bar = ProgressBar("re-embedding", unit="chunks")
        try:
            summary = await reindex(store, embedder, force=args.force, progress=bar)
        finally:
            bar.close()
    _say(summary.line())
    return 0


async def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from docserver.evaluation.runner import evaluate, render

    names = [name.strip() for name in args.embedders.split(",") if name.strip()]
    unknown = sorted(set(names) - {"hash", "local", "openai"})
    if unknown or not names:
        raise DocserverError(f"--embedders: unknown embedder {', '.join(unknown) or '(none)'}; use hash, local, openai")
    report = await evaluate(settings, names)
    if args.json:
        _print_json(report.as_dict())
    else:
        _say(render(report))
    return 0


def _asdict(item: Any) -> dict[str, Any]:
    return {name: getattr(item, name) for name in item.__slots__}


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    print()
