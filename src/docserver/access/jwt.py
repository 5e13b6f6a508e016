"""OAuth 2.1 access tokens: signed JWTs from the configured issuer, for this resource.

PyJWT checks the signature and the registered claims; this module decides
what is acceptable before it is asked:

- `alg` comes from an allow-list of asymmetric algorithms, and must fit the
  key's type (and the key's own `alg`, if it names one): never `none`, never
  HMAC, so a public key can never be used as a shared secret;
- the key comes from the issuer's JWKS, by `kid`;
- `exp` is required; `exp`, `nbf` and `iat` are checked with `clock_skew`;
  `iss` must be the issuer and `aud` must contain the audience (RFC 8707);
- scopes (`scope`, space-separated, or `scp`, a list) map to docserver's:
  scopes docserver does not know (`openid`, `email`...) grant nothing.

The principal is the token's `sub` (else `client_id`, `azp`), never the token.
"""

from __future__ import annotations

import json
from typing import Any

import jwt
from jwt import PyJWK

from docserver.access.credentials import TokenRefused
from docserver.access.jwks import Jwk, JwksCache
from docserver.access.scopes import Principal, principal_of
from docserver.config.auth import AuthSettings

ALGORITHMS_BY_KEY_TYPE = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}
ALLOWED_ALGORITHMS = frozenset().union(*ALGORITHMS_BY_KEY_TYPE.values())
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
MAX_NAME_LENGTH = 200
"""A longer subject is cut in log lines and rate-limit keys."""

# First match wins: InvalidSignatureError is a DecodeError, and so on.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "bad_signature"),
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "expired"),  # not yet valid: outside its validity window all the same
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.InvalidKeyError, "unknown_key"),
)
_MISSING_CLAIM_REASONS = {"aud": "wrong_audience", "iss": "wrong_issuer"}


class JwtVerifier:
    """Verifies an access token against the issuer's keys and this resource's audience."""

    def __init__(self, settings: AuthSettings, keys: JwksCache) -> None:
        assert settings.issuer is not None
        self.issuer = settings.issuer
        self.audience = settings.expected_audience
        self.leeway = settings.clock_skew
        self.keys = keys
        self._prepared: dict[tuple[str, str], PyJWK] = {}

    async def verify(self, token: bytes) -> Principal:
        header = _header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in ALLOWED_ALGORITHMS:
            raise TokenRefused("bad_signature")  # `none`, HS256 and friends: nothing docserver trusts
        if kid is not None and not isinstance(kid, str):
            raise TokenRefused("malformed")
        jwk = await self.keys.key(kid)
        if jwk is None:
            raise TokenRefused("unknown_key")
        claims = self._decode(token, self._prepare(jwk, algorithm))
        return principal_of(principal_name(claims), granted_scopes(claims))

    def _decode(self, token: bytes, key: PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRefused(_MISSING_CLAIM_REASONS.get(exc.claim, "malformed")) from None
        except jwt.PyJWTError as exc:
            raise TokenRefused(refusal_reason(exc)) from None

    def _prepare(self, jwk: Jwk, algorithm: str) -> PyJWK:
        """The key bound to `algorithm`, if they fit; parsed once per (key, algorithm)."""
        if not key_fits(jwk, algorithm):
            raise TokenRefused("bad_signature")
        cache_key = (json.dumps(jwk, sort_keys=True), algorithm)
        prepared = self._prepared.get(cache_key)
        if prepared is None:
            try:
                prepared = PyJWK(jwk, algorithm)
            except jwt.PyJWTError:
                raise TokenRefused("unknown_key") from None
            self._prepared[cache_key] = prepared
        return prepared


def key_fits(jwk: Jwk, algorithm: str) -> bool:
    """Whether a key of this type (curve, and stated `alg`) may verify `algorithm`."""
    if algorithm not in ALGORITHMS_BY_KEY_TYPE.get(jwk.get("kty", ""), frozenset()):
        return False
    if jwk.get("alg") not in (None, algorithm):
        return False
    return algorithm not in _CURVES or jwk.get("crv") == _CURVES[algorithm]


def refusal_reason(exc: Exception) -> str:
    return next((reason for kind, reason in _REASONS if isinstance(exc, kind)), "malformed")


def _header(token: bytes) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRefused("malformed") from None


def principal_name(claims: dict[str, Any]) -> str:
    """Who the token speaks for: the user (`sub`), else the client (`client_id`, `azp`)."""
    for claim in ("sub", "client_id", "azp"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value[:MAX_NAME_LENGTH]
    raise TokenRefused("malformed")


def granted_scopes(claims: dict[str, Any]) -> list[str]:
    """The token's scopes: `scope` (RFC 8693/9068, space-separated) or `scp` (a list, or a string)."""
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [scope for scope in value if isinstance(scope, str)]
    return []
