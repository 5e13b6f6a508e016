"""The sampling rule: which requests are traced, decided once per request without building a span.

The configured rule is one of the standard OpenTelemetry samplers
(`OTEL_TRACE_SAMPLE_RATE`, or `OTEL_TRACES_SAMPLER` and its argument), and
each of them is a pure function of the parent's sampled flag and the trace
id. `SamplingRule.decide` is that function, computed as the SDK's samplers
compute it (`TraceIdRatioBased`: the trace id's low 64 bits below the rate's
bound; `ParentBased`: a parent's sampled flag, local or remote, wins), without
the objects the SDK's `should_sample` builds for a span (a context around the
parent, a `SamplingResult` with attributes and trace state).
`tests/test_sampling.py` checks that each standard name's rule decides as the
SDK's sampler of that name does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanContext

_LOW_64 = TraceIdRatioBased.TRACE_ID_LIMIT


@dataclass(frozen=True, slots=True)
class SamplingRule:
    """`rate` of new traces sampled (by trace id); with `parent_based`, a parent's decision is followed.

    `always_on` is rate 1 and `always_off` rate 0, not parent-based.
    """

    rate: float
    parent_based: bool = True
    _bound: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_bound", TraceIdRatioBased.get_bound_for_rate(self.rate))

    def decide(self, parent: SpanContext | None, trace_id: int) -> bool:
        """Whether work with this parent (None: a new trace) and trace id is sampled."""
        if self.parent_based and parent is not None and parent.is_valid:
            return parent.trace_flags.sampled
        return trace_id & _LOW_64 < self._bound


def ratio(rate: float) -> SamplingRule:
    """`OTEL_TRACE_SAMPLE_RATE`: a parent's decision is followed, new traces sampled at `rate`."""
    return SamplingRule(rate)
