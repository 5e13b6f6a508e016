"""Lean metric families for the request path: an observation costs what a counter costs.

prometheus_client's children check observability, take a lock through a
context manager and look for exemplars on every `inc()`: four Python calls
for one addition (about 4,000 instructions, 8,000 for a histogram). The
families a request touches on every call (HTTP, MCP, the search caches)
use these instead: a child is a few slots, `inc()` one addition under a
lock taken without a Python-level context manager, `observe()` one
`bisect` and two additions. They are exported by a registry collector at
scrape time, in exactly the form prometheus_client's own families take
(names, HELP, TYPE, `le` spelling, exemplars), so dashboards, rules and
tests cannot tell them apart. Families observed from worker threads at
a lower rate (store queries, embedding batches) keep prometheus_client.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

__all__ = ["LeanCounter", "LeanFamily", "LeanGauge", "LeanHistogram"]

_INF = float("inf")


class _CounterChild:
    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        lock = self._lock
        lock.acquire()
        self.value += amount
        lock.release()


class _GaugeChild(_CounterChild):
    __slots__ = ()

    def dec(self, amount: float = 1.0) -> None:
        lock = self._lock
        lock.acquire()
        self.value -= amount
        lock.release()

    def set(self, value: float) -> None:
        self.value = float(value)


class _HistogramChild:
    __slots__ = ("_bounds", "_lock", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self.counts = [0] * len(bounds)
        self.exemplars: list[Exemplar | None] = [None] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        # The first bucket whose bound is >= amount: Prometheus buckets are `le`.
        index = bisect_left(self._bounds, amount)
        lock = self._lock
        lock.acquire()
        self.counts[index] += 1
        self.sum += amount
        lock.release()
        if exemplar:
            self.exemplars[index] = Exemplar(exemplar, amount, time.time())


class LeanFamily(Collector):
    """A labelled family whose children are created on `labels()` and exported at scrape time."""

    type = ""
    """`counter`, `gauge` or `histogram`, as the exposition's TYPE line says."""
    bounds: tuple[float, ...] = ()
    """A histogram's bucket bounds, `+Inf` last; empty for the others."""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        self._create = threading.Lock()
        if not self.labelnames:
            self._children[()] = self._new_child()
        registry.register(self)

    def labels(self, *values: str) -> Any:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            with self._create:
                child = self._children.setdefault(values, self._new_child())
        return child

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for values, child in list(self._children.items()):
            self._add(family, list(values), child)
        return [family]

    def _new_child(self) -> Any:
        raise NotImplementedError

    def _family(self) -> Any:
        raise NotImplementedError

    def _add(self, family: Any, values: list[str], child: Any) -> None:
        raise NotImplementedError

    def _only(self) -> Any:
        return self._children[()]


class LeanCounter(LeanFamily):
    """A counter family (`name` without `_total`; the exposition appends it)."""

    type = "counter"

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def _new_child(self) -> _CounterChild:
        return _CounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: CounterMetricFamily, values: list[str], child: _CounterChild) -> None:
        family.add_metric(values, child.value)


class LeanGauge(LeanFamily):
    """A gauge family."""

    type = "gauge"

    def inc(self, amount: float = 1.0) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        self._only().dec(amount)

    def set(self, value: float) -> None:
        self._only().set(value)

    def _new_child(self) -> _GaugeChild:
        return _GaugeChild()

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: GaugeMetricFamily, values: list[str], child: _GaugeChild) -> None:
        family.add_metric(values, child.value)


class LeanHistogram(LeanFamily):
    """A histogram family with fixed buckets (`+Inf` added), exemplars kept per bucket."""

    type = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str],
        registry: CollectorRegistry,
        *,
        buckets: Iterable[float],
    ) -> None:
        bounds = sorted(float(bound) for bound in buckets)
        if not bounds or bounds[-1] != _INF:
            bounds.append(_INF)
        self.bounds = tuple(bounds)
        self._le = [floatToGoString(bound) for bound in self.bounds]  # type: ignore[no-untyped-call]
        super().__init__(name, documentation, labelnames, registry)

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        self._only().observe(amount, exemplar)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: HistogramMetricFamily, values: list[str], child: _HistogramChild) -> None:
        family.add_metric(values, list(self._cumulative(child)), child.sum)

    def _cumulative(self, child: _HistogramChild) -> Iterator[tuple[Any, ...]]:
        total = 0
        for le, count, exemplar in zip(self._le, list(child.counts), list(child.exemplars), strict=True):
            total += count
            yield (le, total, exemplar) if exemplar is not None else (le, total)
