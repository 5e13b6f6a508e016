"""Search quality on an evaluation set: hit@1, hit@3 and MRR per retriever and embedder.

The built-in set ships with docserver (corpus/ and questions.toml beside this
module): documentation of four fictional products and questions with known
answer files, half of them paraphrases that share few words with their
answer. Two sets over real documentation ship too (realdocs/): Python's and
PostgreSQL's HTML docs as Debian packages them, read where the package put
them. For each embedder the corpus is ingested into a throwaway SQLite store
and every question is asked three ways: BM25 alone, vectors alone, and the
fusion the server uses for that embedder. A question scores by file: the
results are read in order as an assistant reads `search_docs`, each file
counted where it first appears, and the question scores the rank of its
answer file among the first `DEPTH` files (hit@1, hit@3, and 1/rank for MRR).

Every other question of each kind belongs to the `tune` half, the rest to the
`test` half: ranking choices are made on one and reported on the other.
"""

from __future__ import annotations

import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from docserver.binding import bind_embedder
from docserver.config import Settings
from docserver.embed.base import Embedder
from docserver.embed.factory import open_embedder
from docserver.errors import DocserverError
from docserver.ingest.pipeline import IngestOptions, ingest
from docserver.search import MAX_LIMIT, TEXT_ONLY, VECTOR_ONLY, Fusion, SearchService
from docserver.sources.filters import FileFilter
from docserver.store.sqlite import SqliteStore

DEPTH = 10
"""Files read per question: MRR counts a hit up to this rank."""
KINDS = ("easy", "paraphrase")
HALVES = ("tune", "test")
SETS = ("builtin", "python", "postgresql")
"""The question sets that ship with docserver; `--questions` also takes a file."""
SOURCE = "eval"


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    kind: str
    query: str
    answers: tuple[str, ...]
    half: str = "tune"


@dataclass(frozen=True, slots=True)
class QuestionSet:
    """Questions and the folder of documents that answers them."""

    name: str
    corpus: Path
    questions: list[Question]


@dataclass(frozen=True, slots=True)
class Scores:
    """hit@1, hit@3 and MRR over some questions (fractions, 0 to 1)."""

    questions: int
    hit1: float
    hit3: float
    mrr: float

    @classmethod
    def of(cls, ranks: Sequence[int | None]) -> Scores:
        count = len(ranks)
        if not count:
            return cls(0, 0.0, 0.0, 0.0)
        return cls(
            count,
            sum(1 for rank in ranks if rank is not None and rank <= 1) / count,
            sum(1 for rank in ranks if rank is not None and rank <= 3) / count,
            sum(1.0 / rank for rank in ranks if rank is not None) / count,
        )


@dataclass(slots=True)
class Run:
    """One embedder and one way of ranking over every question: the rank of each answer."""

    embedder: str
    retriever: str
    fusion: str
    ranks: dict[str, int | None] = field(default_factory=dict)

    def scores(self, questions: Iterable[Question], kind: str | None = None, half: str | None = None) -> Scores:
        chosen = [q for q in questions if kind in (None, q.kind) and half in (None, q.half)]
        return Scores.of([self.ranks[q.id] for q in chosen])


@dataclass(slots=True)
class Report:
    name: str
    questions: list[Question]
    documents: int
    runs: list[Run]
    embedders: dict[str, str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "set": self.name,
            "questions": {kind: sum(1 for q in self.questions if q.kind == kind) for kind in KINDS},
            "documents": self.documents,
            "depth": DEPTH,
            "seconds": round(self.seconds, 1),
            "runs": [
                {
                    "embedder": run.embedder,
                    "model": self.embedders[run.embedder],
                    "retriever": run.retriever,
                    "fusion": run.fusion,
                    "scores": {
                        name: _rounded(run.scores(self.questions, kind))
                        for name, kind in (("all", None), ("easy", "easy"), ("paraphrase", "paraphrase"))
                    },
                    "halves": {
                        half: {kind: _rounded(run.scores(self.questions, kind, half)) for kind in KINDS}
                        for half in HALVES
                    },
                    "misses": sorted(qid for qid, rank in run.ranks.items() if rank is None or rank > 3),
                }
                for run in self.runs
            ],
        }


def _rounded(scores: Scores) -> dict[str, float]:
    return {"hit@1": round(scores.hit1, 4), "hit@3": round(scores.hit3, 4), "mrr": round(scores.mrr, 4)}


def corpus_folder() -> Path:
    return Path(str(resources.files(__package__).joinpath("corpus")))


def load_questions(path: Path | None = None) -> list[Question]:
    """The questions of questions.toml (or of the file at `path`), checked against their corpus."""
    source = path or Path(str(resources.files(__package__).joinpath("questions.toml")))
    return load_question_set(str(source)).questions


def load_question_set(name: str) -> QuestionSet:
    """A set that ships (`SETS`) or a questions file: unique ids, known kinds, answers that exist.

    A file names its corpus folder with a top-level `corpus` key (and the
    package that installs it with `package`); without one, the built-in corpus.
    """
    builtin = resources.files(__package__)
    if name in SETS:
        path = Path(str(builtin.joinpath("questions.toml" if name == "builtin" else f"realdocs/{name}.toml")))
    else:
        path = Path(name)
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DocserverError(f"cannot read questions from {path}: {exc}") from None
    corpus = Path(raw["corpus"]) if "corpus" in raw else corpus_folder()
    if not corpus.is_dir():
        package = f" (install Debian's {raw['package']})" if "package" in raw else ""
        raise DocserverError(f"{path}: the corpus folder {corpus} does not exist{package}")
    try:
        listed = [Question(q["id"], q["kind"], q["query"], tuple(q["answers"])) for q in raw["question"]]
    except (KeyError, TypeError):
        raise DocserverError(f"{path}: each [[question]] needs an id, a kind, a query and answers") from None
    questions = _halved(listed)
    _check(path, corpus, questions)
    return QuestionSet(name if name in SETS else path.stem, corpus, questions)


