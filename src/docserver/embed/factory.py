"""open_embedder: the configured embedding provider, built from Settings."""

from __future__ import annotations

from pathlib import Path

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
    observer = BatchObserver(instruments, slow_seconds=settings.telemetry.slow_embedding_ms / 1000)
    if settings.embedding.provider == "hash":
        return HashEmbedder(observer=observer)
    if settings.embedding.provider == "local":
        from docserver.embed.local import LocalEmbedder  # torch is imported only when asked for

        cache = settings.embedding.local_model_cache
        return LocalEmbedder(
            model=settings.embedding.local_model,
            threads=settings.embedding.torch_threads,
            batch_size=settings.embedding.batch_size,
            observer=observer,
            backend=settings.embedding.local_backend,
            cache=Path(cache).expanduser() if cache else None,
        )
    api_key = settings.embedding.api_key
    return OpenAIEmbedder(
        base_url=settings.embedding.url,
        model=settings.embedding.model,
        api_key=api_key.get_secret_value() if api_key else None,
        dimension=settings.embedding.dimensions,
        batch_size=settings.embedding.batch_size,
        timeout=settings.embedding.timeout,
        max_retries=settings.embedding.max_retries,
        headers_hook=outbound_headers,
        observer=observer,
    )
