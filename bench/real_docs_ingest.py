"""Ingest speed on real documentation: `docserver ingest` of Python's HTML docs, and where its time goes.

    python bench/real_docs_ingest.py --label after [--rounds 3] [--trees before=/tmp/before/src after=src] \
        [--docs DIR] [--embedder hash] [--sample 0] [--stages] [--out bench/results/real_docs_ingest.json]

Each round runs `docserver ingest` on `--docs`, by default Python's HTML docs
(Debian's python3.11-doc, the 498 pages the default excludes keep), into a
fresh SQLite database, once per source tree of `--trees` (label=path to a `src` folder; the
trees take turns within a round, so a change in the machine's load falls on
each). A row has the chunks, the ingest's own seconds (the summary line's,
from the first file read to the commit, the interpreter's start-up left out),
chunks per second, the process's CPU seconds (start-up included) and the load
average. Run it at real-time priority (`flock /tmp/bench.lock chrt -r 10`), so
other work on the machine does not take its cores.

`--sample N` ingests every k-th page instead, k chosen to give about N chunks
(the pages copied to a folder first), for an embedder too slow for the whole
manual (`--embedder local`: the ONNX model, DOCSERVER_INGEST_TORCH_THREADS from
`--threads`).

`--stages` adds, per tree, the CPU time of each stage in one process, without
the CLI: reading, parsing (HTML, Markdown...), chunk_document (parsing again,
then sections and packing: the packing is the difference, too small to read
reliably from two passes), the `hash` embedder on every chunk. The store's writes are
most of the rest of the ingest.

A `--trees` copy of an older commit, outside git, names the commit after `@`:
`git archive 61864b0 src | tar -x -C /tmp/before`, then `--trees before=/tmp/before/src@61864b0`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import save_labelled

ROOT = Path(__file__).resolve().parents[1]
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")

STAGES = r"""
import asyncio, json, sys, time
from pathlib import Path
from docserver.embed.hashing import HashEmbedder
from docserver.ingest.chunk import chunk_document
from docserver.ingest.discover import discover, read_text
from docserver.ingest.formats import parse
from docserver.ingest.pipeline import embedding_text
from docserver.sources.filters import FileFilter
from docserver.store.base import ChunkInput

root = Path(sys.argv[1])
keep = FileFilter()
files = [item.abspath for item in discover(root).files if keep.allows(item.path)]
clock = time.process_time
started = clock(); texts = [(path, read_text(path)) for path in files]; read = clock() - started
started = clock(); [parse(text, path.suffix) for path, text in texts]; parsing = clock() - started
started = clock(); documents = [(path, *chunk_document(text, path.suffix)) for path, text in texts]
chunking = clock() - started  # parsing again, then sections and packing
inputs = [
    embedding_text(title or path.stem, ChunkInput(i, c.heading, c.text, c.start_line, c.end_line))
    for path, title, chunks in documents for i, c in enumerate(chunks)
]
started = clock(); asyncio.run(HashEmbedder().embed(inputs)); embedding = clock() - started
print(json.dumps({"files": len(files), "chunks": len(inputs), "read_cpu_s": round(read, 2),
    "parse_cpu_s": round(parsing, 2), "chunk_document_cpu_s": round(chunking, 2),
    "hash_embed_cpu_s": round(embedding, 2)}))
