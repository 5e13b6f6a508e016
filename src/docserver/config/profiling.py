"""settings.profiling: the pprof-compatible /debug/pprof/ endpoints, off unless asked for."""

from __future__ import annotations

from pydantic import SecretStr, model_validator

from docserver.config.fields import Group, env


class ProfilingSettings(Group):
    enabled: bool = env("ENABLE_PROFILING", False)
    """Serve the pprof-compatible /debug/pprof/ endpoints. Off: they answer 404 and nothing runs."""
    token: SecretStr | None = env("PROFILING_TOKEN", None)
    """Required when profiling is enabled: Bearer token, or the Basic-auth password."""
    max_seconds: int = env("PROFILING_MAX_SECONDS", 60, ge=1, le=600)
    """Longest CPU or wall profile a client may ask for; longer requests get 400."""
    min_interval: float = env("PROFILING_MIN_INTERVAL", 60.0, ge=0, le=3600)
    """Seconds between the start of two profiles; sooner gets 429 with Retry-After."""

    @model_validator(mode="after")
    def _check_token(self) -> ProfilingSettings:
        if self.enabled and not (self.token and self.token.get_secret_value()):
            raise ValueError(
                "ENABLE_PROFILING=true needs PROFILING_TOKEN: the profiling endpoints are never served without "
                "authentication"
            )
        return self
