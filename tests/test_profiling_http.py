"""The /debug/pprof/ routes in process through httpx.ASGITransport: off switch, auth, limits, headers."""

from __future__ import annotations

import asyncio
import base64
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from docserver.config import Settings, load_settings
from docserver.observability import profiling
from docserver.observability.profiling.endpoints import parse_seconds, profiling_routes
from support.captured_logs import capture_events

TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CHALLENGE = 'Bearer realm="docserver-pprof", Basic realm="docserver-pprof"'


def profiling_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"enabled": True, "token": TOKEN, "min_interval": 0}
    values.update(overrides)
    return load_settings(profiling=values)


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def build_app(settings: Settings, on_auth_failure: Callable[[str], None] | None = None) -> Starlette:
    routes = [Route("/hello", hello), *profiling_routes(settings, on_auth_failure=on_auth_failure)]
    return Starlette(routes=routes)


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=30)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(build_app(profiling_settings(max_seconds=5))) as http:
        yield http


class Started:
    """Lets a test wait until a profile has really started (the gate is taken): a structlog processor."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self, logger: object, method_name: str, event: dict[str, Any]) -> dict[str, Any]:
        if event["event"] == "pprof_profile_started":
            self.event.set()
        return event


@pytest.fixture
def started() -> Iterator[Started]:
    watcher = Started()
    with capture_events():
        structlog.configure(processors=[watcher, *structlog.get_config()["processors"]])
        yield watcher


def assert_pprof_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-go-pprof"] == "1"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-disposition" not in response.headers
    assert response.text.endswith("\n")


def test_public_names() -> None:
    assert profiling.__all__ == ["profiling_routes"]


async def test_disabled_profiling_has_no_routes_and_404s() -> None:
    settings = load_settings(profiling={"enabled": False})
    assert profiling_routes(settings) == []
    async with client_for(build_app(settings)) as http:
        unknown = await http.get("/no-such-page")
        for path in ("/debug/pprof/", "/debug/pprof/profile", "/debug/pprof/heap", "/debug/pprof/tasks"):
            response = await http.get(path, headers=BEARER)
            assert (response.status_code, response.text) == (unknown.status_code, unknown.text) == (404, "Not Found")
    assert not tracemalloc.is_tracing()
    assert not [thread for thread in threading.enumerate() if "pprof" in thread.name]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()},  # no colon
        {"Authorization": "Bearer sécret".encode()},
        {"Authorization": b"Basic " + base64.b64encode(":s3crét".encode())},
    ],
    ids=["none", "wrong", "unknown-scheme", "bad-base64", "no-colon", "non-ascii-bearer", "non-ascii-basic"],
)
async def test_requests_without_the_token_get_401(client: httpx.AsyncClient, headers: dict[str, Any]) -> None:
    for path in ("/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/heap", "/debug/pprof/tasks"):
        response = await client.get(path, headers=headers)
        assert_pprof_error(response, 401)
        assert response.headers["www-authenticate"] == CHALLENGE


async def test_auth_failure_is_logged_without_the_token_and_counted() -> None:
    failures: list[str] = []
    app = build_app(profiling_settings(), on_auth_failure=failures.append)
    with capture_events() as events:
        async with client_for(app) as http:
            await http.get("/debug/pprof/", headers={"Authorization": "Bearer s3cret-but-not-quite"})
    assert failures == ["wrong_token"]
    [event] = [e for e in events if e["event"] == "pprof_auth_failed"]
    assert event["log_level"] == "warning"
    assert event["reason"] == "wrong_token"
    assert "s3cret" not in repr(event)


async def test_bearer_token_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.get("/debug/pprof/", headers=BEARER)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    for name in ("profile", "wall", "heap", "tasks"):
        assert f'href="{name}?' in response.text
    assert "cmdline" not in response.text


async def test_basic_password_is_accepted_whatever_the_user(client: httpx.AsyncClient) -> None:
    for user in ("", "anyone"):
        response = await client.get("/debug/pprof/", auth=(user, TOKEN))
        assert response.status_code == 200


async def test_non_ascii_token_is_compared_as_bytes() -> None:
    async with client_for(build_app(profiling_settings(token="clé-😀"))) as http:
        good = await http.get("/debug/pprof/", headers={b"Authorization": "Bearer clé-😀".encode()})
        bad = await http.get("/debug/pprof/", headers={b"Authorization": "Bearer cle-😀".encode()})
    assert (good.status_code, bad.status_code) == (200, 401)


async def test_other_methods_get_405_with_pprof_headers(client: httpx.AsyncClient) -> None:
    response = await client.post("/debug/pprof/profile", headers=BEARER)
    assert_pprof_error(response, 405)
    assert response.headers["allow"] == "GET"


async def test_without_the_token_every_method_and_path_gets_401(client: httpx.AsyncClient) -> None:
    assert_pprof_error(await client.post("/debug/pprof/profile"), 401)
    assert_pprof_error(await client.get("/debug/pprof/cmdline"), 401)


@pytest.mark.parametrize("name", ["cmdline", "goroutine", "symbol", "a/b"])
async def test_unknown_profiles_get_a_pprof_404(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/debug/pprof/{name}", headers=BEARER)
    assert_pprof_error(response, 404)
    assert response.text == f"unknown profile {name!r}; available: profile, wall, heap, tasks\n"


async def test_cpu_profile_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/debug/pprof/profile?seconds=1", headers=BEARER)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == 'attachment; filename="profile"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content[:2] == b"\x1f\x8b"  # gzip


async def test_heap_and_tasks_are_named_attachments(client: httpx.AsyncClient) -> None:
    heap = await client.get("/debug/pprof/heap?seconds=1", headers=BEARER)
    tasks = await client.get("/debug/pprof/tasks", headers=BEARER)
    assert heap.headers["content-disposition"] == 'attachment; filename="heap"'
    assert tasks.headers["content-disposition"] == 'attachment; filename="tasks"'
    for response in (heap, tasks):
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_tasks_debug_lists_every_task_with_its_stack(client: httpx.AsyncClient) -> None:
    release = asyncio.Event()

    async def parked_in_test() -> None:
        await release.wait()

    parked = [asyncio.create_task(parked_in_test(), name=f"parked-{i}") for i in range(3)]
    await asyncio.sleep(0)  # let them reach their await
    try:
        response = await client.get("/debug/pprof/tasks?debug=1", headers=BEARER)
    finally:
        release.set()
        await asyncio.gather(*parked)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    for i in range(3):
        assert f"task 'parked-{i}' pending coro=test_tasks_debug_lists_every_task_with_its_stack.<locals>." in (
            response.text
        )
    assert "Event.wait (" in response.text
    assert f"{__file__}:" in response.text


@pytest.mark.parametrize("path", ["/debug/pprof/profile", "/debug/pprof/wall", "/debug/pprof/heap"])
async def test_too_long_a_profile_is_400(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(f"{path}?seconds=6", headers=BEARER)
    assert_pprof_error(response, 400)
    assert "PROFILING_MAX_SECONDS" in response.text


async def test_unknown_mode_is_400(client: httpx.AsyncClient) -> None:
    assert_pprof_error(await client.get("/debug/pprof/profile?mode=gpu", headers=BEARER), 400)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 30), ("", 30), ("abc", 30), ("1.5", 30), ("0", 30), ("-3", 30), (" 5", 30), ("5", 5), ("+5", 5)],
)
def test_invalid_or_non_positive_seconds_mean_the_default(raw: str | None, expected: int) -> None:
    assert parse_seconds(raw, 30, 60) == expected


def test_the_default_never_exceeds_the_maximum() -> None:
    assert parse_seconds("junk", 30, 10) == 10
    assert parse_seconds("61", 30, 60) == "profile duration 61s exceeds PROFILING_MAX_SECONDS (60s)"


async def test_a_second_concurrent_profile_gets_429(client: httpx.AsyncClient, started: Started) -> None:
    first = asyncio.create_task(client.get("/debug/pprof/profile?seconds=1", headers=BEARER))
    await started.event.wait()
    for path in ("/debug/pprof/profile?seconds=1", "/debug/pprof/wall?seconds=1", "/debug/pprof/heap?seconds=1"):
        response = await client.get(path, headers=BEARER)
        assert_pprof_error(response, 429)
        assert "already running" in response.text
        assert int(response.headers["retry-after"]) >= 1
    assert (await first).status_code == 200
    assert (await client.get("/debug/pprof/profile?seconds=1", headers=BEARER)).status_code == 200


async def test_bad_seconds_profile_for_the_default_30s(started: Started) -> None:
    # The 429 of a concurrent request says when the first will be done: 30 s after it started.
    async with client_for(build_app(profiling_settings())) as http:
        first = asyncio.create_task(http.get("/debug/pprof/profile?seconds=soon", headers=BEARER))
        await started.event.wait()
        response = await http.get("/debug/pprof/profile?seconds=1", headers=BEARER)
        first.cancel()  # the client gives up: the profile stops
        with pytest.raises(asyncio.CancelledError):
            await first
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) in (29, 30)


async def test_a_profile_sooner_than_the_min_interval_gets_429_with_retry_after() -> None:
    async with client_for(build_app(profiling_settings(min_interval=60))) as http:
        assert (await http.get("/debug/pprof/heap?seconds=1", headers=BEARER)).status_code == 200
        response = await http.get("/debug/pprof/profile?seconds=1", headers=BEARER)
    assert_pprof_error(response, 429)
    assert "rate limited" in response.text
    assert 55 <= int(response.headers["retry-after"]) <= 60


async def test_a_cancelled_profile_frees_the_gate(started: Started) -> None:
    async with client_for(build_app(profiling_settings())) as http:
        first = asyncio.create_task(http.get("/debug/pprof/wall?seconds=30", headers=BEARER))
        await started.event.wait()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        response = await http.get("/debug/pprof/profile?seconds=1", headers=BEARER)
    assert response.status_code == 200
