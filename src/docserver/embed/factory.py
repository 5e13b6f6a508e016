"""open_embedder: the configured embedding provider, built from Settings."""

from __future__ import annotations

from docserver.config import Settings
from docserver.embed.base import BatchObserver, Embedder
from docserver.embed.hashing import HashEmbedder
from docserver.embed.openai import OpenAIEmbedder
from docserver.observability.instruments import EmbedderInstruments
from docserver.observability.propagation import outbound_headers


def open_embedder(settings: Settings, instruments: EmbedderInstruments | None = None) -> Embedder:
    """The embedder `DOCSERVER_EMBEDDER` names; the caller closes it with `aclose()`.

    An `openai` embedder without `DOCSERVER_EMBEDDING_DIMENSIONS` learns its size
    on first use: await `resolve_dimension()` before reading `info`.
    """
    observer = BatchObserver(instruments, slow_seconds=settings.slow_embedding_ms / 1000)
    if settings.embedder == "hash":
        return HashEmbedder(observer=observer)
    if settings.embedder == "local":
        from docserver.embed.local import LocalEmbedder  # torch is imported only when asked for

        return LocalEmbedder(
            model=settings.local_model,
            threads=settings.torch_threads,
            batch_size=settings.embedding_batch_size,
            observer=observer,
        )
    api_key = settings.embedding_api_key
    return OpenAIEmbedder(
        base_url=settings.embedding_url,
        model=settings.embedding_model,
        api_key=api_key.get_secret_value() if api_key else None,
        dimension=settings.embedding_dimensions,
        batch_size=settings.embedding_batch_size,
        timeout=settings.embedding_timeout,
        max_retries=settings.embedding_max_retries,
        headers_hook=outbound_headers,
        observer=observer,
    )
