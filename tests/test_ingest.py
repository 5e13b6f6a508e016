"""Ingestion: in process through `ingest()`, and end to end through the real `docserver` command."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import CORPUS
from docserver.binding import bind_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.errors import IngestError
from docserver.ingest.pipeline import ingest
from docserver.store.base import Vectors
from docserver.store.sqlite import SqliteStore
from support.docserver_process import docserver_env, run_cli
from support.embedding_server_fixture import start_embedding_server

SUMMARY = re.compile(
    r"^source '(?P<source>[^']+)': (?P<files>\d+) files \((?P<changed>\d+) new or changed, "
    r"(?P<unchanged>\d+) unchanged, (?P<removed>\d+) removed, (?P<skipped>\d+) skipped\), "
    r"(?P<chunks>\d+) chunks embedded in \d+\.\d\d s$"
)
INVALID_UTF8 = b"# Title\n\n\xff\xfe caf\xe9 latin-1 text\n"
BINARY = b"# Looks like markdown\x00\x01\x02\x03"


class CountingEmbedder(HashEmbedder):
    """The built-in embedder, remembering every text it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        self.texts.extend(texts)
        return await super().embed_batch(texts)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A writable copy of the test corpus."""
    return Path(shutil.copytree(CORPUS, tmp_path / "docs"))


@pytest.fixture
async def embedder(store: SqliteStore) -> CountingEmbedder:
    counting = CountingEmbedder()
    await bind_embedder(store, counting)
    return counting


async def paths_matching(store: SqliteStore, query: str, source: str | None = None) -> set[str]:
    ranked = await store.search_text(query, source=source, limit=50)
    return {record.path for record in await store.get_chunks([item.chunk_id for item in ranked])}


# -- in process -----------------------------------------------------------------------------------


async def test_first_run_stores_every_file(store: SqliteStore, embedder: CountingEmbedder, docs: Path) -> None:
    summary = await ingest(store, embedder, [docs], "docs")
    assert (summary.files, summary.changed, summary.unchanged, summary.removed, summary.skipped) == (6, 6, 0, 0, 0)
    assert summary.chunks == len(embedder.texts)
    assert sorted(await store.document_hashes("docs")) == [
        "guide/backup.mdx",
        "guide/install.md",
        "guide/security.rst",
        "guide/tuning.md",
        "reference/cli.html",
        "reference/glossary.txt",
    ]


async def test_a_second_run_embeds_nothing(store: SqliteStore, embedder: CountingEmbedder, docs: Path) -> None:
    await ingest(store, embedder, [docs], "docs")
    embedder.texts.clear()

    summary = await ingest(store, embedder, [docs], "docs")

    assert embedder.texts == []
    assert (summary.unchanged, summary.changed, summary.chunks) == (6, 0, 0)


async def test_a_changed_file_is_re_embedded_alone(store: SqliteStore, embedder: CountingEmbedder, docs: Path) -> None:
    await ingest(store, embedder, [docs], "docs")
    embedder.texts.clear()
    install = docs / "guide" / "install.md"
    install.write_text(install.read_text() + "\n## Uninstall\n\nRun `apt remove quillstone` to uninstall.\n")

    summary = await ingest(store, embedder, [docs], "docs")

    assert (summary.changed, summary.unchanged) == (1, 5)
    assert embedder.texts
    assert all(text.startswith("Installing Quillstone") for text in embedder.texts)
    assert await paths_matching(store, "uninstall") == {"guide/install.md"}


async def test_a_deleted_file_is_removed_from_search(
    store: SqliteStore, embedder: CountingEmbedder, docs: Path
) -> None:
    await ingest(store, embedder, [docs], "docs")
    (docs / "guide" / "tuning.md").unlink()

    summary = await ingest(store, embedder, [docs], "docs")

    assert summary.removed == 1
    assert "guide/tuning.md" not in await store.document_hashes("docs")
    assert await paths_matching(store, "flush prefetch watermark") == set()


async def test_several_roots_store_paths_prefixed_by_the_roots_name(
    store: SqliteStore, embedder: CountingEmbedder, tmp_path: Path
) -> None:
    write(tmp_path / "alpha" / "intro.md", "# Alpha intro\n")
    write(tmp_path / "beta" / "intro.md", "# Beta intro\n")
    write(tmp_path / "beta" / "deep" / "page.md", "# Beta page\n")

    await ingest(store, embedder, [tmp_path / "alpha", tmp_path / "beta"], "both")

    assert sorted(await store.document_hashes("both")) == ["alpha/intro.md", "beta/deep/page.md", "beta/intro.md"]


async def test_one_root_stores_paths_relative_to_it(
    store: SqliteStore, embedder: CountingEmbedder, tmp_path: Path
) -> None:
    write(tmp_path / "alpha" / "deep" / "intro.md", "# Alpha intro\n")
    await ingest(store, embedder, [tmp_path / "alpha"], "alpha")
    assert list(await store.document_hashes("alpha")) == ["deep/intro.md"]


async def test_unreadable_files_are_skipped_and_counted(
    store: SqliteStore, embedder: CountingEmbedder, tmp_path: Path
) -> None:
    write(tmp_path / "docs" / "good.md", "# Good\n\nReadable text.\n")
    write(tmp_path / "docs" / "binary.md", BINARY)
    write(tmp_path / "docs" / "latin1.md", INVALID_UTF8)

    summary = await ingest(store, embedder, [tmp_path / "docs"], "docs")

    assert (summary.files, summary.changed, summary.skipped) == (3, 1, 2)
    assert sorted(summary.skipped_files) == [("binary.md", "binary file"), ("latin1.md", "not valid UTF-8 text")]
    assert list(await store.document_hashes("docs")) == ["good.md"]


async def test_a_file_turned_unreadable_keeps_its_stored_version(
    store: SqliteStore, embedder: CountingEmbedder, docs: Path
) -> None:
    await ingest(store, embedder, [docs], "docs")
    before = await store.document_hashes("docs")
    write(docs / "guide" / "tuning.md", INVALID_UTF8)

    summary = await ingest(store, embedder, [docs], "docs")

    assert (summary.skipped, summary.removed) == (1, 0)
    assert await store.document_hashes("docs") == before
    assert await paths_matching(store, "flush interval") == {"guide/tuning.md"}


async def test_a_folder_of_only_unreadable_files_changes_nothing(
    store: SqliteStore, embedder: CountingEmbedder, tmp_path: Path
) -> None:
    folder = tmp_path / "docs"
    write(folder / "a.md", "# A\n\nFirst version.\n")
    await ingest(store, embedder, [folder], "docs")
    version = await store.corpus_version()
    write(folder / "a.md", BINARY)

    with pytest.raises(IngestError, match="could be read"):
        await ingest(store, embedder, [folder], "docs")

    assert await store.corpus_version() == version
    assert await paths_matching(store, "first version") == {"a.md"}


async def test_a_broken_symlink_does_not_stop_a_readable_file(
    store: SqliteStore, embedder: CountingEmbedder, tmp_path: Path
) -> None:
    write(tmp_path / "docs" / "good.md", "# Good\n\nReadable text.\n")
    (tmp_path / "docs" / "dangling.md").symlink_to(tmp_path / "docs" / "missing.md")

    summary = await ingest(store, embedder, [tmp_path / "docs"], "docs")

    assert (summary.changed, summary.skipped) == (1, 1)
    assert list(await store.document_hashes("docs")) == ["good.md"]


async def test_an_empty_folder_raises_and_keeps_the_stored_source(
    store: SqliteStore, embedder: CountingEmbedder, docs: Path, tmp_path: Path
) -> None:
    await ingest(store, embedder, [docs], "docs")
    version = await store.corpus_version()
    (tmp_path / "empty").mkdir()

    with pytest.raises(IngestError, match="no documentation files"):
        await ingest(store, embedder, [tmp_path / "empty"], "docs")

    assert [(source.name, source.documents) for source in await store.list_sources()] == [("docs", 6)]
    assert await store.corpus_version() == version


async def test_progress_reports_every_file_done(store: SqliteStore, embedder: CountingEmbedder, docs: Path) -> None:
    calls: list[tuple[int, int]] = []
    await ingest(store, embedder, [docs], "docs", progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


# -- the real command -----------------------------------------------------------------------------


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The command failed with exit 1 and one `docserver: error:` line holding `fragments`."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("docserver: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def sources(env: Mapping[str, str]) -> list[dict[str, Any]]:
    result = run_cli("sources", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def counts(env: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    return {source["name"]: (source["documents"], source["chunks"]) for source in sources(env)}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return docserver_env(tmp_path / "cli.db")


@pytest.mark.slow
def test_cli_missing_path_is_one_error_line(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    result = run_cli("ingest", str(missing), env=env)
    line = assert_one_line_error(result)
    assert line == f"docserver: error: path not found: {missing}"


@pytest.mark.slow
def test_cli_empty_folder_fails_and_keeps_the_previous_source(env: dict[str, str], docs: Path, tmp_path: Path) -> None:
    assert run_cli("ingest", str(docs), "--source", "docs", env=env).returncode == 0
    (tmp_path / "empty").mkdir()

    result = run_cli("ingest", str(tmp_path / "empty"), "--source", "docs", env=env)

    assert_one_line_error(result, "no documentation files", str(tmp_path / "empty"))
    assert counts(env)["docs"][0] == 6


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value"),
    [("DOCSERVER_EMBEDDER", "bogus"), ("DOCSERVER_PORT", "abc"), ("DOCSERVER_DATABASE_URL", "mysql://x")],
)
def test_cli_bad_setting_is_one_line_naming_the_variable(
    env: dict[str, str], docs: Path, variable: str, value: str
) -> None:
    result = run_cli("ingest", str(docs), env={**env, variable: value})
    assert_one_line_error(result, f"invalid setting {variable}:")


@pytest.mark.slow
def test_cli_prints_the_summary_line(env: dict[str, str], docs: Path) -> None:
    result = run_cli("ingest", str(docs), env=env)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    match = SUMMARY.match(line)
    assert match is not None, line
    assert match.group("source", "files", "changed", "unchanged", "removed", "skipped") == (
        "docs",
        "6",
        "6",
        "0",
        "0",
        "0",
    )


@pytest.mark.slow
def test_cli_reports_a_binary_file_as_skipped(env: dict[str, str], docs: Path) -> None:
    write(docs / "guide" / "image.md", BINARY)
    result = run_cli("ingest", str(docs), env=env)
    assert result.returncode == 0, result.stderr
    assert "skipped guide/image.md: binary file" in result.stderr.splitlines()
    match = SUMMARY.match(result.stdout.strip())
    assert match is not None
    assert match.group("files", "skipped") == ("7", "1")


@pytest.mark.slow
def test_cli_ingests_a_thousand_files(env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for number in range(1000):
        write(folder / f"section{number // 100}" / f"page{number:04d}.md", f"# Page {number}\n\nTopic{number}.\n")

    result = run_cli("ingest", str(folder), env=env)

    assert result.returncode == 0, result.stderr
    match = SUMMARY.match(result.stdout.strip())
    assert match is not None, result.stdout
    assert match.group("files", "changed", "skipped") == ("1000", "1000", "0")
    assert counts(env)["many"] == (1000, 1000)


# -- a killed ingest ------------------------------------------------------------------------------


@pytest.fixture
def embedding_admin() -> Iterator[tuple[str, httpx.Client]]:
    """A dedicated embedding server (faults are global to it): (its /v1 URL, a client for /admin)."""
    with start_embedding_server() as (url, _process), httpx.Client(base_url=url.removesuffix("/v1")) as admin:
        yield url, admin


def embedding_requests(admin: httpx.Client) -> int:
    return int(admin.get("/admin/stats").json()["requests"])


def wait_for_requests(admin: httpx.Client, count: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while embedding_requests(admin) < count:
        assert process.poll() is None, "the ingest ended before it was killed"
        assert time.monotonic() < deadline, f"the embedding server did not see {count} requests in {timeout} s"
        time.sleep(0.01)  # polling the server's counter; the condition is what is awaited


async def stored_hashes(database: Path, source: str) -> dict[str, str]:
    store = SqliteStore(database)
    await store.open()
    try:
        return await store.document_hashes(source)
    finally:
        await store.close()


def search_paths(env: Mapping[str, str], query: str) -> list[str]:
    result = run_cli("search", query, "--json", "--limit", "20", env=env)
    assert result.returncode == 0, result.stderr
    return [hit["path"] for hit in json.loads(result.stdout)]


def search_snippets(env: Mapping[str, str], query: str) -> str:
    result = run_cli("search", query, "--json", "--limit", "20", env=env)
    assert result.returncode == 0, result.stderr
    return " ".join(hit["snippet"] for hit in json.loads(result.stdout))


def openai_env(database: Path, url: str) -> dict[str, str]:
    return docserver_env(
        database,
        {
            "DOCSERVER_EMBEDDER": "openai",
            "DOCSERVER_EMBEDDING_URL": url,
            "DOCSERVER_EMBEDDING_MODEL": "test-embed",
            "DOCSERVER_EMBEDDING_BATCH_SIZE": "1",
        },
    )


def kill_ingest_midway(admin: httpx.Client, env: Mapping[str, str], docs: Path) -> None:
    """Start `docserver ingest`, let it embed a few chunks one request at a time, then SIGKILL it."""
    # Slow rather than stuck: a request still sleeping on the server would hold up its shutdown.
    admin.post("/admin/fault", json={"mode": "slow", "delay": 0.2}).raise_for_status()
    baseline = embedding_requests(admin)
    process = subprocess.Popen(
        [sys.executable, "-m", "docserver", "ingest", str(docs), "--source", "docs"],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_requests(admin, baseline + 4, process, timeout=30)
    finally:
        process.kill()
        process.wait()
    admin.post("/admin/fault", json={"mode": "none"}).raise_for_status()
    assert process.returncode == -signal.SIGKILL


def add_long_page(docs: Path) -> None:
    """40 chunks: with one request each, far more than the ingest gets through before the kill."""
    sections = "".join(f"## Part {n}\n\nZanzibarite part {n}.\n\n" for n in range(40))
    write(docs / "guide" / "new.md", "# New page\n\n" + sections)


@pytest.mark.slow
def test_a_killed_ingest_leaves_the_previous_version_intact(
    embedding_admin: tuple[str, httpx.Client], docs: Path, tmp_path: Path
) -> None:
    url, admin = embedding_admin
    database = tmp_path / "kill.db"
    env = openai_env(database, url)
    assert run_cli("ingest", str(docs), "--source", "docs", env=env).returncode == 0
    before_counts = counts(env)
    before_hashes = asyncio.run(stored_hashes(database, "docs"))
    for name in ("guide/install.md", "guide/tuning.md", "reference/glossary.txt"):
        write(docs / name, f"# Rewritten\n\nZanzibarite replaces the old text of {name}.\n")
    add_long_page(docs)

    kill_ingest_midway(admin, env, docs)

    assert asyncio.run(stored_hashes(database, "docs")) == before_hashes
    assert counts(env) == before_counts
    assert "guide/install.md" in search_paths(env, "build quillstone from source make release")
    assert "Zanzibarite" not in search_snippets(env, "Zanzibarite rewritten")
    assert "guide/new.md" not in search_paths(env, "Zanzibarite part new page")


@pytest.mark.slow
def test_an_ingest_after_a_killed_one_succeeds(
    embedding_admin: tuple[str, httpx.Client], docs: Path, tmp_path: Path
) -> None:
    url, admin = embedding_admin
    env = openai_env(tmp_path / "kill.db", url)
    assert run_cli("ingest", str(docs), "--source", "docs", env=env).returncode == 0
    add_long_page(docs)
    kill_ingest_midway(admin, env, docs)

    result = run_cli("ingest", str(docs), "--source", "docs", env=env)

    assert result.returncode == 0, result.stderr
    assert counts(env)["docs"][0] == 7
    assert "guide/new.md" in search_paths(env, "Zanzibarite part new page")
