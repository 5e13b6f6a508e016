"""OpenAIEmbedder against httpx.MockTransport, plus a few runs against tests/embedding_server.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from docserver.config import EmbeddingSettings, Settings
from docserver.embed import openai as openai_module
from docserver.embed.factory import open_embedder
from docserver.embed.hashing import HashEmbedder
from docserver.embed.openai import OpenAIEmbedder
from docserver.errors import EmbeddingError
from support.embedding_server_fixture import start_embedding_server

BASE_URL = "http://embeddings.test/v1"
CANARY_KEY = "sk-canary-123"
DIMENSION = 4

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def vectors_for(texts: list[str]) -> list[list[float]]:
    """Row i is (i+1) * e0 + e1: distinct, unnormalised, easy to check."""
    return [[float(i + 1), 1.0, 0.0, 0.0] for i in range(len(texts))]


def ok(request: httpx.Request) -> httpx.Response:
    texts = json.loads(request.content)["input"]
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors_for(texts))]
    return httpx.Response(200, json={"object": "list", "data": data, "model": "test-model"})


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(code, json=body if body is not None else {"error": {"message": "nope"}}, headers=headers)


def read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


class FakeApi:
    """Answers with the scripted replies in order, then with valid embeddings; records requests."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if self.replies else ok
        return reply(request) if callable(reply) else reply

    def body(self, n: int = 0) -> Any:
        return json.loads(self.requests[n].content)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., OpenAIEmbedder]]:
    made: list[OpenAIEmbedder] = []

    def make(api: FakeApi, **options: Any) -> OpenAIEmbedder:
        settings: dict[str, Any] = {"base_url": BASE_URL, "model": "test-model", "max_retries": 2}
        embedder = OpenAIEmbedder(transport=httpx.MockTransport(api), backoff_base=0.001, **(settings | options))
        made.append(embedder)
        return embedder

    yield make
    for embedder in made:
        await embedder.aclose()


async def embed_error(embedder: OpenAIEmbedder, texts: list[str] | None = None) -> EmbeddingError:
    with pytest.raises(EmbeddingError) as caught:
        await embedder.embed(texts or ["hello"])
    return caught.value


# --- request shape -------------------------------------------------------------------------------


