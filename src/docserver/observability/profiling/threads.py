"""The threads a sampler reads: their labels and CPU clocks, looked up again only when threads come or go.

`threading.enumerate()` takes a lock and builds a list and the sampler would
need it on every tick; the idents in `sys._current_frames()` tell for free
whether the set of threads changed, so the table is rebuilt only then (and
once a second, for a thread renamed or an ident reused in between).

`pthread_getcpuclockid` takes the pthread id, which is a thread's
`threading` ident on POSIX; it is only asked about threads that
`threading.enumerate()` reports alive. A clock of a thread that has since
ended raises OSError: that thread counts nothing and the table is rebuilt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator

from docserver.observability.profiling.samples import Labels

REFRESH_TICKS = 100
"""Rebuild the table at least this often (once a second at 100 Hz)."""

CPU_CLOCKS_AVAILABLE = hasattr(time, "pthread_getcpuclockid")


class _Thread:
    __slots__ = ("clock_id", "labels", "last_ns", "native_id")

    def __init__(self, labels: Labels, native_id: int | None, clock_id: int | None) -> None:
        self.labels = labels
        self.native_id = native_id
        self.clock_id = clock_id
        self.last_ns = time.clock_gettime_ns(clock_id) if clock_id is not None else 0


class ThreadTable:
    """Every thread but the sampler's, with its labels; with `cpu`, the CPU each used since the last tick."""

    def __init__(self, *, cpu: bool) -> None:
        self._cpu = cpu
        self._me = threading.get_ident()
        self._threads: dict[int, _Thread] = {}
        self._idents: frozenset[int] = frozenset()
        self._ticks_left = 0

    def weights(self, idents: Collection[int], elapsed_ns: int) -> Iterator[tuple[int, Labels, int]]:
        """(ident, labels, weight) of each thread with a weight > 0: its CPU ns, or `elapsed_ns` in wall mode."""
        self._ticks_left -= 1
        if self._ticks_left < 0 or idents != self._idents:
            self._rebuild(idents)
        for ident, thread in self._threads.items():
            weight = self._cpu_since_last(thread) if self._cpu else elapsed_ns
            if weight > 0:
                yield ident, thread.labels, weight

    def _cpu_since_last(self, thread: _Thread) -> int:
        if thread.clock_id is None:
            return 0
        try:
            now = time.clock_gettime_ns(thread.clock_id)
        except OSError:
            self._ticks_left = 0  # the thread ended: rebuild on the next tick
            return 0
        used, thread.last_ns = now - thread.last_ns, now
        return used

    def _rebuild(self, idents: Collection[int]) -> None:
        alive = {thread.ident: thread for thread in threading.enumerate()}
        table: dict[int, _Thread] = {}
        for ident in idents:
            thread = alive.get(ident)
            if ident == self._me or (thread is None and self._cpu):
                continue  # a thread that threading does not know has no safe pthread id
            known = self._threads.get(ident)
            native_id = thread.native_id if thread is not None else None
            name = thread.name if thread is not None else f"thread-{ident}"
            if known is not None and known.native_id == native_id and known.labels[0][1] == name:
                table[ident] = known
            else:
                table[ident] = self._new(ident, name, native_id)
        self._threads = table
        self._idents = frozenset(idents)
        self._ticks_left = REFRESH_TICKS

    def _new(self, ident: int, name: str, native_id: int | None) -> _Thread:
        labels = (("thread", name),)
        try:
            return _Thread(labels, native_id, time.pthread_getcpuclockid(ident) if self._cpu else None)
        except OSError:  # ended since enumerate(): counts nothing, and the next tick rebuilds
            self._ticks_left = 0
            return _Thread(labels, native_id, None)
