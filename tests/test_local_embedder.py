"""The `local` embedder with the real all-MiniLM-L6-v2 model, in process and behind a real `docserver serve`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from mcp import Client
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conftest import CORPUS
from docserver.config import load_settings
from docserver.embed.base import BatchObserver, normalize
from docserver.embed.factory import open_embedder
from docserver.embed.local import (
    DEFAULT_MODEL_NAME,
    ENCODE_BATCH,
    LocalEmbedder,
    default_model_folder,
    model_label,
)
from docserver.errors import ConfigError, EmbeddingError
from docserver.observability.metrics import Metrics
from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver
from support.otlp_receiver import OtlpReceiver, SpanRecord

MODEL_CACHE = Path(tempfile.gettempdir()) / f"docserver-tests-model-cache-{os.getuid()}"
"""The ONNX export for every test here: a cache keyed by the weights' digest, made by the first run."""
LOCAL = {"DOCSERVER_EMBEDDER": "local", "OTEL_TRACES_EXPORTER": "none", "DOCSERVER_LOCAL_MODEL_CACHE": str(MODEL_CACHE)}


@pytest.fixture(scope="module")
def model() -> Iterator[LocalEmbedder]:
    """One loaded model on torch for the module: loading takes seconds."""
    embedder = LocalEmbedder(threads=1, batch_size=16, backend="torch")
    yield embedder
    asyncio.run(embedder.aclose())


@pytest.fixture
async def embedder(model: LocalEmbedder) -> AsyncIterator[LocalEmbedder]:
    # A fresh executor per test: each test has its own event loop.
    previous, model._executor = model._executor, type(model._executor)(1, thread_name_prefix="embed-local")
    previous.shutdown(wait=True)
    yield model


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


async def test_it_is_all_minilm_with_384_unit_vectors(embedder: LocalEmbedder) -> None:
    assert embedder.info.describe() == "local/all-MiniLM-L6-v2 (384 dimensions)"
    rows = await embedder.embed(["restore the database from last night's backup", "tune the journal flush"])
    assert rows.shape == (2, 384) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


async def test_a_paraphrase_is_nearer_than_a_shared_word(embedder: LocalEmbedder) -> None:
    """What the hash embedder cannot do: meaning over vocabulary."""
    query, paraphrase, same_words = await embedder.embed(
        [
            "my disk is almost full, what can I delete safely",
            "Retention: remove old segments to free storage space",
            "delete a user account and its safe deposit settings",
        ]
    )
    assert cosine(query, paraphrase) > cosine(query, same_words)


async def test_batches_give_the_same_vectors_as_single_queries(embedder: LocalEmbedder) -> None:
    texts = [f"question number {n} about replication lag" for n in range(20)]
    batched = await embedder.embed(texts)  # batch_size 16: two batches
    single = await embedder.embed_query(texts[17])
    assert np.allclose(batched[17], single, atol=1e-5)


def texts_of_every_length(count: int) -> list[str]:
    """Chunks from a heading alone to past the model's 256 word pieces, in no order of length."""
    sentence = "The broker keeps each partition's segments on disk until retention removes them. "
    return [f"Retention > part {n}\n" + sentence * ((n * 7) % 23) for n in range(count)]


async def test_short_sorted_passes_give_the_vectors_of_one_padded_pass(embedder: LocalEmbedder) -> None:
    """Padding is masked out: how texts are grouped into passes changes no vector beyond float noise."""
    texts = texts_of_every_length(40)
    one_pass = embedder._model.encode(texts, batch_size=len(texts))
    passes = await embedder.embed_batch(texts)
    assert np.allclose(passes, normalize(np.asarray(one_pass, dtype=np.float32)), atol=1e-5)


