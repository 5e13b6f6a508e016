"""A small OpenAI-compatible embedding server that tests run as a real subprocess.

    python tests/embedding_server.py --port 0 [--api-key KEY] [--host 127.0.0.1]

prints `READY <port>` on stdout once it listens. It stands in for an external
service, so it imports nothing from docserver and has its own embedding
scheme: md5-hashed word buckets plus character trigrams, L2-normalised.

Faults are switched at run time with `POST /admin/fault`, JSON
`{"mode": "none"|"slow"|"hold"|"error"|"rate_limit"|"bad_json"|"wrong_count",
"delay": seconds, "status": code, "count": n}`: `count` requests get the fault
(omitted: until the next `mode: none`). `hold` keeps each request waiting
until the next `POST /admin/fault` (a test's gate: `held` in the stats counts
the requests waiting), `slow` waits `delay` seconds, `error`
answers `status` (500 by default), `rate_limit` answers 429 with
`Retry-After: delay` when `delay` is given. `GET /admin/stats` reports the
number of embedding requests and selected headers of the last one.

Like any service in production, it logs one JSON object per line on stdout
(after the `READY` line): one `embeddings_request` line per embedding
request, with `service_name="embedding-server"`, the caller's
`X-Correlation-ID` as `correlation_id`, and the `trace_id` of an incoming
W3C `traceparent`, so its lines can be merged with docserver's and followed
by one correlation id.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import socket
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEFAULT_DIMENSION = 256
MISSING_MODEL = "missing-model"
FAULT_MODES = frozenset({"none", "slow", "hold", "error", "rate_limit", "bad_json", "wrong_count"})
RECORDED_HEADERS = ("x-correlation-id", "traceparent", "tracestate")
_WORD = re.compile(r"[a-z0-9]+")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
SERVICE_NAME = "embedding-server"


@dataclass
class Fault:
    mode: str = "none"
    delay: float = 0.0
    status: int = 500
    count: int | None = None


@dataclass
class State:
    api_key: str | None
    fault: Fault = field(default_factory=Fault)
    requests: int = 0
    last_headers: dict[str, str] = field(default_factory=dict)
    held: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (and replaced) by the next fault change: what `hold` requests wait for."""

    def take_fault(self) -> Fault:
        """The fault for this request, counting it down."""
        fault = self.fault
        if fault.mode != "none" and fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.fault = Fault()
        return fault


def _bucket(feature: str, dimension: int) -> int:
    return int.from_bytes(hashlib.md5(feature.encode()).digest()[:8], "little") % dimension


def embed(text: str, dimension: int) -> list[float]:
    vector = [0.0] * dimension
    lowered = text.lower()
    for word in _WORD.findall(lowered):
        vector[_bucket("w:" + word, dimension)] += 1.0
    for start in range(len(lowered) - 2):
        vector[_bucket("c:" + lowered[start : start + 3], dimension)] += 0.25
    norm = math.sqrt(sum(value * value for value in vector))
    return [round(value / norm, 6) for value in vector] if norm else vector


def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def log_event(event: str, *, level: str = "info", logger: str = "embedding_server", **fields: Any) -> None:
    """One JSON object per line on stdout, flushed at once: the file a log shipper would tail."""
    line = {
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "level": level,
        "event": event,
        "logger": logger,
        "service_name": SERVICE_NAME,
        **{key: value for key, value in fields.items() if value is not None},
    }
    print(json.dumps(line, ensure_ascii=True), flush=True)


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` header, or None when absent or malformed."""
    match = _TRACEPARENT.match(traceparent or "")
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


async def embeddings(request: Request) -> Response:
    """POST /v1/embeddings, logged once as `embeddings_request` before the answer leaves."""
    started = time.perf_counter()
    response = await _embeddings(request)
    log_event(
        "embeddings_request",
        level="info" if response.status_code < 400 else "warning",
        correlation_id=request.headers.get("x-correlation-id"),
        trace_id=trace_id_of(request.headers.get("traceparent")),
        status_code=response.status_code,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return response


async def _embeddings(request: Request) -> Response:
    state: State = request.app.state.server
    state.requests += 1
    state.last_headers = {name: request.headers[name] for name in RECORDED_HEADERS if name in request.headers}
    if state.api_key is not None and request.headers.get("authorization") != f"Bearer {state.api_key}":
        return error(401, "Incorrect API key provided.", code="invalid_api_key")
    fault = state.take_fault()
    if fault.mode == "slow":
        await asyncio.sleep(fault.delay)
    elif fault.mode == "hold":
        state.held += 1
        await state.release.wait()
        state.held -= 1
    elif fault.mode == "error":
        return error(fault.status, f"injected error {fault.status}", kind="server_error")
    elif fault.mode == "rate_limit":
        headers = {"Retry-After": f"{fault.delay:g}"} if fault.delay else None
        response = error(429, "Rate limit reached.", kind="requests", code="rate_limit_exceeded")
        response.headers.update(headers or {})
        return response
    elif fault.mode == "bad_json":
        return Response("{not json", media_type="application/json")
    return _embed_response(await _json(request), drop_one=fault.mode == "wrong_count")


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None


def _embed_response(body: Any, *, drop_one: bool) -> Response:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return error(400, "The body must be a JSON object with a `model` string.")
    model = body["model"]
    if model == MISSING_MODEL:
        return error(404, f"The model `{model}` does not exist.", code="model_not_found")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        return error(400, "`input` must be a string or a non-empty list of strings.")
    dimension = body.get("dimensions", DEFAULT_DIMENSION)
    if type(dimension) is not int or not 1 <= dimension <= 8192:
        return error(400, "`dimensions` must be an integer between 1 and 8192.")
    data = [
        {"object": "embedding", "index": index, "embedding": embed(text, dimension)} for index, text in enumerate(texts)
    ]
    tokens = sum(len(_WORD.findall(text.lower())) for text in texts)
    return JSONResponse(
        {
            "object": "list",
            "data": data[:-1] if drop_one else data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def set_fault(request: Request) -> Response:
    body = await _json(request)
    if not isinstance(body, dict) or body.get("mode") not in FAULT_MODES:
        return JSONResponse({"error": f"mode must be one of {sorted(FAULT_MODES)}"}, status_code=400)
    count = body.get("count")
    fault = Fault(
        mode=body["mode"],
        delay=float(body.get("delay") or 0.0),
        status=int(body.get("status") or 500),
        count=int(count) if count is not None else None,
    )
    state: State = request.app.state.server
    state.fault = fault
    state.release.set()  # the requests held so far go on
    state.release = asyncio.Event()
    return JSONResponse({"mode": fault.mode, "count": fault.count})


async def stats(request: Request) -> Response:
    state: State = request.app.state.server
    return JSONResponse({"requests": state.requests, "held": state.held, "last_headers": state.last_headers})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(*, api_key: str | None, port: int) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        # The socket is already listening; this line is what the test waits for.
        print(f"READY {port}", flush=True)
        yield

    app = Starlette(
        routes=[
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/admin/fault", set_fault, methods=["POST"]),
            Route("/admin/stats", stats),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
    app.state.server = State(api_key=api_key)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY`")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = create_app(api_key=args.api_key, port=port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
