"""settings.profiling: the pprof-compatible /debug/pprof/ endpoints, off unless asked for."""

from __future__ import annotations

from pydantic import SecretStr

from docserver.config.fields import Group, env


class ProfilingSettings(Group):
    enabled: bool = env("ENABLE_PROFILING", False)
    """Serve the pprof-compatible /debug/pprof/ endpoints. Off: they answer 404 and nothing runs."""
    token: SecretStr | None = env("PROFILING_TOKEN", None)
    """Bearer token, or the Basic-auth password, for the profiling endpoints. Required when profiling is
    enabled, unless DOCSERVER_ADMIN_AUTH lets a `docs:admin` token in instead."""
    max_seconds: int = env("PROFILING_MAX_SECONDS", 60, ge=1, le=600)
    """Longest CPU or wall profile a client may ask for; longer requests get 400."""
    min_interval: float = env("PROFILING_MIN_INTERVAL", 60.0, ge=0, le=3600)
    """Seconds between the start of two profiles; sooner gets 429 with Retry-After."""
