"""Shared fixtures: a sample corpus, stores in tmp_path, real subprocesses."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from docserver.config import Settings, load_settings
from docserver.embed.hashing import HashEmbedder
from docserver.runtime import Runtime, bind_embedder
from docserver.store.sqlite import SqliteStore
from support.embedding_server_fixture import start_embedding_server

CORPUS = Path(__file__).with_name("corpus")

# (query, expected path, expected heading): the known answers of the test corpus.
KNOWN_ANSWERS = [
    ("how do I build quillstone from source", "guide/install.md", "Installing Quillstone > Build from source"),
    ("journal flush interval durability", "guide/tuning.md", "Performance tuning > Journal flush interval"),
    ("enable TLS certificate", "guide/security.rst", "Security > Transport encryption"),
    ("rotate access tokens", "guide/security.rst", "Security > Access tokens"),
    ("delete every message in a queue", "reference/cli.html", "Command line reference > quillstone purge"),
    ("restore a snapshot", "guide/backup.mdx", "Restoring"),
    ("memory high watermark back-pressure", "guide/tuning.md", "Performance tuning > Memory limits"),
    ("dead letter exchange poison messages", "reference/glossary.txt", ""),
]


@pytest.fixture
def corpus() -> Path:
    return CORPUS


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith(("DOCSERVER_", "LOG_")):
            monkeypatch.delenv(name)
    return load_settings(database_url=f"sqlite:///{tmp_path / 'docserver.db'}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    sqlite_store = SqliteStore(tmp_path / "store.db")
    await sqlite_store.open()
    yield sqlite_store
    await sqlite_store.close()


@pytest.fixture
async def runtime(settings: Settings, store: SqliteStore) -> AsyncIterator[Runtime]:
    embedder = HashEmbedder()
    await bind_embedder(store, embedder)
    yield Runtime(settings, store, embedder)


@pytest.fixture(scope="session")
def embedding_server() -> Iterator[str]:
    """A real OpenAI-compatible embedding server on loopback; yields its /v1 base URL."""
    with start_embedding_server() as (url, _process):
        yield url
