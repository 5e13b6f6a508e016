"""`docserver ingest --version/--exclude`, `sources`, `refresh` and `remove` through the real command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import CORPUS
from support.docserver_process import docserver_env, run_cli

pytestmark = pytest.mark.slow


def test_a_versioned_source_is_listed_refreshed_and_removed(tmp_path: Path) -> None:
    env = docserver_env(tmp_path / "cli.db", {"XDG_DATA_HOME": str(tmp_path / "data")})
    docs = shutil.copytree(CORPUS, tmp_path / "docs")

    ingested = run_cli("ingest", str(docs), "--source", "guide", "--version", "1.0", "--exclude", "reference/", env=env)
    assert ingested.returncode == 0, ingested.stderr
    listing = run_cli("sources", env=env).stdout.splitlines()
    assert listing[0].startswith("guide@1.0\t4 documents")
    assert listing[1].startswith(f"  version 1.0  from {docs}  last refresh ")
    [record] = json.loads(run_cli("sources", "--json", env=env).stdout)
    assert (record["version"], record["options"]["exclude"], record["last_error"]) == ("1.0", ["reference/"], None)

    refreshed = run_cli("refresh", "guide", env=env)
    assert refreshed.returncode == 0, refreshed.stderr
    assert "4 files (0 new or changed, 4 unchanged" in refreshed.stdout

    removed = run_cli("remove", "guide", "--version", "1.0", env=env)
    assert removed.stdout.strip() == "source 'guide@1.0' removed (4 documents)"
    assert json.loads(run_cli("sources", "--json", env=env).stdout) == []


def test_a_failed_refresh_exits_1_and_is_shown(tmp_path: Path) -> None:
    env = docserver_env(tmp_path / "cli.db", {"XDG_DATA_HOME": str(tmp_path / "data")})
    docs = shutil.copytree(CORPUS, tmp_path / "docs")
    assert run_cli("ingest", str(docs), env=env).returncode == 0
    shutil.rmtree(docs)

    refreshed = run_cli("refresh", env=env)

    assert refreshed.returncode == 1
    assert refreshed.stderr.strip() == f"source 'docs': refresh failed: path not found: {docs}"
    assert "last error (" in run_cli("sources", env=env).stdout


def test_search_reads_the_newest_version_or_the_one_named_and_falls_back_when_it_is_removed(tmp_path: Path) -> None:
    env = docserver_env(tmp_path / "cli.db", {"XDG_DATA_HOME": str(tmp_path / "data")})
    for version in ("1.0", "2.0"):
        docs = shutil.copytree(CORPUS, tmp_path / f"docs-{version}")
        ingested = run_cli("ingest", str(docs), "--source", "guide", "--version", version, env=env)
        assert ingested.returncode == 0, ingested.stderr

    def sources_of(*arguments: str) -> set[str]:
        searched = run_cli("search", "build from source", "--json", *arguments, env=env)
        assert searched.returncode == 0, searched.stderr
        return {hit["source"] for hit in json.loads(searched.stdout)}

    assert sources_of() == {"guide@2.0"}
    assert sources_of("--version", "1.0") == sources_of("--source", "guide", "--version", "1.0") == {"guide@1.0"}
    unknown = run_cli("search", "build", "--version", "3.0", env=env)
    assert (unknown.returncode, unknown.stderr.strip()) == (
        1,
        "docserver: error: unknown version '3.0'; versions: 2.0, 1.0",
    )

    assert run_cli("remove", "guide", "--version", "2.0", env=env).returncode == 0
    assert sources_of() == {"guide@1.0"}


def test_an_ingest_leaves_the_vector_index_built(tmp_path: Path) -> None:
    """Crossing the approximate index's threshold, the ingest trains it before it exits, so no server has to."""
    import sqlite3

    from docserver.store.sqlite_vector_index import MIN_INDEXED_CHUNKS, SEARCHED, Generation

    docs = tmp_path / "many"
    docs.mkdir()
    sections = 50
    for page in range(MIN_INDEXED_CHUNKS // sections + 1):
        text = "".join(
            f"## Setting {page}-{section}\n\nOption {page} {section} limits worker {section} to {page * section}.\n\n"
            for section in range(sections)
        )
        (docs / f"page-{page}.md").write_text(f"# Page {page}\n\n{text}")
    env = docserver_env(tmp_path / "cli.db", {"XDG_DATA_HOME": str(tmp_path / "data")})

    ingested = run_cli("ingest", str(docs), "--source", "many", env=env, timeout=600)

    assert ingested.returncode == 0, ingested.stderr
    db = sqlite3.connect(tmp_path / "cli.db")
    try:
        [(chunks,)] = db.execute("SELECT count(*) FROM chunks").fetchall()
        generation = Generation.read(db, SEARCHED, "chunk_vectors")  # the generation searches read
    finally:
        db.close()
    assert chunks >= MIN_INDEXED_CHUNKS
    assert generation is not None and generation.lists > 0 and generation.trained_on >= MIN_INDEXED_CHUNKS
