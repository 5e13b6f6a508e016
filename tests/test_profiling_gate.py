"""The profiling rate limit: one profile at a time, one start per PROFILING_MIN_INTERVAL."""

from __future__ import annotations

from docserver.observability.profiling.gate import ProfileGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_second_profile_waits_for_the_running_one() -> None:
    clock = Clock()
    gate = ProfileGate(0, clock)
    assert gate.acquire(30) is None
    clock.now += 10.2
    assert gate.acquire(5) == 20  # seconds until the first should be done, rounded up
    gate.release()
    assert gate.acquire(5) is None


def test_an_overrunning_profile_still_blocks_with_retry_after_at_least_one() -> None:
    clock = Clock()
    gate = ProfileGate(0, clock)
    assert gate.acquire(1) is None
    clock.now += 5
    assert gate.acquire(1) == 1


def test_starts_are_spaced_by_the_min_interval() -> None:
    clock = Clock()
    gate = ProfileGate(60, clock)
    assert gate.acquire(1) is None
    clock.now += 1
    gate.release()
    assert gate.acquire(1) == 59
    assert not gate.busy  # a refusal takes nothing
    clock.now += 59
    assert gate.acquire(1) is None


def test_the_later_of_busy_and_interval_wins() -> None:
    clock = Clock()
    gate = ProfileGate(10, clock)
    assert gate.acquire(30) is None
    clock.now += 1
    assert gate.acquire(1) == 29
