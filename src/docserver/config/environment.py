"""The environment, read into groups: flat variables (DOCSERVER_PORT, LOG_LEVEL...) by the field they fill."""

from __future__ import annotations

from typing import Any

from pydantic_settings import EnvSettingsSource

from docserver.config.fields import Group, groups_of, variable_of


class GroupedEnvSource(EnvSettingsSource):
    """`{"http": {"port": "9000"}, ...}` from DOCSERVER_PORT=9000.

    Keyed by field name, like explicit overrides, so that an override wins when the two are merged.
    Case and empty values follow the settings' configuration, as pydantic-settings' own source does.
    """

    def __call__(self) -> dict[str, Any]:
        return {name: self._read(group) for name, group in groups_of(self.settings_cls)}

    def _read(self, group: type[Group]) -> dict[str, str]:
        found = {name: self.env_vars.get(self._key(variable_of(field))) for name, field in group.model_fields.items()}
        return {name: value for name, value in found.items() if value is not None}

    def _key(self, variable: str) -> str:
        return variable if self.case_sensitive else variable.lower()
