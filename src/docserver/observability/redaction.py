"""Redactor: secrets never reach a log line, whatever the code that logs them.

Three nets: fields whose names mark them as secret; patterns that carry
credentials (Authorization values, passwords in URLs, tokens in query
strings); and the exact values of the secrets docserver was configured with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from functools import lru_cache
from typing import Any

MASK = "[REDACTED]"

CLOSED_SET_KEYS = frozenset(
    {"method", "route", "status", "status_code", "tool", "error_type", "query_hash", "operation", "backend"}
)
"""Fields docserver fills from closed sets (the same values as metric labels): nothing to scan."""

_SECRET_KEY = re.compile(
    r"^(authorization|proxy[-_]authorization|cookie|set[-_]cookie|x[-_]api[-_]key|api[-_]?key|token|"
    r".*[-_](token|password|passwd|secret|api[-_]?key)|password|passwd|secret|dsn|database[-_]url)$",
    re.IGNORECASE,
)
_PATTERNS = (
    # "Bearer abc.def", "Basic dXNlcjpwYXNz"
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 " + MASK),
    # scheme://user:password@host -> scheme://user:[REDACTED]@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]+@"), r"\1:" + MASK + "@"),
    # ?token=...&api_key=... in URLs
    (
        re.compile(r"(?i)([?&;](?:access_token|token|api[-_]?key|key|password|secret|signature|sig|auth)=)[^&\s#\"']+"),
        r"\1" + MASK,
    ),
    # OpenAI-style keys that were logged by something else
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), MASK),
)
_QUICK = re.compile(r"(?i:bearer|basic)|://|[?&;]\w*=|sk-")


_PLAIN = frozenset({int, float, bool, type(None)})

MIN_SECRET_LENGTH = 4
"""Configured secrets shorter than this are not masked wherever they occur: that would mangle words."""


@lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.match(key))


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        # One search decides whether a string needs any work: most do not.
        alternatives = [re.escape(secret) for secret in self._secrets] + [_QUICK.pattern]
        self._trigger = re.compile("|".join(alternatives))

    def redact_text(self, text: str) -> str:
        if not self._trigger.search(text):
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, MutableMapping):
            return self.redact_mapping(value)
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value

    def redact_mapping(self, mapping: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in mapping.items():
            kind = type(value)
            # Numbers, booleans and None carry no text to leak; closed-set fields are ours.
            if kind in _PLAIN or key in CLOSED_SET_KEYS:
                continue
            if isinstance(key, str) and _is_secret_key(key) and value != "":
                mapping[key] = MASK
            elif kind is str:
                mapping[key] = self.redact_text(value)
            elif isinstance(value, MutableMapping | list | tuple):
                mapping[key] = self.redact_value(value)
        return mapping


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_DISPLAY = Redactor()


def without_credentials(text: str) -> str:
    """`text` (an origin, an error) with the user and password of every URL in it removed, and secrets
    in query strings masked: what `list_sources` and `docserver sources` show of an origin."""
    return _DISPLAY.redact_text(_USERINFO.sub(r"\1", text))
