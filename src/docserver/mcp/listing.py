"""What list_sources shows: each source with its versions, their counts and freshness, bounded.

The listing goes to whoever may call the tool, so an origin or an error
message never carries a credential (a token in a git URL, a password in a
query string), and its size is capped whatever the store holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from docserver.observability.redaction import without_credentials
from docserver.store.base import SourceInfo, SourceRecord
from docserver.versions import Catalog

MAX_LISTED_SOURCES = 200
MAX_LISTED_VERSIONS = 20
MAX_ERROR_CHARS = 300


class SourceVersion(BaseModel):
    version: str | None = Field(description="Pass as search_docs `version`; null when ingested without a label.")
    stored_as: str = Field(description="The `source` that search results from this version carry, e.g. 'python@3.12'.")
    documents: int
    chunks: int
    updated_at: str = Field(description="When its documents last changed (UTC).")
    origin: str | None = Field(description="Where it is fetched from: a folder, or a git URL. Null if not recorded.")
    revision: str | None = Field(description="The git commit its documents come from, for a repository.")
    refreshed_at: str | None = Field(description="Its last successful ingest or refresh (UTC); null if not recorded.")
    last_error: str | None = Field(description="Why its latest refresh failed; null once one has succeeded since.")


class Source(BaseModel):
    name: str = Field(description="Pass as search_docs `source`.")
    versions: list[SourceVersion] = Field(
        description="Newest first: search_docs without `version` reads the first one only."
    )
    older_versions_not_listed: int = Field(0, description=f"Versions beyond the {MAX_LISTED_VERSIONS} listed.")


class SourceList(BaseModel):
    sources: list[Source]
    sources_not_listed: int = Field(0, description=f"Sources beyond the {MAX_LISTED_SOURCES} listed.")


def source_list(sources: list[SourceInfo], records: Mapping[str, SourceRecord]) -> SourceList:
    """The listing of `sources` (already limited to what the caller may read), with their `records` by name."""
    grouped = sorted(Catalog.of(sources).versions.items())
    listed = [
        Source(
            name=name,
            versions=[_version(info, records.get(info.name)) for info in infos[:MAX_LISTED_VERSIONS]],
            older_versions_not_listed=max(len(infos) - MAX_LISTED_VERSIONS, 0),
        )
        for name, infos in grouped[:MAX_LISTED_SOURCES]
    ]
    return SourceList(sources=listed, sources_not_listed=max(len(grouped) - MAX_LISTED_SOURCES, 0))


def _version(info: SourceInfo, record: SourceRecord | None) -> SourceVersion:
    error = record.last_error if record is not None else None
    return SourceVersion(
        version=info.version,
        stored_as=info.name,
        documents=info.documents,
        chunks=info.chunks,
        updated_at=info.updated_at,
        origin=without_credentials(record.origin) if record is not None and record.origin else None,
        revision=record.revision if record is not None else None,
        refreshed_at=record.refreshed_at if record is not None else None,
        last_error=without_credentials(error)[:MAX_ERROR_CHARS] if error else None,
    )