async def test_a_call_with_many_texts_encodes_at_most_a_few_at_a_time(embedder: LocalEmbedder) -> None:
    """Memory is that of ENCODE_BATCH texts, however many one call brings."""
    widths: list[tuple[int, int]] = []
    transformer = embedder._model.transformer
    forward = transformer.forward

    def recording(features: dict[str, object], *args: object, **kwargs: object) -> object:
        widths.append(tuple(features["input_ids"].shape))
        return forward(features, *args, **kwargs)

    transformer.forward = recording
    try:
        rows = await embedder.embed_batch(texts_of_every_length(3 * ENCODE_BATCH + 5))
    finally:
        del transformer.forward
    assert rows.shape == (3 * ENCODE_BATCH + 5, 384)
    assert [texts for texts, _ in widths] == [ENCODE_BATCH] * 3 + [5]
    assert max(length for _, length in widths) == 256  # the model reads 256 word pieces, no more
    assert [length for _, length in widths] == sorted((length for _, length in widths), reverse=True)


async def test_encoding_runs_on_its_own_thread_with_the_configured_torch_threads(embedder: LocalEmbedder) -> None:
    import torch

    seen: list[tuple[str, int]] = []
    transformer = embedder._model.transformer
    encode = transformer.encode

    def recording(*args: object, **kwargs: object) -> object:
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return encode(*args, **kwargs)

    transformer.encode = recording
    try:
        await embedder.embed_query("which port does the admin listener use")
    finally:
        del transformer.encode
    assert seen == [(seen[0][0], 1)]
    assert seen[0][0].startswith("embed-local") and seen[0][0] != threading.current_thread().name


async def test_the_event_loop_keeps_running_while_a_batch_encodes(embedder: LocalEmbedder) -> None:
    started = threading.Event()
    release = threading.Event()
    encode = embedder._model.encode

    def gated(*args: object, **kwargs: object) -> object:
        started.set()
        release.wait(10)
        return encode(*args, **kwargs)

    embedder._model.encode = gated
    try:
        task = asyncio.create_task(embedder.embed(["a long ingest batch"] * 8))
        await asyncio.to_thread(started.wait, 10)
        assert not task.done()  # the loop is here, answering, while the model works
        release.set()
        rows = await task
    finally:
        embedder._model.encode = encode
    assert rows.shape == (8, 384)


async def test_batches_are_measured_under_provider_local(embedder: LocalEmbedder) -> None:
    registry = CollectorRegistry()
    observer = BatchObserver(Metrics(registry=registry).for_embedder(), slow_seconds=60)
    # The loaded model, observed as open_embedder builds it (loading it again would take seconds).
    await observer.run(embedder, ["one", "two", "three"])
    labels = {"provider": "local", "model": DEFAULT_MODEL_NAME}
    assert registry.get_sample_value("docserver_embedding_duration_seconds_count", labels) == 1
    assert registry.get_sample_value("docserver_embedding_batch_size_sum", {"provider": "local"}) == 3


async def test_a_model_failure_is_an_embedding_error_with_a_closed_reason(embedder: LocalEmbedder) -> None:
    encode = embedder._model.encode

    def out_of_memory(*args: object, **kwargs: object) -> object:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    embedder._model.encode = out_of_memory
    try:
        with pytest.raises(EmbeddingError) as failure:
            await embedder.embed_query("anything")
    finally:
        embedder._model.encode = encode
    assert failure.value.reason == "model"


def test_the_bundled_folder_and_the_default_are_one_model() -> None:
    assert model_label("") == DEFAULT_MODEL_NAME
    assert model_label(str(default_model_folder())) == DEFAULT_MODEL_NAME
    assert model_label("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/no/such/model", "DOCSERVER_LOCAL_MODEL: folder /no/such/model does not exist"),
        ("acme/never-downloaded", "cannot load 'acme/never-downloaded' from this machine"),
    ],
)
def test_a_model_that_is_not_on_the_machine_is_a_clear_setting_error(model: str, message: str) -> None:
    settings = load_settings(embedding={"provider": "local", "local_model": model})
    with pytest.raises(ConfigError, match=message) as failure:
        open_embedder(settings)
    assert "\n" not in str(failure.value)


