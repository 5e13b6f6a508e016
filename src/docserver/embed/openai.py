"""OpenAIEmbedder: any OpenAI-compatible `POST {base_url}/embeddings` API.

OpenAI itself, Ollama, vLLM, Hugging Face TEI and llama.cpp all speak it. One
long-lived HTTP client per embedder. Transient failures (timeouts, dropped
connections, 429, 5xx) are retried with exponential backoff and jitter;
everything else fails at once, with a reason from EmbeddingError's closed set.

The API key lives only in the HTTP client's default headers: no message, repr
or log line built here contains it, URLs in messages lose their userinfo and
query, and error text echoed from the API is scrubbed of the key.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from opentelemetry.trace import SpanKind

from docserver.embed.base import BatchObserver, Embedder, Vectors, normalize
from docserver.errors import EmbeddingError
from docserver.observability import tracing
from docserver.observability.logging import get_logger
from docserver.store.base import EmbedderInfo

MAX_RETRY_DELAY = 30.0
"""Longest single wait between attempts, in seconds, whatever Retry-After asks for."""

_EXCERPT_CHARS = 200
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PROBE_TEXT = "dimension probe"
log = get_logger(__name__)


class _Transient(Exception):
    """A failure worth another attempt; becomes an EmbeddingError when attempts run out."""

    def __init__(self, message: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.retry_after = retry_after


class OpenAIEmbedder(Embedder):
    """Embeds through an OpenAI-compatible API; rows come back float32 and L2-normalised.

    When `dimension` is None the API's native size is used and stays unknown
    until the first successful call. Code that needs it before embedding
    anything (`info`, binding a store) must first `await resolve_dimension()`;
    `info` raises RuntimeError until then rather than report a wrong size.

    `headers_hook` runs before every HTTP attempt (retries included); its
    headers (X-Correlation-ID, traceparent, ...) are added to that request.
    `transport` is the test seam; `backoff_base` scales the retry waits.
    """

    provider = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        dimension: int | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_base: float = 0.5,
        headers_hook: Callable[[], Mapping[str, str]] | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        super().__init__(model=model, dimension=dimension or 0, batch_size=batch_size, observer=observer)
        self.timeout = timeout
        self.max_retries = max_retries
        self._requested_dimension = dimension
        self._backoff_base = backoff_base
        self._headers_hook = headers_hook
        self._has_key = bool(api_key)
        parts = urlsplit(base_url.rstrip("/"))
        self._url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}/embeddings"
        self._client_span_attributes = {
            "http.request.method": "POST",
            "url.full": self._url,
            "server.address": parts.hostname or "",
            "server.port": parts.port or (443 if parts.scheme == "https" else 80),
        }
        self._path = f"{parts.path}/embeddings"
        self._secrets = tuple(secret for secret in (api_key, parts.password) if secret)
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(url={self._url!r}, model={self.model!r}, dimension={self.dimension or None})"

    @property
    def info(self) -> EmbedderInfo:
        if not self.dimension:
            raise RuntimeError("the embedding dimension is not known yet: await resolve_dimension() first")
        return super().info

    async def resolve_dimension(self) -> int:
        """The vector size, embedding one probe text first if it is not known yet."""
        if not self.dimension:
            await self.embed_batch([_PROBE_TEXT])
        return self.dimension

    async def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        body: dict[str, Any] = {"model": self.model, "input": list(texts), "encoding_format": "float"}
        if self._requested_dimension is not None:
            body["dimensions"] = self._requested_dimension
        response = await self._post(body)
        return normalize(self._vectors(response, len(texts)))

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                return await self._attempt(body)
            except _Transient as failure:
                if attempt >= self.max_retries:
                    attempts = f"{attempt + 1} attempt{'s' if attempt else ''}"
                    raise self._error(f"{failure.message} (gave up after {attempts})", failure.reason) from None
                delay = self._delay(attempt, failure.retry_after)
                log.warning("embedding_retry", reason=failure.reason, attempt=attempt + 1, delay_s=round(delay, 3))
                await asyncio.sleep(delay)
                attempt += 1

    async def _attempt(self, body: dict[str, Any]) -> httpx.Response:
        # One client span per attempt; the hook runs inside it, so the
        # traceparent sent is this span's and the provider's span nests under it.
        with tracing.span("POST", SpanKind.CLIENT, self._client_span_attributes) as client_span:
            response = await self._send(body)
            if client_span is not None:
                client_span.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 400:
                    tracing.mark_error(client_span, str(response.status_code))
        return self._check(response)

    async def _send(self, body: dict[str, Any]) -> httpx.Response:
        headers = dict(self._headers_hook()) if self._headers_hook else None
        try:
            return await self._client.post("embeddings", json=body, headers=headers)
        except httpx.TimeoutException:
            message = f"embedding API at {self._url} timed out after {self.timeout:g} s"
            raise _Transient(message, "timeout") from None
        except httpx.TransportError as exc:
            message = f"cannot reach the embedding API at {self._url} ({type(exc).__name__})"
            raise _Transient(message, "connection") from None

    def _check(self, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if status == 429:
            message = f"embedding API at {self._url} is rate limiting requests (HTTP 429)"
            raise _Transient(message, "rate_limited", _retry_after(response))
        if status >= 500:
            message = f"embedding API at {self._url} failed (HTTP {status}){_detail(response)}"
            raise _Transient(message, "http_error")
        if not 200 <= status < 300:
            raise self._rejection(response)
        return response

    def _rejection(self, response: httpx.Response) -> EmbeddingError:
        status = response.status_code
        if status in (401, 403):
            if self._has_key:
                return self._error(f"embedding API rejected the API key (HTTP {status})", "auth")
            return self._error(f"embedding API requires an API key (HTTP {status}); none is set", "auth")
        if status == 404:
            message = (
                f"embedding API has no model {self.model!r} at {self._path} (HTTP 404){_detail(response)}; "
                "check the embedding URL (the part before /embeddings) and the model name"
            )
            return self._error(message, "not_found")
        return self._error(f"embedding API refused the request (HTTP {status}){_detail(response)}", "http_error")

    def _vectors(self, response: httpx.Response, count: int) -> Vectors:
        try:
            wide = np.asarray(_embeddings(response.json(), count), dtype=np.float64)
        except (ValueError, OverflowError) as exc:  # JSONDecodeError is a ValueError
            message = f"embedding API at {self._url} sent an invalid response: {exc}"
            raise self._error(message, "invalid_response") from None
        if not (np.isfinite(wide).all() and np.abs(wide).max() <= _FLOAT32_MAX):
            raise self._error(f"embedding API at {self._url} sent numbers out of float32 range", "invalid_response")
        rows = wide.astype(np.float32)
        size = rows.shape[1]
        if self.dimension and size != self.dimension:
            message = f"embedding API at {self._url} sent {size}-dimensional vectors, expected {self.dimension}"
            raise self._error(message, "invalid_response")
        self.dimension = size
        return rows

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_DELAY)
        backoff = self._backoff_base * 2.0**attempt
        return min(backoff * (0.5 + random.random()), MAX_RETRY_DELAY)

    def _error(self, message: str, reason: str) -> EmbeddingError:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return EmbeddingError(message, reason)


def _embeddings(body: Any, count: int) -> list[list[float]]:
    """The `embedding` lists of an OpenAI-shaped body, in input order; ValueError names what is wrong."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ValueError("no `data` list of objects")
    if len(data) != count:
        raise ValueError(f"{len(data)} embeddings for {count} inputs")
    if any("index" in item for item in data):
        indexes = [item.get("index") for item in data]
        if not all(type(index) is int for index in indexes) or sorted(indexes) != list(range(count)):
            raise ValueError("`index` values are not 0..n-1")
        data = sorted(data, key=lambda item: int(item["index"]))
    rows = [item.get("embedding") for item in data]
    for row in rows:
        # type() rather than isinstance: JSON booleans must not pass as numbers.
        if not isinstance(row, list) or not row or not all(type(x) is float or type(x) is int for x in row):
            raise ValueError("an `embedding` is not a non-empty list of numbers")
    if len({len(row) for row in rows}) != 1:
        raise ValueError("embeddings of different lengths")
    return rows


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms` or numeric `Retry-After`), if any."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(response.headers.get(name, "")) * scale
        except ValueError:
            continue  # absent, or an HTTP date: fall back to our own backoff
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def _detail(response: httpx.Response) -> str:
    """`: <message>` from an OpenAI-style (or Ollama/TEI-style) error body, or ''."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str) or not message.strip():
        return ""
    flat = " ".join(message.split())
    return ": " + (flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 1] + "…")
