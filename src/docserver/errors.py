"""The errors docserver raises on purpose, each with a message meant for a person (or a model)."""

from __future__ import annotations


class DocserverError(Exception):
    """Base class: the message is shown as-is, as one line, with no traceback."""


class ConfigError(DocserverError):
    """A setting has a value that is not allowed."""


class SearchInputError(DocserverError):
    """A search asked for something it cannot have (an empty query, an unknown source): the caller's to fix."""


class StoreError(DocserverError):
    """The store failed or refused an operation."""


class EmbedderMismatchError(StoreError):
    """The store was built with another embedder than the one configured."""


class StoreBusyError(StoreError):
    """Another writer holds a lock the operation needs; the same call may succeed a moment later."""


class DocumentNotFoundError(StoreError):
    """No document has the requested id."""


class EmbeddingError(DocserverError):
    """The embedding provider failed.

    `reason` is one of a closed set (timeout, rate_limited, http_error,
    invalid_response, auth, not_found, connection, model) so it can label a metric.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class IngestError(DocserverError):
    """Ingestion cannot proceed (missing path, nothing to ingest)."""
