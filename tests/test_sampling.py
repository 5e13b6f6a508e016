"""The sampling rule decides as the SDK's sampler for the same setting does, parent or not.

The SDK's sampler is built here from the setting's name, as the specification names them,
apart from docserver's own mapping (tracing_setup.sampler_named), so a wrong mapping shows.
"""

from __future__ import annotations

import random

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context

from docserver.observability.sampling import ratio
from docserver.observability.tracing_setup import sampler_named

SDK_SAMPLERS = {
    "always_on": lambda rate: ALWAYS_ON,
    "always_off": lambda rate: ALWAYS_OFF,
    "traceidratio": lambda rate: TraceIdRatioBased(rate),
    "parentbased_always_on": lambda rate: ParentBased(ALWAYS_ON),
    "parentbased_always_off": lambda rate: ParentBased(ALWAYS_OFF),
    "parentbased_traceidratio": lambda rate: ParentBased(TraceIdRatioBased(rate)),
}


def sdk_sampler(name: str, argument: str | None) -> Sampler:
    """The SDK's sampler for an OTEL_TRACES_SAMPLER name and argument (no argument: 1.0)."""
    return SDK_SAMPLERS[name.strip().lower()](float(argument) if argument else 1.0)


SETTINGS = [
    ("always_on", None),
    ("always_off", None),
    ("traceidratio", "0.3"),
    ("traceidratio", "0"),
    ("traceidratio", "1"),
    ("parentbased_always_on", None),
    ("parentbased_always_off", None),
    ("parentbased_traceidratio", "0.3"),
    ("parentbased_traceidratio", "0.001"),
]


def _parents(generator: random.Random) -> list[SpanContext | None]:
    """No parent, and remote and local parents, sampled and not."""
    parents: list[SpanContext | None] = [None]
    for remote in (True, False):
        for flags in (TraceFlags.DEFAULT, TraceFlags.SAMPLED):
            parents.append(
                SpanContext(generator.getrandbits(128) or 1, generator.getrandbits(64) or 1, remote, TraceFlags(flags))
            )
    return parents


def _sdk_decides(sampler: Sampler, parent: SpanContext | None, trace_id: int) -> bool:
    context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else Context()
    result = sampler.should_sample(context, trace_id, "POST /mcp", SpanKind.SERVER)
    return result.decision is Decision.RECORD_AND_SAMPLE


@pytest.mark.parametrize(("name", "argument"), SETTINGS)
def test_the_rule_decides_as_the_sdk_sampler_does(name: str, argument: str | None) -> None:
    rule = sampler_named(name, argument)
    sampler = sdk_sampler(name, argument)
    generator = random.Random(f"{name}-{argument}")
    bound = TraceIdRatioBased.get_bound_for_rate(rule.rate)
    decisions = []
    for parent in _parents(generator):
        for _ in range(300):
            trace_id = parent.trace_id if parent is not None else generator.getrandbits(128) or 1
            # Trace ids at the rate's bound too, where an off-by-one would show.
            for candidate in (
                trace_id,
                (trace_id >> 64 << 64) | max(bound - 1, 0),
                (trace_id >> 64 << 64) | min(bound, (1 << 64) - 1),
            ):
                expected = _sdk_decides(sampler, parent, candidate)
                assert rule.decide(parent, candidate) is expected, (parent, hex(candidate))
                decisions.append(expected)
    if name in ("traceidratio", "parentbased_traceidratio") and argument not in ("0", "1"):
        assert True in decisions and False in decisions  # the ratio was exercised both ways


def test_the_sample_rate_setting_is_parent_based() -> None:
    assert ratio(0.25) == sampler_named("parentbased_traceidratio", "0.25")
    sampled_parent = SpanContext(1, 1, True, TraceFlags(TraceFlags.SAMPLED))
    assert ratio(0.0).decide(sampled_parent, 1) is True
    assert ratio(1.0).decide(SpanContext(1, 1, True, TraceFlags(TraceFlags.DEFAULT)), 1) is False
