"""settings.auth: who may call /mcp, off unless set."""

from __future__ import annotations

from pathlib import Path

from docserver.config.fields import Group, env


class AuthSettings(Group):
    api_tokens_file: Path | None = env("DOCSERVER_API_TOKENS_FILE", None)
    """TOML file of static API tokens, stored as SHA-256 hashes, each with a name and scopes
    (`docs:read`, `docs:read:<source>`, `docs:admin`). Set: /mcp needs `Authorization: Bearer <token>`."""

    @property
    def enabled(self) -> bool:
        return self.api_tokens_file is not None
