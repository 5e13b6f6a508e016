"""Runtime: the store, the embedder and the search service, opened and closed together.

A server may start before its database answers: with `wait_for_store=False`
a store that cannot be reached yet is connected in the background, with
backoff, while readiness reports why it is not ready. One-shot commands
(ingest, search) wait for nothing: they fail at once, with one line.
`docserver reindex` opens the two without binding them (`open_unbound`):
it is the command that moves a store to another embedder. Building each
part is its own module's (`store.factory`, `embed.factory`,
`cache.open_shared_cache`); binding them, `binding`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from docserver.binding import bind_embedder, resolve_dimension
from docserver.cache import open_shared_cache
from docserver.config import Settings
from docserver.embed.base import Embedder
from docserver.embed.factory import open_embedder
from docserver.errors import DocserverError, EmbeddingError
from docserver.observability.logging import get_logger
from docserver.observability.metrics import Metrics
from docserver.search import SearchService
from docserver.store.base import Store
from docserver.store.factory import open_store

if TYPE_CHECKING:
    from docserver.sharedcache import SharedCache

log = get_logger("docserver.runtime")

EMBEDDER_CHECK_TTL = 15.0
"""Seconds a successful embedder check is trusted: probes must not hammer a paid API."""
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 10.0
"""Backoff bounds (seconds) between attempts to reach a store that was down at start."""


def _transient(store: Store) -> tuple[type[Exception], ...]:
    """The errors after which opening `store` again later may succeed (the database is down)."""
    return (*store.transient_errors, EmbeddingError) if store.transient_errors else ()


class Runtime:
    """Everything a request needs, plus the readiness check over it."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        embedder: Embedder,
        metrics: Metrics | None = None,
        shared_cache: SharedCache | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.metrics = metrics
        self.service = SearchService(
            store,
            embedder,
            cache_size=settings.cache.size,
            cache_ttl=settings.cache.ttl,
            shared_cache=shared_cache,
            instruments=metrics.for_search() if metrics is not None else None,
        )
        if metrics is not None:
            metrics.set_build_info(backend=store.backend, embedder=embedder.provider)
        self.draining = False
        self.store_problem: str | None = None
        """Why the store is not usable yet (it is being connected in the background), or None."""
        self._embedder_checked_at = float("-inf")

    async def check(self) -> dict[str, str]:
        """Component -> "ok" or the reason it is not ready."""
        status = {"store": "ok", "embedder": "ok"}
        if self.store_problem is not None:
            status["store"] = self.store_problem
        else:
            try:
                await self.store.ping()
            except DocserverError as exc:
                status["store"] = str(exc)
        now = time.monotonic()
        if now - self._embedder_checked_at > EMBEDDER_CHECK_TTL:
            try:
                await self.embedder.ping()
                self._embedder_checked_at = now
            except EmbeddingError as exc:
                status["embedder"] = str(exc)
        return status

    def connect_in_background(self, first_error: DocserverError) -> asyncio.Task[None]:
        """Report the store not ready, and keep trying to open it (see `_reconnect`)."""
        self.store_problem = f"{first_error}; retrying in the background"
        log.warning("store_unavailable", backend=self.store.backend, error=str(first_error), retrying=True)
        return asyncio.create_task(self._reconnect(), name="docserver-store-connect")

    async def _reconnect(self) -> None:
        """Open the store and bind the embedder, with backoff, until it works or is refused.

        One warning when the store is first found unreachable (above) and one
        line when it connects: a database down for an hour does not flood the logs.
        """
        transient = _transient(self.store)
        delay = RECONNECT_FIRST_DELAY
        attempts = 1
        while True:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
            attempts += 1
            try:
                await _open_and_bind(self.store, self.embedder)
            except transient as exc:
                self.store_problem = f"{exc}; retrying in the background"
                continue
            except DocserverError as exc:
                self.store_problem = str(exc)
                log.error("store_refused", backend=self.store.backend, error=str(exc))
                return
            self.store_problem = None
            log.info("store_connected", backend=self.store.backend, attempts=attempts)
            return


@asynccontextmanager
async def open_runtime(
    settings: Settings, metrics: Metrics | None = None, *, wait_for_store: bool = True
) -> AsyncIterator[Runtime]:
    """Open the store and embedder, bind the embedder to the store, close everything on exit.

    With `wait_for_store=False` (the server) an unreachable database does not
    stop start-up: the runtime comes up not ready and connects in the
    background. Refusals (another embedder's vectors, a newer schema, no
    pgvector) still fail at once.
    """
    store = open_store(settings, metrics)
    embedder = open_embedder(settings, metrics.for_embedder() if metrics is not None else None)
    shared_cache = open_shared_cache(settings)
    connecting: asyncio.Task[None] | None = None
    try:
        try:
            await _open_and_bind(store, embedder)
        except _transient(store) as exc:
            if wait_for_store:
                raise
            runtime = Runtime(settings, store, embedder, metrics, shared_cache)
            assert isinstance(exc, DocserverError)
            connecting = runtime.connect_in_background(exc)
        else:
            runtime = Runtime(settings, store, embedder, metrics, shared_cache)
        yield runtime
    finally:
        if connecting is not None:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        if shared_cache is not None:
            await shared_cache.aclose()
        await embedder.aclose()
        await store.close()


@asynccontextmanager
async def open_unbound(settings: Settings) -> AsyncIterator[tuple[Store, Embedder]]:
    """The store and the configured embedder, open but not bound to each other (for `docserver reindex`)."""
    store = open_store(settings)
    embedder = open_embedder(settings)
    try:
        await store.open()
        await resolve_dimension(store, embedder)
        yield store, embedder
    finally:
        await embedder.aclose()
        await store.close()


async def _open_and_bind(store: Store, embedder: Embedder) -> None:
    await store.open()
    await bind_embedder(store, embedder)
