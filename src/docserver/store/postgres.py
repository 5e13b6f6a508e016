"""PostgresStore: PostgreSQL with pgvector (HNSW, cosine) for vectors and tsvector + GIN for full text.

psycopg 3 (async) over a psycopg_pool connection pool. Reads borrow a pooled
connection in autocommit mode, so MVCC answers them from the last committed
version while a source update holds one connection inside one transaction.
Migrations run when the store opens, under an advisory lock (see
migrations/), so replicas starting together are safe. The SQL is in
postgres_sql (and postgres_reindex); the flow in StoreCore.

Failures come out as StoreError with one line for a person: the database URL
in them never carries its password, and "cannot reach the database"
(StoreUnavailableError: retrying later may work) is told apart from "the
database refused" (StoreError).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from docserver.config import redact_url, url_password
from docserver.errors import StoreBusyError, StoreError
from docserver.observability.instruments import StoreInstruments
from docserver.observability.logging import get_logger
from docserver.observability.redaction import MIN_SECRET_LENGTH
from docserver.store import postgres_exact, postgres_reindex, postgres_sources, postgres_sql
from docserver.store.base import EmbedderInfo, SourceWriter, StoreUnavailableError
from docserver.store.core import StoreCore
from docserver.store.migrations import apply_postgres_migrations
from docserver.store.observe import collections_for
from docserver.store.postgres_schema import Connection, PostgresOptions, ensure_pgvector, vector_adapters
from docserver.store.writer import Execute

__all__ = ["PoolExhaustedError", "PostgresOptions", "PostgresStore", "StoreUnavailableError"]

T = TypeVar("T")

# psycopg_pool logs every borrowed connection at INFO; its warnings (a failed
# connection attempt, a broken connection discarded) are the useful part.
logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
log = get_logger("docserver.store")


class PoolExhaustedError(StoreError):
    """Every pooled connection stayed busy for the whole acquire timeout."""


class PostgresStore(StoreCore):
    """Documents and vectors in PostgreSQL (with pgvector), shared by every replica."""

    backend = "postgresql"
    transient_errors: tuple[type[Exception], ...] = (StoreUnavailableError,)
    sql = postgres_sql
    reindex_sql = postgres_reindex
    sources_sql = postgres_sources
    collections = MappingProxyType(
        {**collections_for(text="chunks", vectors="embeddings"), "collect_embeddings": "embeddings"}
    )

    def __init__(
        self,
        url: str,
        options: PostgresOptions | None = None,
        *,
        instruments: StoreInstruments | None = None,
        slow_seconds: float = 0.25,
    ) -> None:
        self.url = url
        self.options = options or PostgresOptions()
        self.where = redact_url(url)
        """The URL without its password: the only form that goes into messages."""
        self._password = url_password(url)
        self._pool: AsyncConnectionPool[Connection] | None = None
        self.declined = postgres_exact.Declined()
        """Filters past the exact search's thresholds, at the corpus version each was found at."""
        # Ingests and reindex steps of different sources go on in parallel: locks in the database order them.
        super().__init__(instruments=instruments, slow_seconds=slow_seconds, serialized=nullcontext())

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Connect, create the extension and migrate (once, under a lock), then open the pool.

        Raises StoreUnavailableError when the server cannot be reached, and
        StoreError when it refuses (no pgvector, a newer schema).
        """
        if self._pool is not None:
            return
        kwargs = self._connect_kwargs()
        try:
            conn = await AsyncConnection.connect(self.url, autocommit=True, **kwargs)
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(f"cannot connect to the database {self.where}: {self._clean(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the database {self.where}: {self._clean(exc)}") from None
        try:
            async with conn:
                migrating = apply_postgres_migrations(conn, prepare=ensure_pgvector)
                await self._observer.run("migrate", self._guard(migrating))
                adapters = await vector_adapters(conn)
        except psycopg.Error as exc:
            raise self._translate(exc) from None
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.url,
            kwargs={"autocommit": True, "context": adapters, **kwargs},
            min_size=self.options.min_size,
            max_size=self.options.max_size,
            timeout=self.options.pool_timeout,
            name="docserver",
            open=False,
        )
        try:
            await pool.open(wait=self.options.min_size > 0, timeout=self.options.connect_timeout)
        except PoolTimeout:
            raise StoreUnavailableError(
                f"cannot open connections to the database {self.where} within {self.options.connect_timeout:g} s"
            ) from None
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=5.0)

    def _connect_kwargs(self) -> dict[str, Any]:
        """Connection parameters: ours, except where the URL says otherwise (its `options` come last, so win)."""
        settings = {
            "statement_timeout": self.options.statement_timeout_ms,
            "hnsw.ef_search": self.options.hnsw_ef_search,
            # pgvector >= 0.8: a filtered (by source) HNSW scan goes on until it has enough rows.
            "hnsw.iterative_scan": "relaxed_order",
        }
        ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
        try:
            url = conninfo_to_dict(self.url)
        except psycopg.Error:
            url = {}  # reported, password-free, by the connection attempt
        kwargs: dict[str, Any] = {
            "connect_timeout": max(2, math.ceil(self.options.connect_timeout)),
            "application_name": "docserver",
        }
        kwargs = {name: value for name, value in kwargs.items() if name not in url}
        kwargs["options"] = f"{ours} {url['options']}" if url.get("options") else ours
        return kwargs

    def pool_stats(self) -> tuple[int, int, int]:
        """(active, idle, pending) from the pool's own statistics, read at scrape time."""
        pool = self._pool
        if pool is None:
            return 0, 0, 0
        stats = pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        return max(size - idle, 0), idle, stats.get("requests_waiting", 0)

    # -- running work ----------------------------------------------------------

    def _ready_pool(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise StoreUnavailableError(f"not connected to the database {self.where} yet")
        return self._pool

    async def _read(self, operation: str, statement: Callable[..., Any], *args: Any) -> Any:
        return await self._observer.run(operation, self._borrow(statement, args, retry=True))

    async def _write(self, operation: str, statement: Callable[..., Any], *args: Any) -> Any:
        return await self._observer.run(operation, self._borrow(statement, args, retry=False))

    async def _borrow(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], *, retry: bool, wait: float | None = None
    ) -> T:
        """Run `fn(conn, *args)` on a pooled connection.

        After a database restart every idle pooled connection is dead, and the
        pool only learns it when one is used. A read that fails on a broken
        connection is tried again (the broken one is discarded on return), at
        most once per pooled connection, so the first call after a restart
        succeeds instead of the first `max_size`.
        """
        pool = self._ready_pool()
        attempts = self.options.max_size + 1 if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                async with pool.connection(timeout=wait) as conn:
                    try:
                        return await fn(conn, *args)
                    except psycopg.OperationalError:
                        if not (conn.broken and attempt < attempts):
                            raise
            except (PoolTimeout, PoolClosed) as exc:
                raise self._pool_error(exc, wait) from None
            except psycopg.Error as exc:
                raise self._translate(exc) from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Execute]:
        """One transaction on one connection, held for the whole block."""
        pool = self._ready_pool()
        try:
            async with pool.connection() as conn, conn.transaction():
                yield partial(self._run_on, conn)
        except (PoolTimeout, PoolClosed) as exc:
            raise self._pool_error(exc) from None
        except psycopg.Error as exc:
            # The COMMIT or ROLLBACK itself failed (the connection was lost).
            raise self._translate(exc) from None

    async def _run_on(self, conn: Connection, operation: str, statement: Callable[..., Any], *args: Any) -> Any:
        return await self._observer.run(operation, self._guard(statement(conn, *args)))

    async def _guard(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except psycopg.Error as exc:
            raise self._translate(exc) from None

    # -- errors, in one line for a person ---------------------------------------------

    def _pool_error(self, exc: Exception, timeout: float | None = None) -> StoreError:
        waited = self.options.pool_timeout if timeout is None else timeout
        if isinstance(exc, PoolClosed) or self._pool is None:
            return StoreUnavailableError(f"the connection pool to the database {self.where} is closed")
        stats = self._pool.get_stats()
        if stats.get("pool_size", 0) >= self.options.max_size:
            return PoolExhaustedError(
                f"all {self.options.max_size} database connections stayed busy for "
                f"{waited:g} s (DOCSERVER_DB_POOL_MAX_SIZE); try again shortly"
            )
        return StoreUnavailableError(
            f"no connection to the database {self.where} within {waited:g} s: it is unreachable or refusing connections"
        )

    def _translate(self, exc: psycopg.Error) -> StoreError:
        if isinstance(exc, errors.LockNotAvailable):
            return StoreBusyError("another transaction holds a lock this operation needs (lock_timeout)")
        if isinstance(exc, errors.QueryCanceled):
            return StoreError(
                f"a database query ran longer than {self.options.statement_timeout_ms} ms "
                "(DOCSERVER_DB_STATEMENT_TIMEOUT_MS) and was cancelled"
            )
        if isinstance(exc, psycopg.OperationalError):
            return StoreUnavailableError(f"lost the connection to the database {self.where}: {self._clean(exc)}")
        return StoreError(f"database error: {self._clean(exc)}")

    def _clean(self, exc: BaseException) -> str:
        """The first line of the driver's message, without the password (libpq may quote the URL).

        A password shorter than the redactor's minimum is only replaced where a URL carries it
        (`:password@`): replacing it everywhere would mangle the message's words (a one-letter
        password would take every such letter).
        """
        lines = str(exc).strip().splitlines()
        text = (lines[0] if lines else type(exc).__name__).replace(self.url, self.where)
        password = self._password or ""
        if len(password) >= MIN_SECRET_LENGTH:
            return text.replace(password, "***")
        return text.replace(f":{password}@", ":***@") if password else text

    # -- where PostgreSQL differs from the shared flow --------------------------------

    async def vector_index_built(self) -> None:
        """The HNSW index is kept up to date by the writes themselves: nothing runs after them."""

    def _vector_search_options(self) -> tuple[Any, ...]:
        """This store's note of the filters past the exact search's thresholds, and the ef_search of a filtered
        search holding a small share of the vectors (postgres_share); None when it is no more than an unfiltered
        search's, so no share is read."""
        raised = self.options.hnsw_filtered_ef_search
        return (self.declined, raised if raised > self.options.hnsw_ef_search else None)

    async def ping(self) -> None:
        """A trivial query, waiting at most a second; a pool busy with other work still counts as reachable."""
        try:
            wait = min(self.options.pool_timeout, 1.0)
            await self._observer.run("ping", self._borrow(postgres_sql.ping, (), retry=True, wait=wait))
        except PoolExhaustedError:
            return

    async def bind_embedder(self, info: EmbedderInfo) -> None:
        # The vector index is built here, with the configured HNSW parameters.
        await self._write("bind_embedder", postgres_sql.bind_embedder, info, self.options)
        self._embedder = info

    @asynccontextmanager
    async def update_source(self, source: str) -> AsyncIterator[SourceWriter]:
        """The shared flow, then the vectors only the replaced or removed chunks pointed to are removed.

        After the commit, in a transaction of its own: the removal waits for no ingest in flight
        (see `collect_embeddings`), and leaves what it cannot remove yet to the next update.
        """
        async with super().update_source(source) as writer:
            yield writer
        try:
            await self._write("collect_embeddings", postgres_sql.collect_embeddings)
        except StoreError as exc:  # the update itself is committed; the rows stay noted for the next one
            log.warning("collect_embeddings_failed", error=str(exc))

    @asynccontextmanager
    async def refresh_lock(self, source: str) -> AsyncIterator[bool]:
        """A session-level advisory lock on one pooled connection, held for the block (see store/refresh_lock.py)."""
        pool = self._ready_pool()
        try:
            async with pool.connection() as conn:
                held = await self._observer.run(
                    "refresh_lock", self._guard(postgres_sources.try_refresh_lock(conn, source))
                )
                try:
                    yield held
                finally:
                    if held:
                        await _unlock(conn, source)
        except (PoolTimeout, PoolClosed) as exc:
            raise self._pool_error(exc) from None

    async def index_reindexed(self) -> None:
        await self._write("reindex_index", postgres_reindex.build_next_index, self.options)


async def _unlock(conn: Connection, source: str) -> None:
    """Release a refresh lock; when that fails (or is cancelled), end the session, which releases it too."""
    try:
        await postgres_sources.release_refresh_lock(conn, source)
    except psycopg.Error:
        await conn.close()
    except BaseException:
        await conn.close()
        raise
