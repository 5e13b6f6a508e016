"""The local model on ONNX Runtime, int8: an export made on this machine from the model folder itself.

Nothing is fetched. The first time a model is asked for on ONNX Runtime, its
transformer is exported from the folder's own weights (torch.onnx, which the
`local` extra brings) and its matrix multiplications quantised to int8, with
weights per output channel (onnxruntime.quantization); the result is kept in
the model cache folder under a digest of the weights and of this recipe, so a
changed model or recipe makes a new export and a later start only loads it.
Encoding then needs ONNX Runtime and the model's tokenizer, not torch.

Only models that end in mean pooling (optionally normalised), like
all-MiniLM-L6-v2, run here; `unsupported` says why another one does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from docserver.observability.logging import get_logger

log = get_logger("docserver.embed")

RECIPE = "torch.onnx opset 17, dynamic int8 MatMul weights per channel, v1"
"""Part of the export's digest: change it when the export or the quantisation changes."""
EXPORT_FILE = "model_qint8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(Exception):
    """The export could not be made here (a missing package, a folder that cannot be written)."""


def transformer_folder(folder: Path) -> Path:
    """Where a sentence-transformers folder keeps its transformer (modules.json's first module)."""
    modules = _modules(folder)
    return folder / (modules[0].get("path", "") if modules else "")


def unsupported(folder: Path) -> str | None:
    """Why this model cannot run on ONNX Runtime here, or None when it can."""
    kinds = [module.get("type", "").rsplit(".", 1)[-1] for module in _modules(folder)]
    if kinds[:2] != ["Transformer", "Pooling"] or any(kind != "Normalize" for kind in kinds[2:]):
        return f"its modules are {kinds or 'not listed'}; ONNX runs a transformer with mean pooling"
    pooling = _modules(folder)[1].get("path", "")
    config = json.loads((folder / pooling / "config.json").read_text(encoding="utf-8"))
    modes = sorted(key for key, value in config.items() if key.startswith("pooling_mode") and value is True)
    if modes != ["pooling_mode_mean_tokens"]:
        return f"its pooling is {modes}; ONNX runs mean pooling"
    if not (transformer_folder(folder) / "tokenizer.json").is_file():
        return "it has no tokenizer.json"
    return None


def export_path(folder: Path, cache: Path, name: str) -> Path:
    """The export's file for this model: cache/<name>-<digest of weights and recipe>/model_qint8.onnx."""
    source = transformer_folder(folder)
    digest = hashlib.sha256(RECIPE.encode())
    for file in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = source / file
        if path.is_file():
            digest.update(file.encode())
            with path.open("rb") as stream:
                digest.update(hashlib.file_digest(stream, "sha256").digest())
    safe = "".join(char if char.isalnum() or char in "-_." else "_" for char in name)
    return cache / f"{safe}-{digest.hexdigest()[:16]}" / EXPORT_FILE


