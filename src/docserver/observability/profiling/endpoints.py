"""The `/debug/pprof/` routes: plain Starlette routes, for the public app or an admin app.

Every route is a small ASGI app that checks the token and then the method
before anything else, so that every answer (401, 405, 400, 429, 404, the
profile) is built here and carries `X-Content-Type-Options: nosniff`. Profiles run in
their own thread (see `worker`) while the endpoint watches `receive()`: a
client that disconnects stops its profile.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from docserver.access.admin import AdminAccess
from docserver.access.credentials import Verifier
from docserver.config import Settings
from docserver.observability.logging import get_logger
from docserver.observability.profiling import heap
from docserver.observability.profiling.auth import CHALLENGE, REALM, TokenAuth
from docserver.observability.profiling.cpu import Mode, collect_stack_profile
from docserver.observability.profiling.gate import ProfileGate
from docserver.observability.profiling.index import index_html
from docserver.observability.profiling.responses import error_response, profile_response, text_response
from docserver.observability.profiling.tasks import describe_tasks, tasks_profile, tasks_text
from docserver.observability.profiling.worker import Job, run_job

DEFAULT_SECONDS = 30
"""Go's default for `/debug/pprof/profile`, used when `seconds` is missing, invalid or <= 0."""

PROFILES = ("profile", "wall", "heap", "tasks")

Handler = Callable[[Request], Awaitable[Response | None]]
"""Answers an authenticated request; None when the client left and nobody is listening."""

_log = get_logger(__name__)
_INTEGER = re.compile(r"[+-]?[0-9]+")


def profiling_routes(
    settings: Settings, *, on_auth_failure: Callable[[str], None] | None = None, access: AdminAccess | None = None
) -> list[BaseRoute]:
    """The profiling routes, or `[]` when profiling is disabled (the paths then 404 like any unknown one).

    `on_auth_failure` is called once per rejected request, with the reason (a metrics counter).
    `access` decides who may profile (default: PROFILING_TOKEN alone, see `profiling_access`).
    Each call builds its own rate limit: mount the routes of one call only.
    """
    if not settings.profiling.enabled:
        return []
    guard = _Guard(access or profiling_access(settings), on_auth_failure)
    profiles = _Profiles(ProfileGate(settings.profiling.min_interval), settings.profiling.max_seconds)
    index = index_html(settings.profiling.max_seconds)

    async def show_index(request: Request) -> Response:
        return text_response(index, media_type="text/html")

    return [
        Route("/debug/pprof/", _Endpoint(guard, show_index, methods=("GET", "HEAD"))),
        Route("/debug/pprof/profile", _Endpoint(guard, profiles.stacks)),
        Route("/debug/pprof/wall", _Endpoint(guard, profiles.wall)),
        Route("/debug/pprof/heap", _Endpoint(guard, profiles.heap)),
        Route("/debug/pprof/tasks", _Endpoint(guard, show_tasks, methods=("GET", "HEAD"))),
        Route("/debug/pprof/{name:path}", _Endpoint(guard, unknown_profile, methods=("GET", "HEAD"))),
    ]


def profiling_access(
    settings: Settings, admin: Verifier | None = None, challenge_url: str | None = None
) -> AdminAccess:
    """Who may profile: PROFILING_TOKEN (unless DOCSERVER_ADMIN_AUTH=scope) and/or a docs:admin bearer (`admin`)."""
    token = settings.profiling.token.get_secret_value() if settings.profiling.token else ""
    own = TokenAuth(token).check if token and settings.auth.admin_auth != "scope" else None
    return AdminAccess(own, admin, REALM, CHALLENGE, challenge_url, basic=True)


def parse_seconds(raw: str | None, default: int, maximum: int) -> int | str:
    """Seconds to profile, or the 400 message. Invalid or <= 0 gives `default` (at most `maximum`)."""
    seconds = int(raw) if raw is not None and _INTEGER.fullmatch(raw) else 0
    if seconds <= 0:
        return min(default, maximum)
    if seconds > maximum:
        return f"profile duration {seconds}s exceeds PROFILING_MAX_SECONDS ({maximum}s)"
    return seconds


@dataclass(frozen=True)
class _Guard:
    access: AdminAccess
    on_failure: Callable[[str], None] | None

    async def reject(self, scope: Scope) -> Response | None:
        """A 401 (403 for a token without docs:admin) unless the request may profile."""
        header = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        reason = await self.access.refusal(header)
        if reason is None:
            return None
        client = scope.get("client")
        _log.warning("pprof_auth_failed", reason=reason, path=scope["path"], client_ip=client[0] if client else None)
        if self.on_failure is not None:
            self.on_failure(reason)
        status, challenge = self.access.challenge(reason)
        return error_response(status, "unauthorized" if status == 401 else "forbidden", {"WWW-Authenticate": challenge})


