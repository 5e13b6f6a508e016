"""MkDocs hook: the pages generated from the code, so they cannot disagree with it.

- index.md is README.md, its `docs/...` links made relative to the site.
- reference/settings.md is one row per setting, read from the Settings table.
- reference/metrics.md is one row per metric, read from a fresh Metrics registry.

`settings_rows` is the one place that knows how the settings table is laid out:
when the settings change shape (groups of fields), only it changes.
`python docs/gen_reference.py` prints both reference pages.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from docserver.config import Settings
from docserver.config.fields import groups_of, variable_of
from docserver.observability.lean import LeanFamily
from docserver.observability.metrics import LogDropCollector, Metrics, PoolCollector

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_PAGE = "reference/settings.md"
METRICS_PAGE = "reference/metrics.md"


# --- settings -------------------------------------------------------------------------------


def settings_rows() -> Iterator[tuple[str, FieldInfo]]:
    """(environment variable, field) for every setting, group by group, in declaration order."""
    for _, group in groups_of(Settings):
        for field in group.model_fields.values():
            yield variable_of(field), field


def type_text(annotation: Any) -> str:
    """`int`, `str \\| None`, `hash` \\| `local`: the values a variable accepts."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " \\| ".join(type_text(arg) for arg in typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if annotation is type(None):
        return "`None`"
    if typing.get_origin(annotation) is list:
        return "comma-separated `str`"
    return f"`{getattr(annotation, '__name__', annotation)}`"


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "computed (see the description)"  # e.g. the user data folder: not this machine's path
    if field.default is PydanticUndefined:
        return "required"
    else:
        default = field.default
    if default is None:
        return "unset"
    if isinstance(default, list):
        default = ",".join(default)
    return f"`{default}`" if default != "" else '`""`'


def settings_page() -> str:
    lines = [
        "# Settings reference",
        "",
        "Every setting docserver reads, generated from `docserver.config.Settings` when the site is",
        "built. What each one is for, with examples, is in [Configuration](../configuration.md).",
        "",
        "| variable | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for variable, field in settings_rows():
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        lines.append(f"| `{variable}` | {type_text(field.annotation)} | {default_text(field)} | {description} |")
    return "\n".join(lines) + "\n"


# --- metrics --------------------------------------------------------------------------------


def metric_rows() -> Iterator[tuple[str, str, list[str], str, str]]:
    """(exposed name, type, labels, buckets, help) of every docserver metric."""
    metrics = Metrics(CollectorRegistry(), process_collectors=False)
    for metric in vars(metrics).values():
        if isinstance(metric, LeanFamily):
            yield _lean_row(metric)
        elif isinstance(metric, MetricWrapperBase):
            yield _wrapped_row(metric)
    collectors: list[Collector] = [PoolCollector(lambda: (0, 0, 0)), LogDropCollector(lambda: 0)]
    for collector in collectors:
        for family in collector.collect():
            labels = sorted({key for sample in family.samples for key in sample.labels})
            suffix = "_total" if family.type == "counter" else ""
            yield family.name + suffix, family.type, labels, "", family.documentation


def _lean_row(metric: LeanFamily) -> tuple[str, str, list[str], str, str]:
    suffix = "_total" if metric.type == "counter" else ""
    buckets = ", ".join(f"{bound:g}" for bound in metric.bounds if bound != float("inf"))
    return metric.name + suffix, metric.type, list(metric.labelnames), buckets, metric.documentation


def _wrapped_row(metric: MetricWrapperBase) -> tuple[str, str, list[str], str, str]:
    suffix = "_total" if metric._type == "counter" else ""
    bounds = getattr(metric, "_upper_bounds", [])
    buckets = ", ".join(f"{bound:g}" for bound in bounds if bound != float("inf"))
    return metric._name + suffix, metric._type, list(metric._labelnames), buckets, metric._documentation


def metrics_page() -> str:
    lines = [
        "# Metrics reference",
        "",
        "Every docserver metric, generated from `docserver.observability.metrics` when the site is",
        "built (the client library's process, platform and GC collectors are not listed). How to",
        "read and query each one is in [Metrics](../metrics.md).",
        "",
        "| metric | type | labels | buckets | help |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, kind, labels, buckets, documentation in sorted(metric_rows()):
        label_text = ", ".join(f"`{label}`" for label in labels)
        lines.append(f"| `{name}` | {kind} | {label_text} | {buckets} | {documentation} |")
    return "\n".join(lines) + "\n"


# --- the home page and the MkDocs hook ------------------------------------------------------


def home_page() -> str:
    """README.md, with its links into docs/ made relative to the site's root."""
    return re.sub(r"\]\(docs/", "](", (ROOT / "README.md").read_text())


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for uri, content in (("index.md", home_page()), (SETTINGS_PAGE, settings_page()), (METRICS_PAGE, metrics_page())):
        files.append(File.generated(config, uri, content=content))
    return files


if __name__ == "__main__":
    print(settings_page())
    print(metrics_page())
