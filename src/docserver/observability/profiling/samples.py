"""Stack samples counted by raw stack, named only when the profile is encoded.

A tick reads each sampled thread's frames as (code object, instruction
offset) pairs and adds one to a dict entry: no names, no line numbers, no
pprof ids on the sampler's hot path. `f_lineno` scans the code's line table
on every read while `f_lasti` is a field, and a profile sees the same few
hundred stacks thousands of times, so each distinct (code, offset) is
resolved to a pprof location once, in `into()`.
"""

from __future__ import annotations

import bisect
from types import CodeType, FrameType

from docserver.observability.profiling.pprof import Frame, ProfileBuilder
from docserver.observability.profiling.stacks import MAX_DEPTH, code_name

Labels = tuple[tuple[str, str], ...]
RawStack = tuple[object, ...]
"""code, offset, code, offset, ... leaf first: flat, so a sample builds one tuple."""


class StackCounts:
    """(raw stack, labels) -> [samples, weight]."""

    def __init__(self) -> None:
        self._counts: dict[tuple[RawStack, Labels], list[int]] = {}

    def add(self, frame: FrameType | None, labels: Labels, weight: int) -> None:
        """Count one sample of the stack ending at `frame`, weighing `weight`."""
        raw: list[object] = []
        append = raw.append
        depth = MAX_DEPTH
        while frame is not None and depth:
            append(frame.f_code)
            append(frame.f_lasti)
            frame = frame.f_back
            depth -= 1
        key = (tuple(raw), labels)
        counts = self._counts.get(key)
        if counts is None:
            self._counts[key] = [1, weight]
        else:
            counts[0] += 1
            counts[1] += weight

    def into(self, builder: ProfileBuilder) -> None:
        """Add every counted stack to `builder` as a (samples, weight) sample."""
        locations = _Locations(builder)
        for (raw, labels), values in self._counts.items():
            builder.add_located(locations.of(raw), values, labels)


def line_at(code: CodeType, offset: int) -> int:
    """The line `frame.f_lineno` gives at `offset` (`f_lasti`); 0 where the code has none."""
    return _LineTable(code).line(offset)


class _Locations:
    def __init__(self, builder: ProfileBuilder) -> None:
        self._builder = builder
        self._ids: dict[tuple[object, object], int] = {}
        self._tables: dict[CodeType, _LineTable] = {}

    def of(self, raw: RawStack) -> tuple[int, ...]:
        return tuple(self._id(code, offset) for code, offset in zip(raw[::2], raw[1::2], strict=True))

    def _id(self, code: object, offset: object) -> int:
        location_id = self._ids.get((code, offset))
        if location_id is None:
            assert isinstance(code, CodeType) and isinstance(offset, int)
            table = self._tables.get(code)
            if table is None:
                table = self._tables[code] = _LineTable(code)
            frame = Frame(code_name(code), code.co_filename, table.line(offset), code.co_firstlineno)
            location_id = self._ids[code, offset] = self._builder.location(frame)
        return location_id


class _LineTable:
    """A code object's `co_lines()` as sorted starts, for bisection."""

    def __init__(self, code: CodeType) -> None:
        self.first_line = code.co_firstlineno
        ranges = list(code.co_lines())
        self.starts = [start for start, _end, _line in ranges]
        self.ends = [end for _start, end, _line in ranges]
        self.lines = [line or 0 for _start, _end, line in ranges]

    def line(self, offset: int) -> int:
        if offset < 0:  # not started yet: CPython answers the first line
            return self.first_line
        index = bisect.bisect_right(self.starts, offset) - 1
        if index < 0 or offset >= self.ends[index]:
            return 0
        return self.lines[index]
