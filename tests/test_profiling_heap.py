"""The heap profile's tracemalloc policy: traced only while a profile asks, someone else's tracing left alone."""

from __future__ import annotations

import gzip
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from docserver.observability.profiling.heap import collect_heap_profile

KEPT: list[bytes] = []


@pytest.fixture(autouse=True)
def no_tracing_left() -> Iterator[None]:
    assert not tracemalloc.is_tracing()
    yield
    KEPT.clear()
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def keep_allocating() -> None:
    KEPT.extend(b"x" * 10_000 + bytes([i % 256]) for i in range(100))


def test_tracing_runs_only_during_the_profile() -> None:
    cancel = threading.Event()
    cancel.set()  # no waiting: snapshot at once
    profile = collect_heap_profile(5, cancel)
    assert not tracemalloc.is_tracing()
    assert gzip.decompress(profile)


def test_someone_elses_tracing_is_snapshotted_and_left_running() -> None:
    tracemalloc.start(4)
    keep_allocating()
    started = time.monotonic()
    profile = collect_heap_profile(60, threading.Event())
    assert time.monotonic() - started < 5  # snapshotted at once: the trace window is theirs
    assert tracemalloc.is_tracing()
    assert tracemalloc.get_traceback_limit() == 4
    assert b"keep_allocating" in gzip.decompress(profile)
