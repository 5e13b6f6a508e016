"""settings.sources: keeping sources fresh from where they live."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from docserver.config.fields import Group, env

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(value: Any) -> Any:
    """`6h`, `30m`, `1d`, `90s` or plain seconds; `off`, `0` or empty: None (no schedule)."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in ("", "off", "0", "none"):
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError("must be a duration such as 6h, 30m, 1d or 3600 (seconds), or off")
    return float(match[1]) * _UNIT_SECONDS[match[2]]


Duration = Annotated[float | None, BeforeValidator(_seconds)]


class SourcesSettings(Group):
    refresh_interval: Duration = env("DOCSERVER_REFRESH_INTERVAL", None, ge=60)
    """How often `serve` refreshes every source from its recorded origin (`6h`, `30m`, `1d`); off when unset.
    With several replicas each refreshes on its own schedule; one process refreshes a source at a time (the
    others skip it as `busy`), and a source whose origin has not moved is `unchanged` at the cost of a fetch."""
