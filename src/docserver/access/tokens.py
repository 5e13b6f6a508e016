"""Static API tokens: a TOML file of named, hashed tokens with scopes.

    [[tokens]]
    name = "ci-bot"
    sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    scopes = ["docs:read:python"]

Only the SHA-256 of a token is stored: tokens are random (32 bytes from
`new_token`), so a fast hash is as safe as a slow one and costs microseconds.
A presented token is hashed and compared with every entry in constant time,
so neither the answer's timing nor its path depends on how much matched.
`python -m docserver.access.tokens NAME SCOPE...` prints a new token and its entry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from docserver.access.scopes import Principal, check_scope, principal_of
from docserver.errors import ConfigError

TOKEN_PREFIX = "dsk_"


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    principal: Principal


class TokenTable:
    """The configured tokens; `match` finds the one a caller presents."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, presented: bytes) -> Principal | None:
        """The principal of `presented`, or None; every entry is compared, in constant time."""
        digest = hashlib.sha256(presented).digest()
        found = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.principal
        return found


def load_tokens(path: Path) -> TokenTable:
    """The token file at `path`; ConfigError with one line saying what is wrong."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"DOCSERVER_API_TOKENS_FILE {path}: cannot read it ({exc})") from None
    rows = document.get("tokens", [])
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"DOCSERVER_API_TOKENS_FILE {path}: no [[tokens]] entries")
    entries = [_entry(row, path, number) for number, row in enumerate(rows, 1)]
    names = [entry.principal.name for entry in entries]
    if len(set(names)) != len(names):
        raise ConfigError(f"DOCSERVER_API_TOKENS_FILE {path}: token names must be unique")
    return TokenTable(entries)


def _entry(row: object, path: Path, number: int) -> _Entry:
    where = f"DOCSERVER_API_TOKENS_FILE {path}, token {number}"
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: must be a table with name, sha256 and scopes")
    name, digest, scopes = row.get("name"), row.get("sha256"), row.get("scopes")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: `name` must be a non-empty string")
    if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
        raise ConfigError(f"{where} ({name}): `sha256` must be 64 hex digits (the token's SHA-256)")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(scope, str) for scope in scopes):
        raise ConfigError(f"{where} ({name}): `scopes` must be a non-empty list of strings")
    try:
        checked = [check_scope(scope) for scope in scopes]
    except ValueError as exc:
        raise ConfigError(f"{where} ({name}): {exc}") from None
    return _Entry(bytes.fromhex(digest), principal_of(name, checked))


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in text)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_entry(name: str, token: str, scopes: list[str]) -> str:
    """The TOML entry for `token`: what goes in the file (the token itself never does)."""
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    quoted = ", ".join(f'"{check_scope(scope)}"' for scope in scopes)
    return f'[[tokens]]\nname = "{name}"\nsha256 = "{digest}"\nscopes = [{quoted}]\n'


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m docserver.access.tokens NAME SCOPE...", file=sys.stderr)
        return 2
    token = new_token()
    print(f"# token for {argv[0]} (give it to the client; it is not stored): {token}")
    print(token_entry(argv[0], token, argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
