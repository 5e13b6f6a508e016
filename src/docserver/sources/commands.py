"""The command line's side of sources: ingest flags, requests from arguments, and the `sources` listing."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from platformdirs import user_data_path

from docserver.config import Settings
from docserver.errors import DocserverError
from docserver.observability.metrics import Metrics
from docserver.observability.redaction import without_credentials
from docserver.paths import APP_NAME, SAMPLE_SOURCE
from docserver.runtime import Runtime
from docserver.sources.filters import FileFilter
from docserver.sources.git import GitRepositories
from docserver.sources.origin import Origin, parse_origin
from docserver.sources.request import SourceRequest, stored_name
from docserver.sources.service import Sources
from docserver.sources.web import CrawlLimits, WebCrawler
from docserver.store.base import SourceInfo, SourceRecord


def git_cache_path() -> Path:
    """Where fetched repositories are kept between refreshes: `git/` in the user data folder."""
    return user_data_path(APP_NAME, appauthor=False) / "git"


def web_cache_path() -> Path:
    """Where crawls remember pages' validators and links between refreshes: `web/` in the user data folder."""
    return user_data_path(APP_NAME, appauthor=False) / "web"


def open_sources(settings: Settings, runtime: Runtime, metrics: Metrics | None = None) -> Sources:
    """The sources service; with `metrics` (a server's), every fetch and refresh is counted."""
    counters = _Counters(metrics) if metrics is not None else None
    return Sources(
        runtime.store,
        runtime.embedder,
        GitRepositories(git_cache_path(), on_fetch=counters.git_fetched if counters else None),
        WebCrawler(
            web_cache_path(), CrawlLimits.of(settings.sources), on_fetch=counters.http_fetched if counters else None
        ),
        max_chars=settings.store.chunk_max_chars,
        on_refresh=counters.refreshed if counters else None,
    )


class _Counters:
    """The sources' callbacks onto a server's metrics: fetches by kind and result, bytes, refreshes."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._http_bytes = metrics.fetch_bytes.labels("http")

    def git_fetched(self, result: str) -> None:
        self._metrics.fetch_requests.labels("git", result).inc()

    def http_fetched(self, result: str, size: int) -> None:
        self._metrics.fetch_requests.labels("http", result).inc()
        self._http_bytes.inc(size)

    def refreshed(self, result: str) -> None:
        self._metrics.source_refreshes.labels(result).inc()


def add_ingest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version",
        dest="version_label",
        metavar="LABEL",
        help="version label (e.g. 3.11): the source is stored as SOURCE@LABEL, beside its other versions",
    )
    parser.add_argument(
        "--include", action="append", default=[], metavar="GLOB", help="keep only files matching a glob (repeatable)"
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files matching a glob (repeatable), besides the defaults "
        "(_sources/, _static/, _templates/, node_modules/, build outputs...)",
    )
    parser.add_argument("--no-default-excludes", action="store_true", help="do not leave out the default globs")
    parser.add_argument("--force", action="store_true", help="re-chunk and re-embed even unchanged files")
    parser.add_argument("--ref", help="git: the branch, tag or commit (default: the remote's default branch)")
    parser.add_argument("--path", dest="inner_path", metavar="FOLDER", help="git: the folder inside the repository")


def ingest_requests(args: argparse.Namespace, *, sample: Path | None) -> list[SourceRequest]:
    """One request per source the arguments name (several paths share one with --source)."""
    missing = [text for text in args.paths if "://" not in text and not Path(text).exists()]
    if missing:
        raise DocserverError(f"path not found: {', '.join(missing)}")
    origins = [parse_origin(text, ref=args.ref, subpath=args.inner_path) for text in args.paths]
    file_filter = FileFilter(tuple(args.include), tuple(args.exclude), not args.no_default_excludes)
    requests = _grouped(origins, args.source, args.version_label, file_filter)
    if sample is not None:
        requests.append(SourceRequest(SAMPLE_SOURCE, Origin("path", str(sample.resolve())), file_filter))
    return requests


def _grouped(
    origins: list[Origin], source: str | None, version: str | None, file_filter: FileFilter
) -> list[SourceRequest]:
    if source and len(origins) > 1:
        if any(origin.kind != "path" for origin in origins):
            raise DocserverError("--source with several origins: only folders and files can share one source")
        paths = tuple(origin.location for origin in origins)
        return [SourceRequest(stored_name(source, version), origins[0], file_filter, version, paths)]
    return [
        SourceRequest(
            stored_name(source or origin.default_name(), version),
            origin,
            file_filter,
            version,
            (origin.location,) if origin.kind == "path" else (),
        )
        for origin in origins
    ]


def source_lines(sources: Sequence[SourceInfo], records: Mapping[str, SourceRecord]) -> Iterator[str]:
    """`docserver sources`: a line per source, then its origin and freshness where recorded."""
    for source in sources:
        yield f"{source.name}\t{source.documents} documents\t{source.chunks} chunks\tupdated {source.updated_at}"
        record = records.get(source.name)
        if record is None or record.origin is None:
            continue
        version = f"version {record.version}  " if record.version else ""
        revision = f" @ {record.revision[:12]}" if record.revision else ""
        origin = without_credentials(record.origin)
        yield f"  {version}from {origin}{revision}  last refresh {record.refreshed_at or 'never'}"
        if record.last_error:
            yield f"  last error ({record.last_error_at}): {without_credentials(record.last_error)}"
