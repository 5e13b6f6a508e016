"""How a setting is declared: one line naming its type, environment variable, default and limits.

A group of settings is a `Group`: each field's `validation_alias` is its environment variable
and the docstring under it says what it does. Groups are filled by field name (the alias is
the variable's name, read by `environment.py`), so explicit overrides merge with the environment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.fields import FieldInfo

T = TypeVar("T")


class Group(BaseModel):
    """Settings of one concern; every field is read from the environment variable it names."""

    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=False, use_attribute_docstrings=True
    )


def env(variable: str, default: T, **limits: Any) -> T:
    """A setting read from `variable`, `default` when unset; `limits` are pydantic's (`ge`, `le`, `repr`...)."""
    declared: T = Field(default, validation_alias=variable, **limits)
    return declared


def variable_of(field: FieldInfo) -> str:
    """The environment variable behind a Group field."""
    alias = field.validation_alias
    assert isinstance(alias, str | AliasChoices)
    return alias if isinstance(alias, str) else str(alias.choices[0])


def groups_of(settings: type[BaseModel]) -> Iterator[tuple[str, type[Group]]]:
    """(name, Group class) for each group field of `settings`."""
    for name, field in settings.model_fields.items():
        group = field.annotation
        assert isinstance(group, type) and issubclass(group, Group), name
        yield name, group


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _split(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except ValueError:
            raise ValueError("must be a comma-separated list or a JSON list of strings") from None
    return [part.strip() for part in stripped.split(",") if part.strip()]


# Enumerated values ignore case: `Annotated[Literal["a", "b"], LOWERCASE]`.
LOWERCASE = BeforeValidator(_lower)
UPPERCASE = BeforeValidator(_upper)
# `a,b,c` or a JSON list.
CommaSeparated = Annotated[list[str], BeforeValidator(_split)]