class _Endpoint:
    """Authentication, then the method, then the handler."""

    def __init__(self, guard: _Guard, handler: Handler, methods: Collection[str] = ("GET",)) -> None:
        self._guard = guard
        self._handler = handler
        self._methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._respond(Request(scope, receive))
        if response is not None:
            await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response | None:
        # The token first: without it, every path and method gets the same 401.
        rejection = await self._guard.reject(request.scope)
        if rejection is not None:
            return rejection
        if request.method not in self._methods:
            return error_response(405, "method not allowed", {"Allow": ", ".join(self._methods)})
        return await self._handler(request)


class _Profiles:
    """The rate-limited profiles: CPU, wall and heap share one gate."""

    def __init__(self, gate: ProfileGate, max_seconds: int) -> None:
        self._gate = gate
        self._max_seconds = max_seconds

    async def stacks(self, request: Request) -> Response | None:
        mode = request.query_params.get("mode", "cpu")
        if mode not in ("cpu", "wall"):
            return error_response(400, f"unknown mode {mode!r}: use cpu or wall")
        return await self._sampled(request, "wall" if mode == "wall" else "cpu")

    async def wall(self, request: Request) -> Response | None:
        return await self._sampled(request, "wall")

    async def heap(self, request: Request) -> Response | None:
        seconds = parse_seconds(request.query_params.get("seconds"), heap.DEFAULT_SECONDS, self._max_seconds)
        if isinstance(seconds, str):
            return error_response(400, seconds)
        collect_garbage = request.query_params.get("gc", "0") not in ("", "0")

        def job(cancel: threading.Event) -> bytes:
            return heap.collect_heap_profile(seconds, cancel, collect_garbage=collect_garbage)

        return await self._run(request, "heap", seconds, job)

    async def _sampled(self, request: Request, mode: Mode) -> Response | None:
        seconds = parse_seconds(request.query_params.get("seconds"), DEFAULT_SECONDS, self._max_seconds)
        if isinstance(seconds, str):
            return error_response(400, seconds)

        def job(cancel: threading.Event) -> bytes:
            return collect_stack_profile(float(seconds), cancel, mode)

        return await self._run(request, mode, seconds, job)

    async def _run(self, request: Request, kind: str, seconds: int, job: Job[bytes]) -> Response | None:
        retry_after = self._gate.acquire(seconds)
        if retry_after is not None:
            reason = "a profile is already running" if self._gate.busy else "profiles are rate limited"
            message = f"{reason}; retry in {retry_after} s"
            return error_response(429, message, {"Retry-After": str(retry_after)})
        started = time.monotonic()
        _log.info("pprof_profile_started", kind=kind, seconds=seconds)
        try:
            body = await _until_disconnect(request.receive, job, name=f"docserver-pprof-{kind}")
        except Exception:
            _log.exception("pprof_profile_failed", kind=kind)
            return error_response(500, f"{kind} profile failed; see the server log")
        finally:
            self._gate.release()
        duration_ms = round((time.monotonic() - started) * 1000)
        _log.info(
            "pprof_profile_finished",
            kind=kind,
            duration_ms=duration_ms,
            client_gone=body is None,
            bytes=len(body or b""),
        )
        if body is None:
            return None
        return profile_response(body, "heap" if kind == "heap" else "profile")


async def unknown_profile(request: Request) -> Response:
    name = request.path_params["name"]
    return error_response(404, f"unknown profile {name!r}; available: {', '.join(PROFILES)}")


async def show_tasks(request: Request) -> Response:
    infos = describe_tasks()
    if request.query_params.get("debug", "0") not in ("", "0"):
        return text_response(tasks_text(infos))
    return profile_response(tasks_profile(infos), "tasks")


async def _until_disconnect(receive: Receive, job: Job[bytes], *, name: str) -> bytes | None:
    """Run `job` in its thread; stop it and return None if the client disconnects first."""
    cancel = threading.Event()
    gone = asyncio.Event()

    async def watch() -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception:  # the connection broke in a way the server reports as an error: gone too
            pass
        gone.set()
        cancel.set()

    watcher = asyncio.create_task(watch())
    try:
        body = await run_job(job, cancel, name=name)
    finally:
        watcher.cancel()
    return None if gone.is_set() else body