async def test_request_is_an_openai_embeddings_call(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi()
    await make(api, api_key=CANARY_KEY).embed(["alpha", "beta"])
    request = api.requests[0]
    assert (request.method, str(request.url)) == ("POST", f"{BASE_URL}/embeddings")
    assert request.headers["authorization"] == f"Bearer {CANARY_KEY}"
    assert api.body() == {"model": "test-model", "input": ["alpha", "beta"], "encoding_format": "float"}


async def test_dimensions_is_sent_only_when_configured(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi()
    await make(api, dimension=DIMENSION).embed(["alpha"])
    assert api.body()["dimensions"] == DIMENSION


async def test_no_authorization_header_without_a_key(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi()
    await make(api).embed(["alpha"])
    assert "authorization" not in api.requests[0].headers


async def test_headers_hook_is_merged_into_every_request(make: Callable[..., OpenAIEmbedder]) -> None:
    counter = itertools.count(1)
    api = FakeApi(status(503))
    embedder = make(api, headers_hook=lambda: {"X-Correlation-ID": f"req-{next(counter)}"})
    await embedder.embed(["alpha"])
    assert [r.headers["x-correlation-id"] for r in api.requests] == ["req-1", "req-2"]


async def test_texts_are_sent_batch_size_at_a_time(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi()
    rows = await make(api, batch_size=2).embed(["a", "b", "c", "d", "e"])
    assert [body["input"] for body in map(api.body, range(3))] == [["a", "b"], ["c", "d"], ["e"]]
    assert rows.shape == (5, DIMENSION)


# --- responses -----------------------------------------------------------------------------------


async def test_rows_follow_index_not_position(make: Callable[..., OpenAIEmbedder]) -> None:
    data = [
        {"index": 1, "embedding": [0.0, 2.0, 0.0, 0.0]},
        {"index": 0, "embedding": [3.0, 0.0, 0.0, 0.0]},
    ]
    rows = await make(FakeApi(status(200, {"data": data}))).embed(["first", "second"])
    np.testing.assert_array_equal(rows, [[1, 0, 0, 0], [0, 1, 0, 0]])


async def test_rows_are_float32_and_unit_length(make: Callable[..., OpenAIEmbedder]) -> None:
    rows = await make(FakeApi()).embed(["a", "b", "c"])
    assert rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(rows[1], np.array([2, 1, 0, 0]) / np.sqrt(5), rtol=1e-6)


def items(*embeddings: Any) -> dict[str, Any]:
    return {"data": [{"index": i, "embedding": e} for i, e in enumerate(embeddings)]}


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(status(200, items([1.0, 0.0])), id="fewer-rows-than-inputs"),
        pytest.param(status(200, items([1.0], [1.0], [1.0])), id="more-rows-than-inputs"),
        pytest.param(status(200, items([1.0, "x"], [1.0, 2.0])), id="non-numeric"),
        pytest.param(status(200, items([True, 1.0], [1.0, 2.0])), id="boolean"),
        pytest.param(status(200, items([1.0, 2.0], [1.0])), id="ragged"),
        pytest.param(status(200, items([], [])), id="empty-vectors"),
        pytest.param(status(200, items("AAAA", "AAAA")), id="base64-string"),
        pytest.param(status(200, items([1e300, 0.0], [1.0, 0.0])), id="beyond-float32"),
        pytest.param(status(200, items([10**400, 0.0], [1.0, 0.0])), id="huge-integer"),
        pytest.param(status(200, {"data": [{"index": 0, "embedding": [1.0]}] * 2}), id="duplicate-index"),
        pytest.param(status(200, {"object": "list"}), id="no-data"),
        pytest.param(status(200, [1, 2]), id="not-an-object"),
        pytest.param(httpx.Response(200, text="<html>proxy login</html>"), id="not-json"),
    ],
)
async def test_malformed_responses_are_invalid_response(
    make: Callable[..., OpenAIEmbedder], reply: httpx.Response
) -> None:
    api = FakeApi(reply)
    error = await embed_error(make(api), ["one", "two"])
    assert error.reason == "invalid_response"
    assert len(api.requests) == 1


async def test_vectors_of_another_size_than_configured_are_rejected(make: Callable[..., OpenAIEmbedder]) -> None:
    error = await embed_error(make(FakeApi(), dimension=8))
    assert error.reason == "invalid_response"
    assert "4-dimensional" in str(error)


async def test_later_batches_must_keep_the_learned_size(make: Callable[..., OpenAIEmbedder]) -> None:
    embedder = make(FakeApi(ok, status(200, items([1.0, 2.0]))))
    await embedder.embed(["a"])
    assert (await embed_error(embedder)).reason == "invalid_response"


# --- dimension -----------------------------------------------------------------------------------


async def test_resolve_dimension_probes_once_when_not_configured(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi()
    embedder = make(api)
    with pytest.raises(RuntimeError, match="resolve_dimension"):
        _ = embedder.info
    assert await embedder.resolve_dimension() == DIMENSION
    assert await embedder.resolve_dimension() == DIMENSION
    assert len(api.requests) == 1
    assert embedder.info.dimension == DIMENSION


async def test_resolve_dimension_sends_nothing_when_configured(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi()
    embedder = make(api, dimension=DIMENSION)
    assert await embedder.resolve_dimension() == DIMENSION
    assert api.requests == []
    assert embedder.info.dimension == DIMENSION


# --- retries -------------------------------------------------------------------------------------


async def test_rate_limit_is_retried_after_the_requested_wait(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(status(429, headers={"Retry-After": "0.2"}))
    started = time.monotonic()
    rows = await make(api).embed(["alpha"])
    assert time.monotonic() - started >= 0.2  # backoff alone would wait ~1 ms
    assert len(api.requests) == 2
    assert rows.shape == (1, DIMENSION)


async def test_retry_after_is_capped(make: Callable[..., OpenAIEmbedder], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_module, "MAX_RETRY_DELAY", 0.01)
    api = FakeApi(status(429, headers={"Retry-After": "3600"}))
    async with asyncio.timeout(10):
        await make(api).embed(["alpha"])
    assert len(api.requests) == 2


async def test_persistent_rate_limit_gives_up(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(*[status(429)] * 3)
    error = await embed_error(make(api, max_retries=2))
    assert error.reason == "rate_limited"
    assert len(api.requests) == 3


async def test_server_errors_are_retried_then_reported(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(*[status(500)] * 4)
    error = await embed_error(make(api, max_retries=3))
    assert error.reason == "http_error"
    assert "HTTP 500" in str(error)
    assert len(api.requests) == 4


async def test_timeouts_are_retried_then_reported(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(*[read_timeout] * 3)
    error = await embed_error(make(api, max_retries=2))
    assert error.reason == "timeout"
    assert len(api.requests) == 3


async def test_connection_errors_are_retried_then_reported(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(*[refused] * 2)
    error = await embed_error(make(api, max_retries=1))
    assert error.reason == "connection"
    assert len(api.requests) == 2


async def test_a_transient_failure_then_success_returns_rows(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(read_timeout, status(502))
    rows = await make(api).embed(["alpha"])
    assert rows.shape == (1, DIMENSION)
    assert len(api.requests) == 3


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [401, 403])
async def test_rejected_key_is_auth_without_retry_or_leak(
    make: Callable[..., OpenAIEmbedder], code: int, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {CANARY_KEY}"}}
    api = FakeApi(status(503, echo), status(code, echo))
    embedder = make(api, api_key=CANARY_KEY)
    with caplog.at_level(logging.DEBUG):
        error = await embed_error(embedder)
    assert error.reason == "auth"
    assert f"HTTP {code}" in str(error)
    assert len(api.requests) == 2  # the 503 was retried, the refusal was not
    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    for text in (str(error), repr(error), repr(embedder), logged):
        assert CANARY_KEY not in text


async def test_server_error_text_is_scrubbed_of_the_key(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(status(400, {"error": {"message": f"bad request from key {CANARY_KEY}"}}))
    error = await embed_error(make(api, api_key=CANARY_KEY))
    assert CANARY_KEY not in str(error)
    assert "bad request from key ***" in str(error)


async def test_missing_key_is_named_as_such(make: Callable[..., OpenAIEmbedder]) -> None:
    error = await embed_error(make(FakeApi(status(401))))
    assert error.reason == "auth"
    assert "none is set" in str(error)


async def test_not_found_names_model_and_path(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(status(404, {"error": "model 'test-model' not found, try pulling it first"}))
    error = await embed_error(make(api))
    assert error.reason == "not_found"
    assert "'test-model'" in str(error)
    assert "/v1/embeddings" in str(error)
    assert len(api.requests) == 1


@pytest.mark.parametrize("code", [400, 422])
async def test_other_client_errors_carry_a_short_excerpt(make: Callable[..., OpenAIEmbedder], code: int) -> None:
    message = "input is too long for this model. " * 20
    api = FakeApi(status(code, {"error": {"message": message}}))
    error = await embed_error(make(api))
    assert error.reason == "http_error"
    assert "input is too long for this model." in str(error)
    assert len(str(error)) < 300
    assert len(api.requests) == 1


async def test_userinfo_and_query_stay_out_of_messages(make: Callable[..., OpenAIEmbedder]) -> None:
    api = FakeApi(*[status(500)] * 3)
    embedder = make(api, base_url="http://user:hunter2secret@embeddings.test/v1")
    error = await embed_error(embedder)
    assert "http://embeddings.test/v1/embeddings" in str(error)
    assert "hunter2secret" not in str(error) + repr(embedder)


# --- factory -------------------------------------------------------------------------------------


def test_factory_builds_the_hash_embedder_by_default() -> None:
    assert isinstance(open_embedder(Settings(embedding=EmbeddingSettings(provider="hash"))), HashEmbedder)


async def test_factory_builds_the_openai_embedder_from_settings() -> None:
    embedding = EmbeddingSettings(
        provider="openai",
        url="http://127.0.0.1:9/v1",
        model="nomic-embed-text",
        api_key=SecretStr(CANARY_KEY),
        dimensions=64,
        batch_size=8,
        max_retries=1,
    )
    settings = Settings(embedding=embedding)
    embedder = open_embedder(settings)
    try:
        assert isinstance(embedder, OpenAIEmbedder)
        assert (embedder.model, embedder.dimension, embedder.batch_size) == ("nomic-embed-text", 64, 8)
        assert embedder.max_retries == 1
        assert CANARY_KEY not in repr(embedder)
    finally:
        await embedder.aclose()


# --- against the real test server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with start_embedding_server() as (base_url, _process):
        yield base_url


@pytest.fixture
async def admin(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.removesuffix("/v1")) as client:
        yield client
        await client.post("/admin/fault", json={"mode": "none"})


@pytest.mark.slow
async def test_real_server_returns_normalised_rows(server: str) -> None:
    embedder = OpenAIEmbedder(base_url=server, model="bag-of-words")
    try:
        rows = await embedder.embed(["configure the server", "server configuration", "banana bread recipe"])
        assert rows.shape == (3, 256)
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
        assert rows[0] @ rows[1] > rows[0] @ rows[2]
        assert embedder.info.dimension == 256
    finally:
        await embedder.aclose()


@pytest.mark.slow
async def test_real_server_honours_dimensions(server: str) -> None:
    embedder = OpenAIEmbedder(base_url=server, model="bag-of-words", dimension=64)
    try:
        assert (await embedder.embed(["alpha"])).shape == (1, 64)
    finally:
        await embedder.aclose()


@pytest.mark.slow
async def test_real_server_unknown_model_is_not_found(server: str) -> None:
    embedder = OpenAIEmbedder(base_url=server, model="missing-model")
    try:
        assert (await embed_error(embedder)).reason == "not_found"
    finally:
        await embedder.aclose()


@pytest.mark.slow
async def test_real_server_503_is_retried(server: str, admin: httpx.AsyncClient) -> None:
    before = (await admin.get("/admin/stats")).json()["requests"]
    await admin.post("/admin/fault", json={"mode": "error", "status": 503, "count": 1})
    embedder = OpenAIEmbedder(
        base_url=server,
        model="bag-of-words",
        backoff_base=0.001,
        headers_hook=lambda: {"X-Correlation-ID": "corr-42"},
    )
    try:
        assert (await embedder.embed(["alpha"])).shape == (1, 256)
    finally:
        await embedder.aclose()
    stats = (await admin.get("/admin/stats")).json()
    assert stats["requests"] - before == 2
    assert stats["last_headers"]["x-correlation-id"] == "corr-42"


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[str]:
    with start_embedding_server("--api-key", "sk-right") as (base_url, _process):
        yield base_url


@pytest.mark.slow
async def test_real_server_enforces_the_api_key(keyed_server: str) -> None:
    right = OpenAIEmbedder(base_url=keyed_server, model="bag-of-words", api_key="sk-right")
    wrong = OpenAIEmbedder(base_url=keyed_server, model="bag-of-words", api_key=CANARY_KEY)
    try:
        assert (await right.embed(["alpha"])).shape == (1, 256)
        error = await embed_error(wrong)
        assert error.reason == "auth"
        assert CANARY_KEY not in str(error)
    finally:
        await right.aclose()
        await wrong.aclose()
