"""The evaluation set and `docserver eval`: the fusion rules and the quality goals, judged on the real model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from docserver.config import load_settings
from docserver.errors import DocserverError
from docserver.evaluation.runner import (
    HALVES,
    KINDS,
    Report,
    Run,
    corpus_folder,
    evaluate,
    load_question_set,
    load_questions,
)
from support.docserver_process import docserver_env, run_cli

EMBEDDERS = ("hash", "local")
METRICS = ("hit1", "hit3", "mrr")


@pytest.fixture(scope="module")
def report() -> Report:
    return asyncio.run(evaluate(load_settings(), EMBEDDERS))


def run_of(report: Report, embedder: str, retriever: str) -> Run:
    return next(run for run in report.runs if (run.embedder, run.retriever) == (embedder, retriever))


def test_the_set_is_large_enough_and_half_paraphrases() -> None:
    questions = load_questions()
    documents = [path for path in corpus_folder().rglob("*") if path.suffix in {".md", ".rst"}]
    paraphrases = [q for q in questions if q.kind == "paraphrase"]
    assert len(documents) >= 30
    assert len(questions) >= 60
    assert len(paraphrases) * 2 >= len(questions)
    answered = {answer for q in questions for answer in q.answers}
    assert len(answered) >= 30  # the questions spread over the corpus


def test_a_question_with_an_unknown_answer_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "questions.toml"
    broken.write_text('[[question]]\nid = "x"\nkind = "easy"\nquery = "q"\nanswers = ["nope.md"]\n')
    with pytest.raises(Exception, match=r"no such answer file nope\.md"):
        load_questions(broken)


@pytest.mark.parametrize("name", ["python", "postgresql"])
def test_the_real_docs_sets_ask_easy_questions_and_paraphrases_of_the_installed_docs(name: str) -> None:
    chosen = load_question_set(name)  # checks that every answer file is in the installed package
    assert chosen.corpus.is_dir()
    assert [sum(1 for q in chosen.questions if q.kind == kind) for kind in KINDS] == [24, 24]


@pytest.mark.parametrize("name", ["builtin", "python", "postgresql"])
def test_every_set_splits_each_kind_into_equal_tune_and_test_halves(name: str) -> None:
    questions = load_question_set(name).questions
    for kind in KINDS:
        counts = [sum(1 for q in questions if (q.kind, q.half) == (kind, half)) for half in HALVES]
        assert abs(counts[0] - counts[1]) <= 1, (kind, counts)


def test_a_set_whose_corpus_is_not_installed_names_the_package(tmp_path: Path) -> None:
    questions = tmp_path / "questions.toml"
    questions.write_text(
        f'corpus = "{tmp_path / "absent"}"\npackage = "example-doc"\n'
        '[[question]]\nid = "x"\nkind = "easy"\nquery = "q"\nanswers = ["a.html"]\n'
    )
    with pytest.raises(DocserverError, match=r"absent does not exist \(install Debian's example-doc\)"):
        load_question_set(str(questions))


def test_a_question_without_answers_is_one_clear_error(tmp_path: Path) -> None:
    questions = tmp_path / "questions.toml"
    questions.write_text('[[question]]\nid = "x"\nkind = "easy"\nquery = "q"\n')
    with pytest.raises(DocserverError, match=r"each \[\[question\]\] needs an id, a kind, a query and answers"):
        load_question_set(str(questions))


def test_docserver_eval_takes_a_questions_file_over_its_own_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "kites.md").write_text("# Kites\n\nFlying kites on a windy beach.\n", encoding="utf-8")
    (corpus / "boats.md").write_text("# Boats\n\nSailing boats across the bay.\n", encoding="utf-8")
    questions = tmp_path / "mine.toml"
    questions.write_text(
        f'corpus = "{corpus}"\n[[question]]\nid = "k"\nkind = "easy"\nquery = "windy kites"\nanswers = ["kites.md"]\n'
    )
    env = docserver_env(tmp_path / "unused.db")
    result = run_cli("eval", "--embedders", "hash", "--questions", str(questions), "--json", env=env)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert (scores["set"], scores["documents"]) == ("mine", 2)
    assert scores["runs"][2]["halves"]["tune"]["easy"]["hit@1"] == 1.0


@pytest.mark.parametrize("embedder", EMBEDDERS)
def test_the_fusion_never_scores_below_either_retriever_alone(report: Report, embedder: str) -> None:
    fused = run_of(report, embedder, "fusion").scores(report.questions)
    for alone in ("bm25", "vector"):
        single = run_of(report, embedder, alone).scores(report.questions)
        for metric in METRICS:
            assert getattr(fused, metric) >= getattr(single, metric), (alone, metric, fused, single)


@pytest.mark.parametrize("embedder", EMBEDDERS)
def test_the_easy_questions_stay_at_100_percent(report: Report, embedder: str) -> None:
    assert run_of(report, embedder, "fusion").scores(report.questions, "easy").hit3 == 1.0


def test_the_built_in_embedder_finds_at_least_55_percent_of_paraphrases_in_the_top_3(report: Report) -> None:
    assert run_of(report, "hash", "fusion").scores(report.questions, "paraphrase").hit3 >= 0.55


def test_the_local_model_beats_every_retriever_of_the_built_in_embedder_on_paraphrases(report: Report) -> None:
    local = run_of(report, "local", "fusion").scores(report.questions, "paraphrase")
    for retriever in ("bm25", "vector", "fusion"):
        assert local.hit3 > run_of(report, "hash", retriever).scores(report.questions, "paraphrase").hit3
    assert local.hit3 >= 0.85  # measured 86.0%: a guard against regressions


@pytest.mark.xfail(strict=True, reason="goal not met: 86.0% (49 of 57) measured; docs/search.md says where it misses")
def test_the_local_model_finds_90_percent_of_paraphrases_in_the_top_3(report: Report) -> None:
    assert run_of(report, "local", "fusion").scores(report.questions, "paraphrase").hit3 >= 0.90


def test_docserver_eval_prints_every_retriever_as_json(tmp_path: Path) -> None:
    result = run_cli("eval", "--embedders", "hash", "--json", env=docserver_env(tmp_path / "unused.db"))
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert [run["retriever"] for run in scores["runs"]] == ["bm25", "vector", "fusion"]
    assert scores["runs"][2]["fusion"] == "bm25, vectors fill"
    assert set(scores["runs"][0]["scores"]["paraphrase"]) == {"hit@1", "hit@3", "mrr"}
    assert not (tmp_path / "unused.db").exists()  # the evaluation never touches the configured database


def test_docserver_eval_refuses_an_unknown_embedder(tmp_path: Path) -> None:
    result = run_cli("eval", "--embedders", "hash,bogus", env=docserver_env(tmp_path / "unused.db"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "docserver: error: --embedders: unknown embedder bogus; use hash, local, openai"
    ]
