"""The pprof HTTP answers, shaped as Go's net/http/pprof shapes them.

A profile is an attachment of `application/octet-stream`. An error is plain
text with `X-Go-Pprof: 1` and no Content-Disposition: `go tool pprof` then
prints the message instead of failing to parse it. Every answer carries
`X-Content-Type-Options: nosniff`, and none may be cached: profiles show the
inside of the process.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import Response

COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def profile_response(body: bytes, filename: str) -> Response:
    headers = {**COMMON_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(body, 200, headers, media_type="application/octet-stream")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """`message` and a newline, as text; `go tool pprof` shows it to the user."""
    all_headers = {**COMMON_HEADERS, "X-Go-Pprof": "1", **(headers or {})}
    return Response(message + "\n", status, all_headers, media_type="text/plain")


def text_response(text: str, media_type: str = "text/plain") -> Response:
    """A page for people (the index, `tasks?debug=1`); Starlette adds `charset=utf-8`."""
    return Response(text, 200, dict(COMMON_HEADERS), media_type=media_type)
