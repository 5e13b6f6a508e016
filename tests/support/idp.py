"""An identity provider stand-in on loopback: issuer metadata and a JWKS over real HTTP, and a token minter.

    with identity_provider() as idp:
        token = idp.mint(scope="docs:read")                 # RS256, signed by the published RSA key
        token = idp.mint(key="ec", scope="docs:read:team-a")  # ES256, by the published EC key
        idp.down = True                                      # metadata and JWKS answer 503

It holds a real RSA (2048) and a real EC (P-256) key; `publish`/`withdraw`
change what the JWKS serves (key rotation), `jwks_fetches` counts the
fetches. It serves RFC 8414 metadata (`/.well-known/oauth-authorization-server`)
only; OIDC discovery is covered by `oidc_only=True`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: PrivateKeyTypes

    @property
    def public(self) -> PublicKeyTypes:
        return self.private.public_key()  # type: ignore[union-attr]

    def jwk(self) -> dict[str, Any]:
        codec = RSAAlgorithm if self.algorithm.startswith(("RS", "PS")) else ECAlgorithm
        return {**codec.to_jwk(self.public, as_dict=True), "kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class IdentityProvider:
    base_url: str = ""
    audience: str = ""
    keys: dict[str, SigningKey] = field(default_factory=dict)
    """Every key the provider can sign with, by name ("rsa", "ec", ...)."""
    published: set[str] = field(default_factory=set)
    """The names of the keys the JWKS serves."""
    down: bool = False
    oidc_only: bool = False
    jwks_fetches: int = 0
    metadata_fetches: int = 0

    @property
    def issuer(self) -> str:
        return self.base_url

    def publish(self, key: SigningKey, name: str) -> None:
        self.keys[name] = key
        self.published.add(name)

    def withdraw(self, name: str) -> None:
        self.published.discard(name)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.audience, "sub": "alice", "iat": now, "exp": now + 300}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def mint(
        self, *, key: str = "rsa", kid: str | None = "", headers: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        """A JWT signed by key `key`, with the standard claims (override with `name=value`, drop with `name=None`)."""
        signer = self.keys[key]
        header = {"kid": signer.kid if kid == "" else kid, **(headers or {})}
        header = {name: value for name, value in header.items() if value is not None}
        return jwt.encode(self.claims(**claims), signer.private, algorithm=signer.algorithm, headers=header)  # type: ignore[arg-type]

    def mint_unsigned(self, **claims: Any) -> str:
        """`alg: none`: no signature at all."""
        return _compact({"alg": "none", "typ": "JWT", "kid": self.keys["rsa"].kid}, self.claims(**claims), b"")

    def mint_hs256_with_public_key(self, **claims: Any) -> str:
        """The key-confusion attack: HS256 with the published RSA public key (PEM) as the shared secret."""
        signer = self.keys["rsa"]
        header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
        signing_input = _compact(header, self.claims(**claims), None)
        signature = hmac.new(signer.public_pem(), signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for name, key in self.keys.items() if name in self.published]}

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.base_url}/jwks",
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "response_types_supported": ["code"],
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes | None) -> str:
    parts = [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode())]
    if signature is not None:
        parts.append(_b64(signature))
    return ".".join(parts)


def _handler(idp: IdentityProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            documents = {"/jwks": idp.jwks, "/.well-known/openid-configuration": idp.metadata}
            if not idp.oidc_only:
                documents["/.well-known/oauth-authorization-server"] = idp.metadata
            if self.path == "/jwks":
                idp.jwks_fetches += 1
            elif self.path.startswith("/.well-known/"):
                idp.metadata_fetches += 1
            if idp.down:
                self._answer(503, {"error": "down"})
            elif self.path in documents:
                self._answer(200, documents[self.path]())
            else:
                self._answer(404, {"error": "not found"})

        def _answer(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def identity_provider(audience: str = "") -> Iterator[IdentityProvider]:
    """The provider, serving on a free loopback port, with a published RSA ("rsa") and EC ("ec") key."""
    idp = IdentityProvider(audience=audience)
    idp.publish(rsa_key("rsa-1"), "rsa")
    idp.publish(ec_key("ec-1"), "ec")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(idp))
    idp.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="idp", daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