def _halved(questions: list[Question]) -> list[Question]:
    """Every other question of each kind in the `tune` half, in the order written."""
    seen = dict.fromkeys(KINDS, 0)
    halved = []
    for q in questions:
        index = seen.get(q.kind, 0)
        seen[q.kind] = index + 1
        halved.append(Question(q.id, q.kind, q.query, q.answers, HALVES[index % 2]))
    return halved


def _check(source: Path, corpus: Path, questions: list[Question]) -> None:
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise DocserverError(f"{source}: question ids repeat")
    for q in questions:
        if q.kind not in KINDS:
            raise DocserverError(f"{source}: question {q.id}: kind must be one of {', '.join(KINDS)}")
        missing = [answer for answer in q.answers if not (corpus / answer).is_file()]
        if missing:
            raise DocserverError(f"{source}: question {q.id}: no such answer file {', '.join(missing)}")


async def evaluate(
    settings: Settings,
    embedders: Sequence[str],
    *,
    fusions: Sequence[Fusion] = (),
    questions: str = "builtin",
) -> Report:
    """Score BM25 alone, vectors alone and each embedder's fusion (plus `fusions`) for every embedder named."""
    started = time.perf_counter()
    chosen = load_question_set(questions)
    runs: list[Run] = []
    models: dict[str, str] = {}
    documents = 0
    for name in embedders:
        embedder = open_embedder(settings.replace(embedding={"provider": name}))
        try:
            with tempfile.TemporaryDirectory(prefix="docserver-eval-") as folder:
                store = SqliteStore(Path(folder) / "eval.db")
                await store.open()
                try:
                    documents = await ingest_corpus(store, embedder, settings, chosen.corpus)
                    models[name] = embedder.info.describe()
                    service = SearchService(store, embedder, cache_size=0)
                    ways = [("bm25", TEXT_ONLY), ("vector", VECTOR_ONLY), ("fusion", service.fusion)]
                    ways += [("candidate", fusion) for fusion in fusions if fusion != service.fusion]
                    for retriever, fusion in ways:
                        runs.append(await _run(service, name, retriever, fusion, chosen.questions))
                finally:
                    await store.close()
        finally:
            await embedder.aclose()
    return Report(chosen.name, chosen.questions, documents, runs, models, time.perf_counter() - started)


async def ingest_corpus(store: SqliteStore, embedder: Embedder, settings: Settings, corpus: Path) -> int:
    """Ingest `corpus` as `docserver ingest` would (its default file filter too); the number of files."""
    await bind_embedder(store, embedder)
    options = IngestOptions(file_filter=FileFilter())
    summary = await ingest(store, embedder, [corpus], SOURCE, max_chars=settings.store.chunk_max_chars, options=options)
    return summary.files


async def _run(service: SearchService, embedder: str, retriever: str, fusion: Fusion, questions: list[Question]) -> Run:
    run = Run(embedder, retriever, fusion.describe())
    for q in questions:
        hits = await service.ranked(q.query, source=SOURCE, limit=MAX_LIMIT, fusion=fusion)
        files = list(dict.fromkeys(hit.path for hit in hits))[:DEPTH]
        run.ranks[q.id] = next((rank for rank, path in enumerate(files, start=1) if path in q.answers), None)
    return run


def render(report: Report) -> str:
    """The scores as a table a person reads: one row per embedder and retriever."""
    counts = ", ".join(f"{sum(1 for q in report.questions if q.kind == kind)} {kind}" for kind in KINDS)
    lines = [
        f"{report.name}: {len(report.questions)} questions ({counts}) over {report.documents} documents; "
        f"scored by file: the rank of the answer file among the files of the results (MRR: first {DEPTH})",
        "",
        f"{'embedder':<9} {'retriever':<10} {'all hit@1':>9} {'hit@3':>6} {'MRR':>6}   "
        f"{'easy hit@3':>10}   {'paraphrase hit@1':>16} {'hit@3':>6} {'MRR':>6}",
    ]
    for run in report.runs:
        total = run.scores(report.questions)
        easy = run.scores(report.questions, "easy")
        para = run.scores(report.questions, "paraphrase")
        label = run.retriever if run.retriever != "candidate" else run.fusion
        lines.append(
            f"{run.embedder:<9} {label:<10} {total.hit1:>9.1%} {total.hit3:>6.1%} {total.mrr:>6.3f}   "
            f"{easy.hit3:>10.1%}   {para.hit1:>16.1%} {para.hit3:>6.1%} {para.mrr:>6.3f}"
        )
    lines.append("")
    fusions = {run.embedder: run.fusion for run in report.runs if run.retriever == "fusion"}
    lines.extend(f"{name}: {model}; fusion {fusions[name]}" for name, model in report.embedders.items())
    lines.append(f"took {report.seconds:.1f} s")
    return "\n".join(lines)
