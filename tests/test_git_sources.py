"""Git origins on real repositories: `git+file://` in a temporary folder, and `git daemon` on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docserver.binding import bind_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.errors import DocserverError
from docserver.sources.git import GitRepositories
from docserver.sources.origin import parse_origin
from docserver.sources.request import SourceRequest
from docserver.sources.service import Sources
from docserver.sources.web import CrawlLimits, WebCrawler
from docserver.store.sqlite import SqliteStore
from support.processes import free_port


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=t", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "handbook"
    folder.mkdir()
    git(folder, "init", "-q", "-b", "main")
    commit(
        folder,
        {
            "docs/install.md": "# Install\n\nRun the installer.\n",
            "docs/usage.md": "# Usage\n\nCall it.\n",
            "README.md": "# Readme\n",
        },
        "first",
    )
    return folder


@pytest.fixture
async def sources(store: SqliteStore, tmp_path: Path) -> Sources:
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    web = WebCrawler(tmp_path / "web", CrawlLimits())
    return Sources(store, embedder, GitRepositories(tmp_path / "cache"), web, max_chars=1500)


def git_request(url: str, ref: str | None = None, subpath: str | None = "docs") -> SourceRequest:
    origin = parse_origin(url, ref=ref, subpath=subpath)
    return SourceRequest(origin.default_name(), origin)


async def test_a_repository_folder_is_ingested_with_its_commit(
    sources: Sources, store: SqliteStore, repo: Path
) -> None:
    outcome = await sources.ingest(git_request(f"git+file://{repo}"))

    [record] = await store.source_records()
    assert (record.name, record.revision, outcome.revision) == (
        "handbook",
        git(repo, "rev-parse", "HEAD"),
        record.revision,
    )
    assert record.options["path"] == "docs"
    assert sorted(await store.document_hashes("handbook")) == ["install.md", "usage.md"]


async def test_an_unmoved_ref_is_unchanged(sources: Sources, repo: Path) -> None:
    await sources.ingest(git_request(f"git+file://{repo}"))
    [outcome] = await sources.refresh()
    assert outcome.result == "unchanged"


async def test_a_moved_ref_re_reads_only_the_changed_files(sources: Sources, store: SqliteStore, repo: Path) -> None:
    await sources.ingest(git_request(f"git+file://{repo}"))
    new = commit(
        repo,
        {
            "docs/install.md": "# Install\n\nRun the new installer.\n",
            "docs/usage.md": None,
            "docs/faq.md": "# FAQ\n\nAnswers.\n",
        },
    )

    [outcome] = await sources.refresh(["handbook"])

    assert outcome.result == "ok" and outcome.revision == new and outcome.summary is not None
    assert (outcome.summary.changed, outcome.summary.removed, outcome.summary.unchanged) == (2, 1, 0)
    assert sorted(await store.document_hashes("handbook")) == ["faq.md", "install.md"]


async def test_a_file_outside_the_diff_is_not_read(sources: Sources, store: SqliteStore, repo: Path) -> None:
    await sources.ingest(git_request(f"git+file://{repo}", subpath=None))
    commit(repo, {"docs/faq.md": "# FAQ\n\nAnswers.\n"})

    [outcome] = await sources.refresh()

    assert outcome.summary is not None
    assert (outcome.summary.files, outcome.summary.changed, outcome.summary.unchanged) == (4, 1, 3)


async def test_a_tag_is_fetched_and_a_missing_ref_is_one_clear_error(
    sources: Sources, store: SqliteStore, repo: Path
) -> None:
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1")
    commit(repo, {"docs/later.md": "# Later\n"})

    outcome = await sources.ingest(git_request(f"git+file://{repo}", ref="v1"))
    assert outcome.revision == first

    with pytest.raises(DocserverError, match=r"ref not found in file://.*: v9"):
        await sources.ingest(git_request(f"git+file://{repo}", ref="v9"))
    [record] = await store.source_records()
    assert record.documents == 2 and "ref not found" in (record.last_error or "")


async def test_a_missing_repository_is_one_clear_error(sources: Sources, tmp_path: Path) -> None:
    with pytest.raises(DocserverError, match="repository not found"):
        await sources.ingest(git_request(f"git+file://{tmp_path}/nothing-here"))


def hand_to_another_user(repo: Path) -> None:
    for path in (repo, *repo.rglob("*")):
        os.lchown(path, 54321, 54321)


async def test_a_repository_git_distrusts_names_the_cause_not_git_s_advice(sources: Sources, repo: Path) -> None:
    # Another user's repository: git refuses it as of "dubious ownership", then prints advice
    # lines; the error must carry the cause.
    hand_to_another_user(repo)
    with pytest.raises(DocserverError, match="dubious ownership"):
        await sources.ingest(git_request(f"git+file://{repo}"))


async def test_a_missing_folder_in_the_repository_is_an_error(sources: Sources, repo: Path) -> None:
    with pytest.raises(DocserverError, match="--path manual: no such folder"):
        await sources.ingest(git_request(f"git+file://{repo}", subpath="manual"))


def test_a_path_that_leaves_the_repository_is_refused() -> None:
    with pytest.raises(DocserverError, match="must stay inside"):
        parse_origin("git+https://example.org/r.git", subpath="../etc")


def wait_for_listener(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling a port that is not listening yet


@pytest.fixture
def git_daemon(repo: Path) -> Iterator[str]:
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--export-all",
            f"--base-path={repo.parent}",
            str(repo.parent),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_listener(port)
        yield f"git://127.0.0.1:{port}/{repo.name}"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


async def test_a_repository_served_by_git_daemon_follows_its_branch(
    sources: Sources, store: SqliteStore, repo: Path, git_daemon: str
) -> None:
    # git+ssh:// and git+https:// reach git the same way; git's own protocol needs no credentials on loopback.
    await sources.ingest(git_request(f"git+{git_daemon}", ref="main"))
    moved = commit(repo, {"docs/usage.md": "# Usage\n\nCall it twice.\n"})

    [outcome] = await sources.refresh()

    assert (outcome.result, outcome.revision) == ("ok", moved)
