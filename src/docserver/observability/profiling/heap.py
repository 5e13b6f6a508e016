"""Heap profiles from `tracemalloc`, traced only while a profile asks for it.

Policy. tracemalloc slows every allocation (5x with 1 frame to 17x with 25
frames on allocation-heavy code), so it is never on by default:
`GET /debug/pprof/heap?seconds=N` starts it with `FRAMES` frames, waits N
seconds (default `DEFAULT_SECONDS`, at most PROFILING_MAX_SECONDS), takes a
snapshot and stops it again. The profile therefore shows the memory
allocated during those N seconds that is still alive at the end of them:
the growth of the heap, which is what a leak looks like. `?gc=1` runs a full
collection first, so only memory that survives it is shown.

If something else (PYTHONTRACEMALLOC, a debugger) already traces, it is left
running and snapshotted at once: everything it has traced since it started.

tracemalloc only knows the blocks that are still allocated, so the
`alloc_*` values equal the `inuse_*` values: both are "allocated and still
alive at the snapshot". The four sample types are kept because Go's heap
profile has them and tools (Pyroscope, `-sample_index=`) expect them.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections.abc import Callable

from docserver.observability.profiling.pprof import Frame, ProfileBuilder
from docserver.observability.profiling.sources import function_at

FRAMES = 16
"""Frames kept per allocation: enough to reach the request handler, cheaper than 25."""

DEFAULT_SECONDS = 10

SAMPLE_TYPES = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
]

_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def collect_heap_profile(
    seconds: float, cancel: threading.Event, *, collect_garbage: bool = False, frames: int = FRAMES
) -> bytes:
    """Trace allocations for `seconds` (unless already tracing), snapshot, and encode."""
    started_ns = time.time_ns()
    if tracemalloc.is_tracing():
        snapshot = _snapshot(collect_garbage)
    else:
        tracemalloc.start(frames)
        try:
            cancel.wait(seconds)
            snapshot = _snapshot(collect_garbage)
        finally:
            tracemalloc.stop()  # frees the traces; the snapshot keeps its own copy
    return heap_profile(snapshot, time_nanos=started_ns, duration_nanos=time.time_ns() - started_ns)


def heap_profile(snapshot: tracemalloc.Snapshot, *, time_nanos: int, duration_nanos: int) -> bytes:
    """A tracemalloc snapshot as a gzip pprof heap profile."""
    builder = ProfileBuilder(SAMPLE_TYPES, ("space", "bytes"), 1)
    resolve = _FrameResolver()
    for statistic in snapshot.filter_traces(_IGNORED).statistics("traceback"):
        # tracemalloc lists frames oldest first; pprof wants the leaf first.
        stack = [resolve(frame.filename, frame.lineno) for frame in reversed(statistic.traceback)]
        count, size = statistic.count, statistic.size
        builder.add_sample(stack, (count, size, count, size))
    return builder.encode(time_nanos=time_nanos, duration_nanos=duration_nanos)


def _snapshot(collect_garbage: bool) -> tracemalloc.Snapshot:
    if collect_garbage:
        gc.collect()
    return tracemalloc.take_snapshot()


class _FrameResolver:
    """(filename, line) -> Frame, remembering each pair for the length of one profile."""

    def __init__(self, lookup: Callable[[str, int], tuple[str, int]] = function_at) -> None:
        self._lookup = lookup
        self._frames: dict[tuple[str, int], Frame] = {}

    def __call__(self, filename: str, line: int) -> Frame:
        key = (filename, line)
        frame = self._frames.get(key)
        if frame is None:
            name, first_line = self._lookup(filename, line)
            frame = self._frames[key] = Frame(name, filename, line, first_line)
        return frame
