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

import logging
import sys
import threading
import time
from typing import Literal

from docserver.observability.profiling.pprof import ProfileBuilder
from docserver.observability.profiling.stacks import FrameLocations

Mode = Literal["cpu", "wall"]

PERIOD_NS = 10_000_000
"""One tick every 10 ms (100 Hz), as Go's CPU profiler."""

SAMPLE_TYPES: dict[Mode, list[tuple[str, str]]] = {
    "cpu": [("samples", "count"), ("cpu", "nanoseconds")],
    "wall": [("samples", "count"), ("wall", "nanoseconds")],
}

_log = logging.getLogger(__name__)


class ThreadClocks:
    """CPU time used by each Python thread since the previous reading.

    `pthread_getcpuclockid` takes the pthread id, which is a thread's
    `threading` ident on POSIX. It is only asked about threads that
    `threading.enumerate()` reports alive; the clock id is cached with the
    thread's native id, since idents are reused after a thread ends. A clock
    of a thread that has since ended raises OSError, and the thread is dropped.
    """

    available = hasattr(time, "pthread_getcpuclockid")

    def __init__(self) -> None:
        self._clocks: dict[int, tuple[int | None, int, int]] = {}  # ident -> (native_id, clock_id, last_ns)

    def used_since_last(self, thread: threading.Thread) -> int:
        """Nanoseconds of CPU `thread` used since the last call (0 on the first)."""
        ident = thread.ident
        if ident is None:
            return 0
        entry = self._clocks.get(ident)
        try:
            if entry is None or entry[0] != thread.native_id:
                clock_id = time.pthread_getcpuclockid(ident)
                self._clocks[ident] = (thread.native_id, clock_id, time.clock_gettime_ns(clock_id))
                return 0
            native_id, clock_id, last = entry
            now = time.clock_gettime_ns(clock_id)
        except OSError:
            self._clocks.pop(ident, None)
            return 0
        self._clocks[ident] = (native_id, clock_id, now)
        return max(0, now - last)


class StackSampler:
    """Takes one sample of every thread per `tick()`; `encode()` gives the pprof profile."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self._builder = ProfileBuilder(SAMPLE_TYPES[mode], SAMPLE_TYPES[mode][1], PERIOD_NS)
        self._locations = FrameLocations(self._builder)
        self._labels: dict[str, tuple[tuple[str, str], ...]] = {}
        self._clocks = ThreadClocks() if mode == "cpu" and ThreadClocks.available else None
        if mode == "cpu" and self._clocks is None:
            _log.warning("pprof_cpu_clocks_unavailable", extra={"fallback": "every thread counts"})
        self._last_tick = time.monotonic_ns()
        self._started_ns = time.time_ns()
        self.tick(record=False)  # prime the CPU clocks: the first real tick measures from here

    def tick(self, *, record: bool = True) -> None:
        now = time.monotonic_ns()
        elapsed, self._last_tick = now - self._last_tick, now
        me = threading.get_ident()
        threads = {thread.ident: thread for thread in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == me:
                continue
            thread = threads.get(ident)
            weight = self._weight(thread, elapsed)
            if weight > 0 and record:
                labels = self._thread_labels(thread.name if thread is not None else f"thread-{ident}")
                self._builder.add_located(self._locations.stack(frame), (1, weight), labels)

    def encode(self) -> bytes:
        duration = time.time_ns() - self._started_ns
        return self._builder.encode(time_nanos=self._started_ns, duration_nanos=duration)

    def _thread_labels(self, name: str) -> tuple[tuple[str, str], ...]:
        labels = self._labels.get(name)
        if labels is None:
            labels = self._labels[name] = (("thread", name),)
        return labels

    def _weight(self, thread: threading.Thread | None, elapsed: int) -> int:
        if self._clocks is None:
            return elapsed
        # A thread that threading does not know has no safe pthread id: leave it out.
        return self._clocks.used_since_last(thread) if thread is not None else 0


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
