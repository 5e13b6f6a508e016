"""CPU and wall-clock profiles: a sampler thread reading every thread's stack at about 100 Hz.

CPU mode counts a thread only when it used CPU since the previous tick, read
from its own CPU clock (`pthread_getcpuclockid`), and weighs the sample by that
CPU time: an event loop waiting in `epoll` costs nothing and does not show.
Wall mode takes every thread's stack on every tick, weighed by the elapsed
time, so waiting (I/O, locks, sleeps, an idle loop) shows too.

The sampler runs in its own thread (see `worker`), never on the event loop,
and leaves itself out of the profile.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Literal

from docserver.observability.logging import get_logger
from docserver.observability.profiling.pprof import ProfileBuilder
from docserver.observability.profiling.samples import StackCounts
from docserver.observability.profiling.threads import CPU_CLOCKS_AVAILABLE, ThreadTable

Mode = Literal["cpu", "wall"]

PERIOD_NS = 10_000_000
"""One tick every 10 ms (100 Hz), as Go's CPU profiler."""

SAMPLE_TYPES: dict[Mode, list[tuple[str, str]]] = {
    "cpu": [("samples", "count"), ("cpu", "nanoseconds")],
    "wall": [("samples", "count"), ("wall", "nanoseconds")],
}

_log = get_logger(__name__)


class StackSampler:
    """Takes one sample of every thread per `tick()`; `encode()` gives the pprof profile.

    A tick only reads: each thread's CPU clock, then the frames of the
    threads that used CPU, counted by raw stack (see `samples`). Names, lines
    and pprof ids are built once per distinct stack, in `encode()`.
    """

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        cpu_clocks = mode == "cpu" and CPU_CLOCKS_AVAILABLE
        if mode == "cpu" and not cpu_clocks:
            _log.warning("pprof_cpu_clocks_unavailable", fallback="every thread counts")
        self._threads = ThreadTable(cpu=cpu_clocks)
        self._counts = StackCounts()
        self._last_tick = time.monotonic_ns()
        self._started_ns = time.time_ns()
        self.tick(record=False)  # prime the CPU clocks: the first real tick measures from here

    def tick(self, *, record: bool = True) -> None:
        now = time.monotonic_ns()
        elapsed, self._last_tick = now - self._last_tick, now
        frames = sys._current_frames()
        for ident, labels, weight in self._threads.weights(frames.keys(), elapsed):
            if record:
                self._counts.add(frames[ident], labels, weight)

    def encode(self) -> bytes:
        builder = ProfileBuilder(SAMPLE_TYPES[self.mode], SAMPLE_TYPES[self.mode][1], PERIOD_NS)
        self._counts.into(builder)
        duration = time.time_ns() - self._started_ns
        return builder.encode(time_nanos=self._started_ns, duration_nanos=duration)


def collect_stack_profile(seconds: float, cancel: threading.Event, mode: Mode = "cpu") -> bytes:
    """Sample for `seconds` (less if `cancel` is set) and return the gzip pprof profile."""
    sampler = StackSampler(mode)
    deadline = time.monotonic_ns() + int(seconds * 1e9)
    next_tick = time.monotonic_ns() + PERIOD_NS
    while True:
        wake = min(next_tick, deadline)
        if cancel.wait(max(0, wake - time.monotonic_ns()) / 1e9):
            break
        sampler.tick()  # the last one at the deadline, so the final interval's CPU counts too
        now = time.monotonic_ns()
        if now >= deadline:
            break
        # Ticks are scheduled on a fixed grid; one that fell behind (GIL held
        # by a busy thread) is skipped rather than bunched.
        next_tick = max(next_tick + PERIOD_NS, now + PERIOD_NS // 2)
    return sampler.encode()
