"""settings.http: where and how `docserver serve` listens."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, PositiveFloat

from docserver.config.fields import CommaSeparated, Group, env

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _check_admin_addr(value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:9090")
    return value


HostPort = Annotated[str | None, AfterValidator(_check_admin_addr)]


class HttpSettings(Group):
    host: str = env("DOCSERVER_HOST", "127.0.0.1")
    """Address `docserver serve` binds to (`--host`). Anything but loopback logs a warning."""
    port: int = env("DOCSERVER_PORT", 8080, ge=0, le=65535)
    """Port `docserver serve` listens on (`--port`)."""
    allowed_hosts: CommaSeparated = env("DOCSERVER_ALLOWED_HOSTS", [])
    """Comma-separated extra `Host` values accepted on /mcp (DNS-rebinding protection),
    e.g. `docs.example.com,docs.example.com:*`. Loopback is always allowed."""
    allowed_origins: CommaSeparated = env("DOCSERVER_ALLOWED_ORIGINS", [])
    """Comma-separated extra `Origin` values accepted on /mcp, e.g. `https://app.example.com`."""
    max_request_bytes: int = env("DOCSERVER_MAX_REQUEST_BYTES", 4 * 1024 * 1024, ge=1024)
    """Largest accepted MCP request body; larger ones get 413."""
    session_idle_timeout: PositiveFloat = env("DOCSERVER_SESSION_IDLE_TIMEOUT", 1800.0)
    """Seconds after which an idle handshake-era MCP session is closed."""
    shutdown_timeout: float = env("DOCSERVER_SHUTDOWN_TIMEOUT", 10.0, gt=0, le=120)
    """On SIGTERM, seconds to let in-flight calls finish before streams are closed."""
    admin_addr: HostPort = env("DOCSERVER_ADMIN_ADDR", None)
    """`HOST:PORT` of a second listener for /metrics and /debug/pprof; they then leave the public port."""

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def admin_host_port(self) -> tuple[str, int] | None:
        if self.admin_addr is None:
            return None
        host, _, port = self.admin_addr.rpartition(":")
        return host.strip("[]"), int(port)
