"""Ingestion: discover files, skip the unchanged, chunk and embed the rest, write one source atomically."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from docserver.embed.base import Embedder
from docserver.errors import IngestError
from docserver.ingest.chunk import chunk_document
from docserver.ingest.discover import SUPPORTED_SUFFIXES, UnreadableFileError, discover, read_text
from docserver.observability import tracing
from docserver.observability.logging import get_logger
from docserver.sources.filters import FileFilter
from docserver.store.base import ChunkInput, DocumentInput, SourceOrigin, SourceWriter, Store, Vectors

log = get_logger("docserver.ingest")

ProgressFn = Callable[[int, int], None]
"""Called with (files done, files total)."""


@dataclass(slots=True)
class IngestSummary:
    """What one ingest did, for the summary line and for tests."""

    source: str
    files: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    chunks: int = 0
    seconds: float = 0.0
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    unit: str = "files"
    """What the documents are, for the summary line: files, or pages of a website."""

    def line(self) -> str:
        return (
            f"source {self.source!r}: {self.files} {self.unit} ({self.changed} new or changed, "
            f"{self.unchanged} unchanged, {self.removed} removed, {self.skipped} skipped), "
            f"{self.chunks} chunks embedded in {self.seconds:.2f} s"
        )


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """How an ingest picks and treats files, beyond the roots it is given."""

    file_filter: FileFilter | None = None
    """Which discovered files belong to the source; None keeps every one."""
    force: bool = False
    """Re-chunk and re-embed every file, even those whose content is unchanged."""
    changed: Collection[str] | None = None
    """When known (a git diff), the only paths that may have changed: the others are not even read."""
    origin: SourceOrigin | None = None
    """Recorded with the documents, in the same transaction."""


@dataclass(slots=True)
class _Pending:
    path: str
    title: str
    content_hash: str
    content: str
    chunks: list[ChunkInput]


def default_source_name(path: Path) -> str:
    """A source named after the folder (or the file's folder) being ingested."""
    resolved = path.resolve()
    return (resolved if resolved.is_dir() else resolved.parent).name or "docs"


async def ingest(
    store: Store,
    embedder: Embedder,
    roots: Sequence[Path],
    source: str,
    *,
    max_chars: int = 1500,
    progress: ProgressFn | None = None,
    options: IngestOptions | None = None,
) -> IngestSummary:
    """Bring `source` in line with the files under `roots`.

    Unchanged files (same content hash) are not re-embedded; files gone since
    the last ingest of this source are removed. All changes land in one
    transaction: an interruption leaves the previous version searchable.
    Unreadable files are skipped and counted; they do not remove what was
    stored for them before.
    """
    with tracing.root_span(f"ingest {source}", {"docserver.source": source}):
        summary = await _ingest(store, embedder, roots, source, max_chars, progress, options or IngestOptions())
    log.info(
        "ingest_completed",
        source=source,
        files=summary.files,
        changed=summary.changed,
        unchanged=summary.unchanged,
        removed=summary.removed,
        skipped=summary.skipped,
        chunks=summary.chunks,
        duration_ms=round(summary.seconds * 1000, 3),
    )
    return summary


async def _ingest(
    store: Store,
    embedder: Embedder,
    roots: Sequence[Path],
    source: str,
    max_chars: int,
    progress: ProgressFn | None,
    options: IngestOptions,
) -> IngestSummary:
    started = time.perf_counter()
    summary = IngestSummary(source=source)
    with tracing.span("ingest.discover"):
        files = _discover_all(roots, summary, options.file_filter)
    if not files:
        chosen = options.file_filter is not None and bool(options.file_filter.include or options.file_filter.exclude)
        excluded = " (after --include/--exclude)" if chosen else ""
        raise IngestError(
            f"no documentation files ({' '.join(sorted(SUPPORTED_SUFFIXES))}) found{excluded} in "
            + ", ".join(str(root) for root in roots)
        )
    summary.files = len(files)
    log.info("ingest_started", source=source, files=summary.files)
    stored = await store.document_hashes(source)
    with tracing.span("ingest.chunk"):
        pending, unreadable = _read_and_chunk(
            _to_read(files, stored, options, summary), stored, options, max_chars, summary
        )
    for path, reason in summary.skipped_files:
        log.info("ingest_file_skipped", source=source, path=path, reason=reason)
    if unreadable == summary.files:
        raise IngestError(f"none of the {summary.files} files could be read; nothing was changed")
    seen = {path for path, _ in files}
    await _write(store, embedder, pending, sorted(set(stored) - seen), summary, progress, options.origin)
    summary.seconds = time.perf_counter() - started
    return summary


async def _write(
    store: Store,
    embedder: Embedder,
    pending: list[_Pending],
    removed: list[str],
    summary: IngestSummary,
    progress: ProgressFn | None,
    origin: SourceOrigin | None,
) -> None:
    """Embed and write the changed documents and delete the removed ones, in one transaction."""
    async with store.update_source(summary.source) as writer:
        await _embed_and_write(writer, embedder, pending, summary, progress)
        with tracing.span("ingest.delete", attributes={"docserver.documents": len(removed)}):
            await writer.delete_documents(removed)
        if origin is not None:
            await writer.record_origin(origin)
    summary.changed = len(pending)
    summary.removed = len(removed)


@dataclass(frozen=True, slots=True)
class FetchedDocument:
    """A document fetched from elsewhere than a folder (a crawled page)."""

    path: str
    """Stored as the document's path (a page's URL)."""
    suffix: str
    """The format to parse it as (`.html`, `.md`, `.txt`)."""
    text: str


async def ingest_fetched(
    store: Store,
    embedder: Embedder,
    documents: Sequence[FetchedDocument],
    summary: IngestSummary,
    *,
    removed: Collection[str],
    max_chars: int = 1500,
    progress: ProgressFn | None = None,
    options: IngestOptions | None = None,
) -> IngestSummary:
    """Bring `summary.source` in line with fetched documents: write those that changed, delete `removed`.

    Unlike a folder, a fetch does not list every document: those it does not
    name (unchanged, or failed this time) are kept. `summary` arrives with
    what the fetch counted (unchanged and skipped documents) and leaves with
    the rest.
    """
    options = options or IngestOptions()
    started = time.perf_counter()
    with tracing.root_span(f"ingest {summary.source}", {"docserver.source": summary.source}):
        stored = await store.document_hashes(summary.source)
        pending: list[_Pending] = []
        with tracing.span("ingest.chunk"):
            for document in documents:
                stem = document.path.rstrip("/").rsplit("/", 1)[-1]
                changed = _changed(
                    document.path, document.text, document.suffix, stem, stored, options.force, max_chars
                )
                if changed is None:
                    summary.unchanged += 1
                else:
                    pending.append(changed)
        summary.files += len(documents)
        gone = sorted(set(removed) & set(stored))
        await _write(store, embedder, pending, gone, summary, progress, options.origin)
    summary.seconds += time.perf_counter() - started
    return summary


def _to_read(
    files: list[tuple[str, Path]], stored: dict[str, str], options: IngestOptions, summary: IngestSummary
) -> list[tuple[str, Path]]:
    """The files worth reading: all of them, unless a diff said which could have changed."""
    if options.changed is None or options.force:
        return files
    changed = set(options.changed)
    kept = [(path, abspath) for path, abspath in files if path in changed or path not in stored]
    summary.unchanged += len(files) - len(kept)
    return kept


def _read_and_chunk(
    files: list[tuple[str, Path]],
    stored: dict[str, str],
    options: IngestOptions,
    max_chars: int,
    summary: IngestSummary,
) -> tuple[list[_Pending], int]:
    """Changed files, chunked; unchanged ones counted; unreadable ones skipped. Returns (pending, unreadable)."""
    pending: list[_Pending] = []
    unreadable = 0
    for path, abspath in files:
        try:
            text = read_text(abspath)
        except UnreadableFileError as exc:
            unreadable += 1
            summary.skipped += 1
            summary.skipped_files.append((path, exc.reason))
            continue
        document = _changed(path, text, abspath.suffix.lower(), abspath.stem, stored, options.force, max_chars)
        if document is None:
            summary.unchanged += 1
        else:
            pending.append(document)
    return pending, unreadable


def _changed(
    path: str, text: str, suffix: str, stem: str, stored: dict[str, str], force: bool, max_chars: int
) -> _Pending | None:
    """The document chunked, or None when it is stored with the same content (and not forced)."""
    content_hash = hashlib.sha256(text.encode()).hexdigest()
    if stored.get(path) == content_hash and not force:
        return None
    title, chunks = chunk_document(text, suffix, max_chars=max_chars)
    return _Pending(
        path=path,
        title=title or stem,
        content_hash=content_hash,
        content=text,
        chunks=[
            ChunkInput(i, chunk.heading, chunk.text, chunk.start_line, chunk.end_line, chunk.anchor)
            for i, chunk in enumerate(chunks)
        ],
    )


def _discover_all(
    roots: Sequence[Path], summary: IngestSummary, file_filter: FileFilter | None
) -> list[tuple[str, Path]]:
    """(stored path, file) for every file kept; with several roots, paths are prefixed by the root's name."""
    found: list[tuple[str, Path]] = []
    for root in roots:
        result = discover(root)
        prefix = f"{root.resolve().name}/" if len(roots) > 1 else ""
        kept = [item for item in result.files if file_filter is None or file_filter.allows(item.path)]
        found.extend((prefix + item.path, item.abspath) for item in kept)
        for path, reason in result.skipped:
            if file_filter is not None and not file_filter.allows(path):
                continue  # a link in `_static/` is no news when `_static/` is left out anyway
            summary.skipped += 1
            summary.skipped_files.append((str(path), reason))
    return found


def embedding_text(title: str, chunk: ChunkInput) -> str:
    """What gets embedded: the chunk with its title and heading path, which say what it is about."""
    context = " > ".join(part for part in (title, chunk.heading) if part)
    return f"{context}\n{chunk.text}" if context else chunk.text


async def _embed_and_write(
    writer: SourceWriter,
    embedder: Embedder,
    pending: list[_Pending],
    summary: IngestSummary,
    progress: ProgressFn | None,
) -> None:
    # Documents are grouped so that each embedding call is a full batch,
    # whatever the size of the files.
    total = len(pending)
    group: list[_Pending] = []
    group_chunks = 0
    done = 0
    for document in pending:
        group.append(document)
        group_chunks += len(document.chunks)
        if group_chunks >= embedder.batch_size:
            before = done
            done += await _flush(writer, embedder, group, summary)
            group, group_chunks = [], 0
            if progress:
                progress(done, total)
            if 10 * done // total > 10 * before // total:  # a log line per tenth, not per batch
                log.info("ingest_progress", source=summary.source, documents=done, total=total)
    if group:
        done += await _flush(writer, embedder, group, summary)
    if progress:
        progress(done, total)


async def _flush(writer: SourceWriter, embedder: Embedder, group: list[_Pending], summary: IngestSummary) -> int:
    texts = [embedding_text(document.title, chunk) for document in group for chunk in document.chunks]
    with tracing.span("ingest.embed", attributes={"docserver.chunks": len(texts)}):
        vectors = await embedder.embed(texts)
    with tracing.span("ingest.write", attributes={"docserver.documents": len(group)}):
        await _write_group(writer, group, vectors, summary)
    return len(group)


async def _write_group(writer: SourceWriter, group: list[_Pending], vectors: Vectors, summary: IngestSummary) -> None:
    offset = 0
    for document in group:
        count = len(document.chunks)
        await writer.put_document(
            DocumentInput(
                path=document.path,
                title=document.title,
                content_hash=document.content_hash,
                content=document.content,
                chunks=document.chunks,
                vectors=vectors[offset : offset + count],
            )
        )
        offset += count
        summary.chunks += count
