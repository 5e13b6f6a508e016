"""An embedder bound to a store: the store records which embedder wrote its vectors, and refuses another."""

from __future__ import annotations

from docserver.embed.base import Embedder
from docserver.store.base import Store


async def bind_embedder(store: Store, embedder: Embedder) -> None:
    """Record the embedder with the store, or fail if the store holds another one's vectors."""
    await resolve_dimension(store, embedder)
    await store.bind_embedder(embedder.info)


async def resolve_dimension(store: Store, embedder: Embedder) -> None:
    """Give an embedder configured without a dimension its size: the stored one for its own vectors, else asked."""
    resolve = getattr(embedder, "resolve_dimension", None)
    if resolve is not None:
        stored = await store.embedder_info()
        if stored is not None and (stored.provider, stored.model) == (embedder.provider, embedder.model):
            embedder.dimension = embedder.dimension or stored.dimension
        else:
            await resolve()
