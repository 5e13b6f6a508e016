"""URLs that may carry a password: checked without repeating them, redacted for logs.

Error messages never repeat the value: it may hold a password.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def url_password(url: str) -> str | None:
    """The password in `scheme://user:password@host/...`, if there is one."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def redact_url(url: str) -> str:
    """`url` with its password replaced, fit for a log line or an error message."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(an unparsable URL)"
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def is_postgres_url(url: str) -> bool:
    return url.partition(":")[0].lower() in POSTGRES_SCHEMES


def _check_database_url(value: str) -> str:
    if is_postgres_url(value):
        return _check_postgres_url(value)
    if value.partition(":")[0].lower() != "sqlite":
        raise ValueError(
            "must start with sqlite:/// (for example sqlite:///docserver.db) or postgresql:// "
            "(for example postgresql://docserver:PASSWORD@db.example.com:5432/docserver)"
        )
    if not value.startswith("sqlite:///") or value == "sqlite:///":
        raise ValueError("must look like sqlite:///relative/path.db or sqlite:////absolute/path.db")
    return value


def _check_postgres_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(
            "is not a valid PostgreSQL URL; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    if not parts.netloc and "host=" not in parts.query:
        raise ValueError(
            "must name the server: postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            "(or postgresql:///DATABASE?host=/path/to/socket/folder)"
        )
    return value


def _check_redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL; expected redis://HOST:6379/0") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix:// (for example redis://127.0.0.1:6379/0)")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("must name a host, for example redis://127.0.0.1:6379/0")
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:11434/v1")
    return value.rstrip("/")


DatabaseUrl = Annotated[str, AfterValidator(_check_database_url)]
RedisUrl = Annotated[str | None, AfterValidator(_check_redis_url)]
# Without its trailing slash.
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