def ensure_export(folder: Path, cache: Path, name: str) -> Path:
    """The int8 export of the model in `folder`, made now (tens of seconds) unless already in `cache`."""
    target = export_path(folder, cache, name)
    if target.is_file():
        return target
    started = time.perf_counter()
    try:
        target.parent.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent.parent, prefix=".export-") as scratch:
            float_model = Path(scratch) / "model.onnx"
            staged = Path(scratch) / "final"
            staged.mkdir()
            with _quiet():
                _export(transformer_folder(folder), float_model)
                _quantize(float_model, staged / EXPORT_FILE)
            try:
                staged.rename(target.parent)  # atomic: a concurrent export of the same model may have won
            except OSError:
                if not target.is_file():
                    raise
    except ImportError as exc:
        raise ExportError(f"making the ONNX export needs {exc.name or 'torch and onnx'}") from None
    except OSError as exc:
        raise ExportError(f"cannot write the ONNX export under {cache} ({exc.strerror or exc})") from None
    log.info("local_model_exported", path=str(target), seconds=round(time.perf_counter() - started, 1))
    return target


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No tracer warnings, progress bars or advice from the exporters on the terminal or in the log stream.

    onnxruntime.quantization advises through the root logger, whose first use
    would install a handler of its own there when none is: one is lent for the export.
    """
    import transformers

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call, unused-ignore]
    transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call, unused-ignore]
    root = logging.getLogger()
    lent = logging.NullHandler() if not root.handlers else None
    if lent:
        root.addHandler(lent)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        if lent:
            root.removeHandler(lent)


def _export(source: Path, path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    class Encoder(torch.nn.Module):  # type: ignore[misc,unused-ignore]  # torch is Any where mypy runs without it (CI)
        """The transformer's last hidden state from the three inputs, named (transformers 5 wants keywords)."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            output = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return output.last_hidden_state

    model = AutoModel.from_pretrained(source, local_files_only=True).eval()
    sample = AutoTokenizer.from_pretrained(source, local_files_only=True)(
        ["an export", "a longer example sentence for the export"], padding=True, return_tensors="pt"
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "last_hidden_state")}
    with torch.inference_mode():
        torch.onnx.export(
            Encoder(model),
            tuple(sample[name] for name in INPUTS),
            str(path),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        per_channel=True,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


class OnnxModel:
    """A mean-pooling sentence-transformers model as an ONNX Runtime session of `threads` threads."""

    backend = "onnx"

    def __init__(self, folder: Path, export: Path, *, threads: int) -> None:
        import onnxruntime
        from onnxruntime.capi import onnxruntime_pybind11_state as state
        from tokenizers import Tokenizer

        self._failures: tuple[type[Exception], ...] = (state.Fail, state.InvalidArgument, state.RuntimeException)

        source = transformer_folder(folder)
        settings = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.max_seq_length = int(settings.get("max_seq_length") or 512)
        self._tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        self._tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
        self._session = onnxruntime.InferenceSession(str(export), options, providers=["CPUExecutionProvider"])
        self._feeds = {item.name for item in self._session.get_inputs()}
        self.dimension = int(json.loads((source / "config.json").read_text(encoding="utf-8"))["hidden_size"])
        # `threads` texts at a time, each pass on one thread: a pass of one text is too small to
        # share between threads (two threads in one pass gave 1.2 times one thread's chunks/s on
        # Python's docs, bench/local_ingest.py), while the session runs passes side by side.
        self._workers = ThreadPoolExecutor(threads, thread_name_prefix="embed-onnx") if threads > 1 else None

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's word pieces, special tokens included, cut at max_seq_length."""
        return [encoding.ids for encoding in self._tokenizer.encode_batch([text.strip() for text in texts])]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled vectors, one text per pass.

        int8 quantisation scales each pass's activations by their range, padding
        included, so a text in a padded pass would get a vector that depends on
        its neighbours. Alone it is always the same, has no padding to pay for,
        and one pass of one text was as fast per CPU second as passes of 4 or 16.
        """
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        ids = self.token_ids(texts)

        def one(index: int) -> None:
            rows[index] = self._pass([ids[index]])[0]

        if self._workers is None:
            for index in range(len(ids)):
                one(index)
        else:
            list(self._workers.map(one, range(len(ids))))
        return rows

    def close(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=True)

    def _pass(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(row) for row in ids)
        tokens = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, pieces in enumerate(ids):
            tokens[row, : len(pieces)] = pieces
            mask[row, : len(pieces)] = 1
        feeds = {"input_ids": tokens, "attention_mask": mask, "token_type_ids": np.zeros_like(tokens)}
        try:
            (hidden,) = self._session.run(["last_hidden_state"], {name: feeds[name] for name in self._feeds})
        except self._failures as exc:  # ONNX Runtime's own exception classes derive from Exception alone
            raise RuntimeError(str(exc)) from exc
        weights = mask[:, :, None].astype(np.float32)
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)  # type: ignore[no-any-return]


def _modules(folder: Path) -> list[dict[str, str]]:
    path = folder / "modules.json"
    if not path.is_file():
        return []
    modules: list[dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return modules