"""


def sample_pages(source: Path, chunks: int, folder: Path, python: str, src: Path) -> Path:
    """A copy of every k-th kept page of `source`, k giving about `chunks` chunks (counted with tree `src`)."""
    count = (
        "import sys, json; from pathlib import Path; from docserver.ingest.discover import discover, read_text; "
        "from docserver.ingest.chunk import chunk_document; from docserver.sources.filters import FileFilter; "
        "keep = FileFilter(); files = [i for i in discover(Path(sys.argv[1])).files if keep.allows(i.path)]; "
        "print(json.dumps([[i.path, len(chunk_document(read_text(i.abspath), i.abspath.suffix)[1])] for i in files]))"
    )
    done = subprocess.run([python, "-c", count, str(source)], env=_env(src), capture_output=True, text=True, check=True)
    counts: list[tuple[str, int]] = json.loads(done.stdout)
    step = max(1, round(sum(n for _, n in counts) / chunks))
    for path, _ in counts[::step]:
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / path, target)
    return folder


def _env(src: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DOCSERVER_", "OTEL_", "LOG_"))}
    return env | {"PYTHONPATH": str(src), "LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"} | (extra or {})


def ingest_once(docs: Path, src: Path, work: Path, extra: dict[str, str]) -> dict[str, float]:
    database = work / "ingest.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    env = _env(src, {"DOCSERVER_DATABASE_URL": f"sqlite:///{database}", **extra})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "docserver", "ingest", str(docs), "--source", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-2000:])
    found = re.search(r"(\d+) chunks embedded in ([\d.]+) s", done.stdout)
    if found is None:
        raise RuntimeError(f"no summary line in: {done.stdout!r}")
    chunks, seconds = int(found[1]), float(found[2])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "chunks": chunks,
        "ingest_seconds": seconds,
        "chunks_per_s": round(chunks / seconds, 1),
        "process_seconds": round(wall, 2),
        "process_cpu_seconds": round(cpu, 2),
        "machine_load_1m": round(os.getloadavg()[0], 2),
    }


def stages(docs: Path, src: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", STAGES, str(docs)], env=_env(src), capture_output=True, text=True, check=True
    )
    row: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def commit(src: Path) -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "."], cwd=src, check=False).returncode
    return done.stdout.strip() + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="the run's name in the results file")
    parser.add_argument("--docs", type=Path, default=PYTHON_DOCS, help="the folder to ingest")
    parser.add_argument(
        "--trees", nargs="+", default=[f"current={ROOT / 'src'}"], help="label=path of a src folder[@commit it holds]"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embedder", choices=["hash", "local"], default="hash")
    parser.add_argument("--threads", type=int, default=2, help="DOCSERVER_INGEST_TORCH_THREADS for --embedder local")
    parser.add_argument("--model-cache", type=Path, default=ROOT / "build/model-cache", help="the ONNX export")
    parser.add_argument("--sample", type=int, default=0, help="about this many chunks of the docs (0: every page)")
    parser.add_argument("--stages", action="store_true", help="also time each stage in one process (hash)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/real_docs_ingest.json")
    args = parser.parse_args()
    named = [tree.split("=", 1) for tree in args.trees]
    trees = {label: Path(path.split("@")[0]).resolve() for label, path in named}
    commits = {label: path.split("@")[1] if "@" in path else commit(trees[label]) for label, path in named}
    extra = {"DOCSERVER_EMBEDDER": args.embedder}
    if args.embedder == "local":
        extra |= {
            "DOCSERVER_LOCAL_BACKEND": "onnx",
            "DOCSERVER_LOCAL_MODEL_CACHE": str(args.model_cache),
            "DOCSERVER_INGEST_TORCH_THREADS": str(args.threads),
        }
    with tempfile.TemporaryDirectory(prefix="docserver-real-ingest-") as folder:
        work = Path(folder)
        docs = args.docs
        if args.sample:
            docs = sample_pages(docs, args.sample, work / "sample", sys.executable, next(iter(trees.values())))
        measured: dict[str, object] = {
            "label": args.label,
            "embedder": args.embedder,
            "docs": str(args.docs),
            "sample": args.sample or None,
            "cpus": len(os.sched_getaffinity(0)),
            "trees": commits,
            "rows": [],
        }
        if args.embedder == "local":
            measured["threads"] = args.threads
        for round_number in range(1, args.rounds + 1):
            for label, src in trees.items():
                row = {"tree": label, "round": round_number, **ingest_once(docs, src, work, extra)}
                measured["rows"].append(row)  # type: ignore[attr-defined]
                print(json.dumps(row), flush=True)
        if args.stages:
            measured["stages"] = {label: stages(docs, src) for label, src in trees.items()}
            print(json.dumps(measured["stages"]), flush=True)
    save_labelled(args.out, args.label, measured)


if __name__ == "__main__":
    main()
