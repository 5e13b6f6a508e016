"""The request's correlation id, in a contextvar.

One ContextVar, read directly: it reaches every layer and every task
spawned during the request (tasks copy the context), and reading it costs
a lookup, not a scan of every contextvar in the context.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

_correlation_id: ContextVar[str | None] = ContextVar("docserver_correlation_id", default=None)


def current_correlation_id() -> str | None:
    return _correlation_id.get()


def bind_correlation_id(value: str) -> Token[str | None]:
    return _correlation_id.set(value)


def reset_correlation_id(token: Token[str | None]) -> None:
    _correlation_id.reset(token)