# --- through the command line and a real server ------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("local_embedder") / "docserver.db"
    result = run_cli("ingest", str(CORPUS), "--source", "corpus", env=docserver_env(path, LOCAL))
    assert result.returncode == 0, result.stderr
    return path


def test_the_cli_answers_a_paraphrase_with_the_local_model(database: Path) -> None:
    result = run_cli(
        "search", "how do I get my data back after a crash", "--limit", "3", env=docserver_env(database, LOCAL)
    )
    assert result.returncode == 0, result.stderr
    assert "guide/backup.mdx" in result.stdout
    assert "Loading weights" not in result.stderr  # no model-loading progress bars


def loaded_models(stderr: str) -> list[dict[str, object]]:
    """Every `local_model_loaded` line a command logged (JSON lines on stderr)."""
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == "local_model_loaded"]


def loaded_torch_threads(stderr: str) -> list[int]:
    """`threads` of every `local_model_loaded` line a command logged."""
    return [int(str(line["threads"])) for line in loaded_models(stderr)]


def ingest_one_file(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    page = tmp_path / "page.md"
    page.write_text("# Page\n\nOne short page to embed.\n", encoding="utf-8")
    env = docserver_env(tmp_path / "docserver.db", {**LOCAL, "LOG_LEVEL": "INFO", **extra})
    result = run_cli("ingest", str(page), "--source", "page", env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_ingest_gives_the_model_every_core_of_the_process(tmp_path: Path) -> None:
    result = ingest_one_file(tmp_path, {})
    assert loaded_torch_threads(result.stderr) == [len(os.sched_getaffinity(0))]


def test_docserver_ingest_torch_threads_sets_the_ingest_threads(tmp_path: Path) -> None:
    result = ingest_one_file(tmp_path, {"DOCSERVER_INGEST_TORCH_THREADS": "1", "DOCSERVER_TORCH_THREADS": "2"})
    assert loaded_torch_threads(result.stderr) == [1]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


@pytest.fixture(scope="module")
def server(database: Path, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("local_server") / "docserver.log"
    tracing = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACE_SAMPLE_RATE": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with start_docserver(docserver_env(database, {**LOCAL, **tracing}), log) as running:
        yield running


async def test_a_served_search_embeds_with_the_local_model_and_says_so_in_metrics_logs_and_spans(
    server: ServerProcess, receiver: OtlpReceiver
) -> None:
    async with Client(server.mcp_url, mode="auto") as client:
        result = await client.call_tool("search_docs", {"query": "make the broker keep messages on disk safely"})
    assert not result.is_error
    async with httpx.AsyncClient() as http:
        scrape = (await http.get(f"{server.url}/metrics", timeout=10)).text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }
    key = (
        "docserver_embedding_duration_seconds_count",
        (("model", DEFAULT_MODEL_NAME), ("provider", "local")),
    )
    assert samples[key] >= 1
    build = [name for name in samples if name[0] == "docserver_build_info"]
    assert build and dict(build[0][1])["embedder"] == "local"
    assert '"event": "local_model_loaded"' in server.logs() or '"event":"local_model_loaded"' in server.logs()

    def embedding_spans(spans: list[SpanRecord]) -> list[SpanRecord]:
        return [span for span in spans if span.name == f"embeddings {DEFAULT_MODEL_NAME}"]

    [span, *_] = await asyncio.to_thread(receiver.wait_for, embedding_spans, 15.0)
    assert span.kind == "CLIENT"
    assert span.attributes["gen_ai.provider.name"] == "local"
    assert span.attributes["docserver.embedding.batch_size"] == 1


def test_the_server_keeps_one_torch_thread(server: ServerProcess) -> None:
    """Serving shares the cores with request handling: DOCSERVER_TORCH_THREADS, 1 by default."""
    assert loaded_torch_threads(server.logs()) == [1]


def torch_imported_by_a_search(env: dict[str, str]) -> str:
    """`docserver search` in a fresh interpreter: whether torch and sentence-transformers were imported."""
    program = (
        "import sys\n"
        "from docserver.cli import main\n"
        "main(['search', 'snapshot'])\n"
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_the_built_in_embedder_never_imports_torch(tmp_path: Path) -> None:
    """The base install has no torch; the default path must not need it (nor pay its start-up)."""
    assert torch_imported_by_a_search(docserver_env(tmp_path / "docserver.db")) == "False False"


def test_the_server_runs_the_model_on_onnx_by_default(server: ServerProcess) -> None:
    """`auto` takes ONNX Runtime when it can run the model: the int8 export, about twice torch's speed."""
    assert [line["backend"] for line in loaded_models(server.logs())] == ["onnx"]


# --- the ONNX Runtime backend -------------------------------------------------


@pytest.fixture(scope="module")
def onnx() -> Iterator[LocalEmbedder]:
    embedder = LocalEmbedder(threads=1, batch_size=16, backend="onnx", cache=MODEL_CACHE)
    yield embedder
    asyncio.run(embedder.aclose())


def real_chunks(count: int) -> list[str]:
    """Chunks of this project's docs/ as ingest embeds them (title and heading path first), of every length."""
    from docserver.ingest.chunk import chunk_document
    from docserver.ingest.discover import read_text
    from docserver.ingest.pipeline import embedding_text
    from docserver.store.base import ChunkInput

    texts: list[str] = []
    for path in sorted((Path(__file__).resolve().parents[1] / "docs").glob("*.md")):
        title, chunks = chunk_document(read_text(path), ".md", max_chars=1500)
        texts += [
            embedding_text(title or path.stem, ChunkInput(n, c.heading, c.text, c.start_line, c.end_line))
            for n, c in enumerate(chunks)
        ]
    return texts[:: max(1, len(texts) // count)][:count]


async def test_onnx_gives_torchs_vectors_within_tolerance_on_real_text(
    embedder: LocalEmbedder, onnx: LocalEmbedder
) -> None:
    """The int8 export moves each vector a little (measured: cosine 0.97 at worst on Python's docs), never far."""
    texts = real_chunks(64)
    on_torch, on_onnx = await embedder.embed(texts), await onnx.embed(texts)
    agreement = (on_torch * on_onnx).sum(axis=1)
    assert agreement.min() > 0.95 and agreement.mean() > 0.985
    # What search sees: each chunk's nearest other chunk on torch is among its 3 nearest on ONNX.
    # (Not always the very nearest: sections of these docs that say nearly the same thing tie within
    # the quantisation's noise, and which of them comes first changes with the docs' own edits.)
    torch_nearest = np.argsort(-(on_torch @ on_torch.T), axis=1)[:, 1]
    onnx_nearest = np.argsort(-(on_onnx @ on_onnx.T), axis=1)[:, 1:4]
    assert np.mean([torch_nearest[n] in onnx_nearest[n] for n in range(len(texts))]) >= 0.95


async def test_onnx_reads_one_text_per_pass_up_to_the_models_word_pieces(onnx: LocalEmbedder) -> None:
    widths: list[tuple[int, int]] = []
    model = onnx._model
    run = model._pass

    def recording(ids: list[list[int]]) -> np.ndarray:
        widths.append((len(ids), max(len(row) for row in ids)))
        return run(ids)

    model._pass = recording
    try:
        rows = await onnx.embed_batch(texts_of_every_length(21))
    finally:
        del model._pass
    assert rows.shape == (21, 384)
    assert {texts for texts, _ in widths} == {1} and len(widths) == 21
    assert max(length for _, length in widths) == 256


async def test_on_onnx_a_texts_vector_does_not_depend_on_its_batch(onnx: LocalEmbedder) -> None:
    """No padding: an ingest batch and a query alone give one text the same vector."""
    texts = texts_of_every_length(12)
    batched = await onnx.embed(texts)
    for index in (0, 5, 11):
        assert np.allclose(batched[index], await onnx.embed_query(texts[index]), atol=1e-6)


async def test_onnx_with_two_threads_runs_passes_side_by_side_with_the_same_vectors(onnx: LocalEmbedder) -> None:
    """Ingest's threads: one single-threaded pass per thread, not two threads inside one small pass."""
    two = LocalEmbedder(threads=2, batch_size=16, backend="onnx", cache=MODEL_CACHE)
    seen: set[str] = set()
    run = two._model._pass

    def recording(ids: list[list[int]]) -> np.ndarray:
        seen.add(threading.current_thread().name.split("_")[0])
        return run(ids)

    two._model._pass = recording
    try:
        texts = texts_of_every_length(10)
        assert np.array_equal(await two.embed(texts), await onnx.embed(texts))
    finally:
        await two.aclose()
    assert seen == {"embed-onnx"}


def test_the_export_is_made_once_and_kept(tmp_path: Path) -> None:
    from docserver.embed.local_onnx import ensure_export

    folder = default_model_folder()
    first = ensure_export(folder, tmp_path, DEFAULT_MODEL_NAME)
    made = first.stat().st_mtime_ns
    assert ensure_export(folder, tmp_path, DEFAULT_MODEL_NAME) == first and first.stat().st_mtime_ns == made
    assert first.parent.name.startswith(f"{DEFAULT_MODEL_NAME}-") and [p.name for p in tmp_path.iterdir()] == [
        first.parent.name
    ]


def test_serving_on_onnx_never_imports_torch(tmp_path: Path) -> None:
    """With the export made, the model runs on ONNX Runtime and the tokenizer alone: torch's 400 MB stay out."""
    LocalEmbedder(backend="onnx", cache=MODEL_CACHE)  # the export exists before the command starts
    env = docserver_env(tmp_path / "docserver.db", {**LOCAL, "DOCSERVER_LOCAL_BACKEND": "onnx"})
    assert torch_imported_by_a_search(env) == "False False"


def without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "onnxruntime" or name.startswith("onnxruntime.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError


def test_onnx_asked_for_without_onnxruntime_is_a_clear_setting_error(monkeypatch: pytest.MonkeyPatch) -> None:
    without_onnxruntime(monkeypatch)
    settings = load_settings(embedding={"provider": "local", "local_backend": "onnx"})
    with pytest.raises(ConfigError, match=r"DOCSERVER_LOCAL_BACKEND=onnx: .*onnxruntime is not installed") as failure:
        open_embedder(settings)
    assert "\n" not in str(failure.value) and "pip install 'docserver[local]'" in str(failure.value)


def test_auto_without_onnxruntime_runs_on_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    without_onnxruntime(monkeypatch)
    embedder = LocalEmbedder(backend="auto", cache=MODEL_CACHE)
    assert embedder.backend == "torch"
    asyncio.run(embedder.aclose())


def test_an_export_that_cannot_be_written_is_a_clear_setting_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"DOCSERVER_LOCAL_BACKEND=onnx: .*cannot write the ONNX export under"):
        LocalEmbedder(backend="onnx", cache=blocker / "models")


def test_a_model_onnx_cannot_run_is_named_with_the_reason(tmp_path: Path) -> None:
    modules = [
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cannot run on ONNX: its modules are .*Dense"):
        LocalEmbedder(model=str(tmp_path), backend="onnx", cache=tmp_path / "cache")


@pytest.mark.parametrize(("value", "backend"), [("ONNX", "onnx"), ("torch", "torch"), ("auto", "auto")])
def test_the_backend_setting(monkeypatch: pytest.MonkeyPatch, value: str, backend: str) -> None:
    monkeypatch.setenv("DOCSERVER_LOCAL_BACKEND", value)
    assert load_settings().embedding.local_backend == backend


def test_an_unknown_backend_is_a_clear_setting_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCSERVER_LOCAL_BACKEND", "gpu")
    with pytest.raises(ConfigError, match="DOCSERVER_LOCAL_BACKEND"):
        load_settings()
