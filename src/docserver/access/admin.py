"""Who may read /metrics and /debug/pprof: their own token, a `docs:admin` bearer, or either.

DOCSERVER_ADMIN_AUTH chooses. `token` (the default) keeps each endpoint's
own token (METRICS_TOKEN, PROFILING_TOKEN) and its answers exactly as they
were. `scope` accepts only a bearer token that holds `docs:admin`, a static
API token or an OAuth access token, verified as /mcp verifies it;
`token_or_scope` accepts either. A docs:admin token is also accepted as the
HTTP Basic password, since `go tool pprof` can send nothing else. Refusals are
401 with a `WWW-Authenticate` challenge, or 403 `insufficient_scope` for a
valid token without docs:admin, for the reasons of
`docserver_auth_failures_total`.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass

from docserver.access.bearer import bearer_token, challenge
from docserver.access.credentials import TokenRefused, Verifier
from docserver.access.scopes import ADMIN

OwnToken = Callable[[bytes | None], str | None]
"""An endpoint's own token check: None when the Authorization header carries it, else why not."""


@dataclass(frozen=True)
class AdminAccess:
    """The check in front of one operational endpoint; `refusal` is None for a caller it lets in."""

    own: OwnToken | None
    """The endpoint's own token, if it has one and DOCSERVER_ADMIN_AUTH accepts it."""
    admin: Verifier | None
    """The API token and OAuth verifier, when a docs:admin bearer is accepted."""
    realm: str
    own_challenge: str
    """The 401's `WWW-Authenticate` when only the own token is accepted (unchanged from before)."""
    resource_metadata: str | None = None
    basic: bool = False
    """Also offer HTTP Basic in challenges (the profiling endpoints, for `go tool pprof`)."""

    async def refusal(self, authorization: bytes | None) -> str | None:
        failure = self.own(authorization) if self.own is not None else "missing"
        if failure is None or self.admin is None:
            return failure
        return await self._admin_refusal(authorization)

    def challenge(self, reason: str) -> tuple[int, str]:
        """(status, WWW-Authenticate) for a refusal."""
        if self.admin is None:
            return 401, self.own_challenge
        status, header = challenge(reason, self.resource_metadata, realm=self.realm, scope=ADMIN)
        text = header.decode()
        return status, text + f', Basic realm="{self.realm}"' if self.basic else text

    async def _admin_refusal(self, authorization: bytes | None) -> str | None:
        assert self.admin is not None
        if not authorization:
            return "missing"
        token = presented_token(authorization)
        if token is None:
            return "malformed"
        try:
            principal = await self.admin.verify(token)
        except TokenRefused as refused:
            return refused.reason
        return None if principal.admin else "insufficient_scope"


def presented_token(authorization: bytes) -> bytes | None:
    """The token of `Bearer <token>`, or the password of `Basic base64(user:password)`."""
    scheme, _, credentials = authorization.strip().partition(b" ")
    if scheme.lower() == b"basic":
        password = basic_password(credentials.strip())
        return bearer_token([(b"authorization", b"Bearer " + password)])[0] if password else None
    return bearer_token([(b"authorization", authorization)])[0]


def basic_password(credentials: bytes) -> bytes | None:
    """The password of HTTP Basic credentials (the user name is ignored); None when they are malformed."""
    try:
        decoded = binascii.a2b_base64(credentials, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(b":")
    return password if colon else None
