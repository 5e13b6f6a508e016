"""docserver over real HTTP with an identity provider stand-in as its issuer, and the official MCP client as caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from docserver.app import create_app
from docserver.config import Settings
from docserver.config.auth import AuthSettings
from docserver.ingest.pipeline import ingest
from docserver.observability.metrics import Metrics
from docserver.runtime import Runtime
from support.idp import IdentityProvider, identity_provider
from support.inprocess import new_metrics
from support.loopback import loopback_socket, port_of, serve_over_http


@asynccontextmanager
async def docserver(
    settings: Settings, indexed: tuple[Runtime, Metrics], idp: IdentityProvider, **auth: Any
) -> AsyncIterator[str]:
    """docserver over HTTP with `idp` as its issuer; the provider mints tokens for its audience."""
    runtime, metrics = indexed
    sock = loopback_socket()
    public_url = f"http://127.0.0.1:{port_of(sock)}"
    auth_settings = AuthSettings(issuer=idp.issuer, public_url=public_url, **auth)
    idp.audience = auth_settings.expected_audience
    app = create_app(settings.model_copy(update={"auth": auth_settings}), runtime, metrics)
    async with serve_over_http(app, sock) as url:
        yield url


class Caller:
    """The official MCP client with a bearer token (or none), remembering every HTTP response it got."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.responses: list[httpx2.Response] = []

    async def call(self, token: str | None, tool: str = "list_sources", arguments: dict[str, Any] | None = None) -> Any:
        """The tool's structured result; the client's exception when the server refuses."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}

        async def remember(response: httpx2.Response) -> None:
            await response.aread()
            self.responses.append(response)

        hooks = {"response": [remember]}
        async with (
            httpx2.AsyncClient(headers=headers, event_hooks=hooks, timeout=10) as http,
            Client(streamable_http_client(f"{self.url}/mcp", http_client=http), mode="auto") as client,
        ):
            result = await client.call_tool(tool, arguments or {})
            return result.structured_content if not result.is_error else ("error", result.content[0].text)  # type: ignore[union-attr]

    async def refused(self, token: str | None) -> list[httpx2.Response]:
        """The answers the client got for `token` before it gave up (it raises; the answers are checked)."""
        before = len(self.responses)
        with pytest.raises(Exception):  # noqa: B017 - whatever the SDK raises; the responses are checked
            await self.call(token)
        answers = self.responses[before:]
        assert answers and len({(answer.status_code, answer.headers["www-authenticate"]) for answer in answers}) == 1
        return answers


def failures(metrics: Metrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("docserver_auth_failures_total", {"endpoint": "mcp", "reason": reason})
    assert value is not None
    return value


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    """An identity provider on loopback: issuer metadata, a JWKS, tokens minted with real RSA and EC keys."""
    with identity_provider() as provider:
        yield provider


@pytest.fixture
async def indexed(settings: Settings, runtime: Runtime, corpus: Path) -> tuple[Runtime, Metrics]:
    """The test corpus in the store, and a runtime measured into fresh metrics."""
    await ingest(runtime.store, runtime.embedder, [corpus], "corpus")
    metrics = new_metrics()
    return Runtime(settings, runtime.store, runtime.embedder, metrics), metrics


def names(listed: dict[str, Any]) -> list[str]:
    """The source names of a list_sources result."""
    return [source["name"] for source in listed["sources"]]
