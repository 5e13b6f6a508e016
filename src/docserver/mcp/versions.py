"""Which handshake-era protocol versions docserver agrees to at `initialize`.

2024-11-05 and 2025-03-26 require servers to accept JSON-RPC batches, which
the SDK's transport refuses. Rather than half-serve them, docserver does not
agree to them: a client asking for one is answered with the latest handshake
version, as the spec's negotiation rule says (the server answers a version it
supports; the client decides whether to go on). 2025-06-18 and later have no
batches, so nothing is lost for them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mcp.server.context import CallNext, ServerRequestContext
from mcp_types.version import LATEST_HANDSHAKE_VERSION

BATCH_ERA_VERSIONS = frozenset({"2024-11-05", "2025-03-26"})


async def refuse_batch_era(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
    """ServerMiddleware: an `initialize` asking for a batch-era version negotiates the latest instead."""
    params = ctx.params
    if ctx.method == "initialize" and params and params.get("protocolVersion") in BATCH_ERA_VERSIONS:
        ctx = replace(ctx, params={**params, "protocolVersion": LATEST_HANDSHAKE_VERSION})
    return await call_next(ctx)
