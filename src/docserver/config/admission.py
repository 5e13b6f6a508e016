"""settings.admission: how much /mcp work one replica accepts, off unless set."""

from __future__ import annotations

from pydantic import PositiveFloat, PositiveInt

from docserver.config.fields import Group, env


class AdmissionSettings(Group):
    max_inflight: PositiveInt | None = env("DOCSERVER_MAX_INFLIGHT", None)
    """Most MCP requests (POST /mcp) one replica works on at once; beyond it and its queue,
    503 with `Retry-After`. Unset: no limit."""
    max_queued: int | None = env("DOCSERVER_MAX_QUEUED", None, ge=0)
    """MCP requests that may wait for a free slot when `DOCSERVER_MAX_INFLIGHT` are in flight
    (default: as many as `DOCSERVER_MAX_INFLIGHT`; 0: no queue). The queue is for bursts: once it
    overflows or a wait times out (sustained overload) it takes no one for 1 s."""
    queue_timeout: PositiveFloat = env("DOCSERVER_QUEUE_TIMEOUT", 0.005, le=60)
    """Seconds a queued MCP request waits for a slot before it gets 503. The default, 5 ms, keeps
    every refusal fast and adds at most that to an admitted request; a longer wait smooths bursts
    but every queued request then waits up to it, admitted or not."""
    rate_limit_per_second: PositiveFloat | None = env("DOCSERVER_RATE_LIMIT_PER_SECOND", None)
    """Sustained MCP requests per second allowed to one caller (the authenticated principal, else
    the client address); beyond it 429 with `Retry-After`. Unset: no limit."""
    rate_limit_burst: PositiveInt | None = env("DOCSERVER_RATE_LIMIT_BURST", None)
    """MCP requests one caller may make at once above its rate (the token bucket's size;
    default: one second's worth of `DOCSERVER_RATE_LIMIT_PER_SECOND`, at least 1)."""

    @property
    def queue_size(self) -> int:
        """Waiting room behind the in-flight slots (0 when admission is off)."""
        if self.max_inflight is None:
            return 0
        return self.max_inflight if self.max_queued is None else self.max_queued

    @property
    def burst(self) -> int:
        """The token bucket's size (0 when rate limiting is off)."""
        if self.rate_limit_per_second is None:
            return 0
        return self.rate_limit_burst or max(1, round(self.rate_limit_per_second))
