"""Settings: read once from the environment (and CLI flags), validated, then passed in.

No other module reads `os.environ`. Settings come in groups by concern (`settings.http.port`,
`settings.store.url`...), and each field names its environment variable, unchanged from the
flat days (DOCSERVER_PORT, LOG_LEVEL, OTEL_*...). `ENVIRONMENT_VARIABLES` lists them all;
`docs/configuration.md` documents each one, and a test fails when one is missing there.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from docserver.config.admission import AdmissionSettings
from docserver.config.auth import AuthSettings
from docserver.config.cache import CacheSettings
from docserver.config.embedding import EmbeddingSettings
from docserver.config.environment import GroupedEnvSource
from docserver.config.fields import groups_of, variable_of
from docserver.config.http import HttpSettings
from docserver.config.profiling import ProfilingSettings
from docserver.config.sources import SourcesSettings
from docserver.config.store import StoreSettings
from docserver.config.telemetry import TelemetrySettings
from docserver.config.urls import redact_url, url_password
from docserver.errors import ConfigError

__all__ = [
    "ENVIRONMENT_VARIABLES",
    "AdmissionSettings",
    "AuthSettings",
    "CacheSettings",
    "ConfigError",
    "EmbeddingSettings",
    "HttpSettings",
    "ProfilingSettings",
    "Settings",
    "SourcesSettings",
    "StoreSettings",
    "TelemetrySettings",
    "env_name",
    "load_settings",
    "redact_url",
    "unknown_variables",
    "url_password",
]


class Settings(BaseSettings):
    """Every setting docserver reads, by group."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="forbid")

    http: HttpSettings = Field(default_factory=HttpSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    profiling: ProfilingSettings = Field(default_factory=ProfilingSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, GroupedEnvSource(settings_cls)

    @model_validator(mode="after")
    def _check_profiling_access(self) -> Settings:
        token = self.profiling.token
        if self.profiling.enabled and not (token and token.get_secret_value()) and not self.auth.admin_scope:
            raise ValueError(
                "ENABLE_PROFILING=true needs PROFILING_TOKEN (or DOCSERVER_ADMIN_AUTH=scope or token_or_scope): "
                "the profiling endpoints are never served without authentication"
            )
        return self

    def replace(self, **changes: Mapping[str, Any]) -> Settings:
        """A copy with some values of some groups replaced: `settings.replace(embedding={"provider": "local"})`.

        Like `model_copy(update=...)`, the new values are not validated.
        """
        groups = {name: getattr(self, name).model_copy(update=values) for name, values in changes.items()}
        return self.model_copy(update=groups)

    def secrets(self) -> list[str]:
        """Every configured secret value, for the log redactor."""
        values = [self.embedding.api_key, self.profiling.token, self.telemetry.metrics_token]
        found = [value.get_secret_value() for value in values if value is not None]
        for url in (self.store.url, self.cache.redis_url):
            password = url_password(url) if url else None
            if password:
                found.append(password)
        return found


# "group.field" -> its environment variable, for every setting: the one table the docs are checked against.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    f"{group_name}.{name}": variable_of(field)
    for group_name, group in groups_of(Settings)
    for name, field in group.model_fields.items()
}


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(variable, the closest known one or None) for each `DOCSERVER_*` variable that is no setting.

    Otherwise a misspelt setting is ignored without a word.
    """
    known = set(ENVIRONMENT_VARIABLES.values())
    unknown = sorted(name for name in environ if name.upper().startswith("DOCSERVER_") and name.upper() not in known)
    return [(name, _closest(name.upper(), known)) for name in unknown]


def _closest(name: str, known: set[str]) -> str | None:
    # Compared without the prefix every candidate shares, or it alone would make anything look close.
    suffixes = {variable.removeprefix("DOCSERVER_"): variable for variable in known}
    matches = difflib.get_close_matches(name.removeprefix("DOCSERVER_"), suffixes, n=1, cutoff=0.6)
    return suffixes[matches[0]] if matches else None


def env_name(setting: str) -> str:
    """The environment variable behind a setting, e.g. `env_name("http.port") == "DOCSERVER_PORT"`."""
    return ENVIRONMENT_VARIABLES[setting]


def load_settings(**overrides: Mapping[str, Any]) -> Settings:
    """Build Settings from the environment plus explicit overrides by group (CLI flags).

    `load_settings(http={"port": 9000})`; None values are left out, so an absent flag leaves the
    environment in force. An invalid value raises ConfigError with one line naming the variable
    and what is allowed, never a pydantic traceback.
    """
    clean: dict[str, Any] = {
        group: {key: value for key, value in values.items() if value is not None} for group, values in overrides.items()
    }
    try:
        return Settings(**clean)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(part) for part in first.get("loc") or ()]
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    setting = ".".join(loc)
    if setting in Settings.model_fields:
        setting = ""  # a group's own check (e.g. the pool sizes) names its variables in the message
    name = ENVIRONMENT_VARIABLES.get(".".join(loc[:2]), setting)
    if not name:
        return f"invalid settings: {message}"
    return f"invalid setting {name}: {message}"
