"""Who may profile: the PROFILING_TOKEN as `Authorization: Bearer` or as the Basic password.

`go tool pprof` cannot send headers, but a URL `http://:TOKEN@host/...` makes
it send HTTP Basic, so the password is accepted as well as a Bearer token
(the user name is ignored). Everything is compared as bytes, exactly as it
came off the wire, with `hmac.compare_digest`: constant time, and a
non-ASCII header is simply a wrong token (comparing `str`s would raise).
"""

from __future__ import annotations

import hmac
from typing import Literal

from docserver.access.admin import basic_password

REALM = "docserver-pprof"
CHALLENGE = f'Bearer realm="{REALM}", Basic realm="{REALM}"'
"""The `WWW-Authenticate` value of a 401: both schemes, so browsers offer a login box."""

Failure = Literal["missing", "unsupported_scheme", "malformed", "wrong_token"]


class TokenAuth:
    """Checks an `Authorization` header value against the profiling token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the profiling token must not be empty")
        self._expected = token.encode("utf-8")

    def check(self, authorization: bytes | None) -> Failure | None:
        """None when the header carries the token, otherwise why not (for logs; never the token)."""
        if not authorization:
            return "missing"
        scheme, _, credentials = authorization.strip().partition(b" ")
        scheme = scheme.lower()
        if scheme == b"bearer":
            presented = credentials.strip()
        elif scheme == b"basic":
            password = basic_password(credentials.strip())
            if password is None:
                return "malformed"
            presented = password
        else:
            return "unsupported_scheme"
        return None if hmac.compare_digest(presented, self._expected) else "wrong_token"
