"""The local model's ingest speed on real documentation: chunks per second and peak memory.

    python bench/local_ingest.py --label after [--python-docs DIR] [--sample 1200] [--threads 1 2] \
        [--backends torch onnx] [--model-cache DIR]

Chunks real docs exactly as `docserver ingest` does (same chunker, default
DOCSERVER_CHUNK_MAX_CHARS, the same title and heading path before each chunk):
this repository's docs/ and Python's HTML docs from Debian's python3.11-doc,
of which every k-th file is taken until about `--sample` chunks (whole files,
so batches hold neighbouring chunks as in a real ingest). Then it embeds them
with LocalEmbedder.embed, as ingest does (DOCSERVER_EMBEDDING_BATCH_SIZE texts
per batch). The chunking and the SQLite writes are left out: they are a few
percent of a local-model ingest.

Every run is made with each backend of `--backends` (DOCSERVER_LOCAL_BACKEND:
torch, or ONNX Runtime on the int8 export, which is made first, untimed, into
`--model-cache` when it is not there yet; `load_seconds` is the model's load).

Each run is its own process, so its peak RSS (ru_maxrss, model included) is
its own. A run named `one_call_N` hands N texts to embed_batch in one call:
the memory a caller that ignores batch_size can cause. Rows are merged into
the results file under `--label` (with the commit measured), so the rows of
the code before a change stay next to the rows after it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import psutil

from docserver.embed.local import LocalEmbedder
from docserver.embed.local_onnx import OnnxModel
from docserver.ingest.chunk import chunk_document
from docserver.ingest.discover import discover, read_text
from docserver.ingest.pipeline import embedding_text
from docserver.store.base import ChunkInput
from harness import save_labelled

ROOT = Path(__file__).resolve().parents[1]
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
MAX_CHARS = 1500  # DOCSERVER_CHUNK_MAX_CHARS's default
BATCH_SIZE = 64  # DOCSERVER_EMBEDDING_BATCH_SIZE's default


def document_texts(path: Path) -> list[str]:
    title, chunks = chunk_document(read_text(path), path.suffix.lower(), max_chars=MAX_CHARS)
    name = title or path.stem
    return [
        embedding_text(name, ChunkInput(i, c.heading, c.text, c.start_line, c.end_line)) for i, c in enumerate(chunks)
    ]


def corpus_texts(root: Path, sample: int | None) -> list[str]:
    """Every chunk under `root`, or those of every k-th file, k chosen to give about `sample` chunks."""
    files = sorted(item.abspath for item in discover(root).files)
    per_file = [document_texts(path) for path in files]
    total = sum(len(texts) for texts in per_file)
    step = max(1, round(total / sample)) if sample else 1
    return [text for texts in per_file[::step] for text in texts]


def run_one(
    corpus: str, root: Path, sample: int | None, threads: int, one_call: int, backend: str, cache: Path
) -> dict[str, object]:
    texts = corpus_texts(root, sample)
    if one_call:
        texts = (texts * (one_call // len(texts) + 1))[:one_call]
    loading = time.perf_counter()
    embedder = LocalEmbedder(threads=threads, batch_size=BATCH_SIZE, backend=backend, cache=cache)  # type: ignore[arg-type]
    load_seconds = time.perf_counter() - loading
    limit = embedder._model.max_seq_length
    tokens = [len(ids) for ids in embedder._model.token_ids(texts)]
    untruncated = [len(ids) for ids in _untruncated(embedder, texts)]
    loaded_rss = psutil.Process().memory_info().rss / 2**20
    started, cpu_started = time.perf_counter(), time.process_time()
    vectors = asyncio.run(embedder.embed_batch(texts) if one_call else embedder.embed(texts))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    asyncio.run(embedder.aclose())
    return {
        "corpus": corpus if not one_call else f"{corpus}/one_call_{one_call}",
        "backend": embedder.backend,
        "torch_threads": threads,
        "chunks": len(vectors),
        "mean_chars": round(statistics.mean(len(text) for text in texts)),
        "mean_word_pieces": round(statistics.mean(untruncated)),
        "mean_word_pieces_read": round(statistics.mean(tokens)),
        "truncated_share": round(sum(count > limit for count in untruncated) / len(untruncated), 3),
        "load_seconds": round(load_seconds, 2),
        "max_seq_length": limit,
        "seconds": round(seconds, 2),
        "chunks_per_s": round(len(vectors) / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 2),
        "chunks_per_cpu_s": round(len(vectors) / cpu_seconds, 1),
        "machine_load_1m": round(os.getloadavg()[0], 2),
        "rss_after_load_mb": round(loaded_rss),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _untruncated(embedder: LocalEmbedder, texts: list[str]) -> list[list[int]]:
    """Each text's word pieces before the model's cut (the tokenizer of either backend, told no limit)."""
    model = embedder._model
    if isinstance(model, OnnxModel):
        model._tokenizer.no_truncation()
        try:
            return model.token_ids(texts)
        finally:
            model._tokenizer.enable_truncation(max_length=model.max_seq_length)
    ids: list[list[int]] = model.transformer.tokenizer(texts, add_special_tokens=True)["input_ids"]  # type: ignore[attr-defined]
    return ids


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return os.environ.get("BENCH_COMMIT", "unknown")  # a copy outside the repository, e.g. `git archive`
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src"], cwd=ROOT, check=False).returncode
    return done.stdout.strip() + ("+changes" if dirty else "")


def child(args: list[str]) -> dict[str, object]:
    """One run in a fresh process: its own model, its own peak RSS."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "child failed")
    row: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="", help="the rows' name in the results file, e.g. before / after")
    parser.add_argument("--python-docs", type=Path, default=PYTHON_DOCS)
    parser.add_argument("--sample", type=int, default=1200, help="about this many chunks of Python's docs")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    parser.add_argument("--model-cache", type=Path, default=ROOT / "build/model-cache", help="the ONNX export's folder")
    parser.add_argument("--one-call", type=int, default=512, help="texts in the one-call memory run (0: skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/local_ingest.json")
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        corpus, root, sample, threads, one_call, backend, cache = args.child
        row = run_one(corpus, Path(root), int(sample) or None, int(threads), int(one_call), backend, Path(cache))
        print(json.dumps(row))
        return
    if not args.label:
        parser.error("--label is required")
    if "onnx" in args.backends:  # the export is made once, untimed: a first start's cost, not ingest's
        # In a process of its own: a child inherits its parent's peak RSS across fork and exec.
        make = "import sys, pathlib; from docserver.embed.local import LocalEmbedder; "
        make += "LocalEmbedder(backend='onnx', cache=pathlib.Path(sys.argv[1]))"
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        subprocess.run([sys.executable, "-c", make, str(args.model_cache)], env=env, check=True, capture_output=True)
    shapes: list[tuple[object, ...]] = [("docs", ROOT / "docs", 0, threads, 0) for threads in args.threads]
    shapes += [("python3.11-doc", args.python_docs, args.sample, threads, 0) for threads in args.threads]
    if args.one_call:
        shapes.append(("python3.11-doc", args.python_docs, args.sample, max(args.threads), args.one_call))
    # The backends take turns on each shape, so a change in the machine's load falls on both.
    runs = [(*shape, backend, args.model_cache) for shape in shapes for backend in args.backends]
    measured = {"label": args.label, "commit": commit(), "cpus": os.cpu_count(), "rows": []}
    for run in runs:
        row = child([str(part) for part in run])
        measured["rows"].append(row)  # type: ignore[attr-defined]
        print(json.dumps(row), flush=True)
    save_labelled(args.out, args.label, measured)


if __name__ == "__main__":
    main()
