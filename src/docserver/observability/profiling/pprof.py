"""A hand-written encoder of pprof's `profile.proto`, the format `go tool pprof` reads.

Only the protobuf wire format is needed (varints and length-delimited fields),
so there is no protobuf dependency. The builder enforces the rules pprof
checks: `string_table[0] == ""`, non-zero unique ids, functions and locations
deduplicated, exactly one value per sample type in every sample, stacks leaf
first. `encode()` returns the gzip-compressed message, as Go's handlers serve it.

Field numbers follow github.com/google/pprof/proto/profile.proto.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from docserver.observability.protowire import varint

# Profile fields.
_SAMPLE_TYPE, _SAMPLE, _MAPPING, _LOCATION, _FUNCTION, _STRING_TABLE = 1, 2, 3, 4, 5, 6
_TIME_NANOS, _DURATION_NANOS, _PERIOD_TYPE, _PERIOD, _DEFAULT_SAMPLE_TYPE = 9, 10, 11, 12, 14


class Frame(NamedTuple):
    """One stack frame: a line of a function."""

    name: str
    filename: str
    line: int
    start_line: int = 0


def _key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


def _int_field(field: int, value: int) -> bytes:
    """A varint field; proto3 leaves zero values out."""
    return _key(field, 0) + varint(value) if value else b""


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + varint(len(payload)) + payload


def _packed_field(field: int, values: Iterable[int]) -> bytes:
    payload = b"".join(varint(value) for value in values)
    return _bytes_field(field, payload) if payload else b""


class ProfileBuilder:
    """Collects samples and encodes them as one gzip-compressed pprof Profile.

    `sample_types` and `period_type` are `(type, unit)` pairs, e.g.
    `("cpu", "nanoseconds")`. The last sample type is the one pprof shows by
    default, as in Go's profiles. Samples with the same stack and labels are
    merged by adding their values.
    """

    def __init__(
        self,
        sample_types: Sequence[tuple[str, str]],
        period_type: tuple[str, str] | None = None,
        period: int = 0,
    ) -> None:
        if not sample_types:
            raise ValueError("a profile needs at least one sample type")
        self._strings: dict[str, int] = {"": 0}
        self._functions: dict[tuple[str, str, int], int] = {}
        self._names: dict[int, int] = {}  # function id -> string index of its displayed name
        self._locations: dict[tuple[int, int], int] = {}
        self._samples: dict[tuple[tuple[int, ...], tuple[tuple[str, str], ...]], list[int]] = {}
        self._sample_types = [(self._string(kind), self._string(unit)) for kind, unit in sample_types]
        self._period_type = (self._string(period_type[0]), self._string(period_type[1])) if period_type else None
        self._period = period
        self._mapping_file = self._string("python")

    @property
    def sample_count(self) -> int:
        return len(self._samples)

    def add_sample(
        self, stack: Sequence[Frame], values: Sequence[int], labels: Mapping[str, str] | None = None
    ) -> None:
        """Add one sample; `stack` is leaf first, `values` one per sample type."""
        label_items = tuple(sorted(labels.items())) if labels else ()
        self.add_located(tuple(self.location(frame) for frame in stack), values, label_items)

    def add_located(
        self, location_ids: tuple[int, ...], values: Sequence[int], labels: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """`add_sample` for a stack already turned into ids by `location()` (the samplers' hot path)."""
        if len(values) != len(self._sample_types):
            raise ValueError(f"expected {len(self._sample_types)} values, got {len(values)}")
        key = (location_ids, labels)
        total = self._samples.get(key)
        if total is None:
            self._samples[key] = list(values)
        else:
            for index, value in enumerate(values):
                total[index] += value

    def location(self, frame: Frame) -> int:
        """The id of the location of `frame` (one per function and line), created on first use."""
        function_key = (frame.name, frame.filename, frame.start_line)
        function_id = self._functions.get(function_key)
        if function_id is None:
            self._string(frame.filename)
            function_id = self._functions[function_key] = len(self._functions) + 1
            self._names[function_id] = self._string(_displayable(frame.name, frame.filename))
        location_key = (function_id, frame.line)
        location_id = self._locations.get(location_key)
        if location_id is None:
            location_id = self._locations[location_key] = len(self._locations) + 1
        return location_id

    def encode(self, *, time_nanos: int, duration_nanos: int) -> bytes:
        """The gzip-compressed Profile message."""
        parts: list[bytes] = []
        for kind, unit in self._sample_types:
            parts.append(_bytes_field(_SAMPLE_TYPE, _value_type(kind, unit)))
        for (location_ids, labels), values in self._samples.items():
            parts.append(_bytes_field(_SAMPLE, self._encode_sample(location_ids, labels, values)))
        parts.append(_bytes_field(_MAPPING, self._encode_mapping()))
        for (function_id, line), location_id in self._locations.items():
            line_message = _int_field(1, function_id) + _int_field(2, line)
            location = _int_field(1, location_id) + _int_field(2, 1) + _bytes_field(4, line_message)
            parts.append(_bytes_field(_LOCATION, location))
        for (_name, filename, start_line), function_id in self._functions.items():
            name_index = self._names[function_id]
            function = (
                _int_field(1, function_id)
                + _int_field(2, name_index)
                + _int_field(3, name_index)
                + _int_field(4, self._strings[filename])
                + _int_field(5, start_line)
            )
            parts.append(_bytes_field(_FUNCTION, function))
        # Labels may add strings while samples are encoded, so the table goes last.
        for text in self._strings:
            parts.append(_bytes_field(_STRING_TABLE, text.encode("utf-8", "surrogateescape")))
        parts.append(_int_field(_TIME_NANOS, time_nanos))
        parts.append(_int_field(_DURATION_NANOS, duration_nanos))
        if self._period_type is not None:
            parts.append(_bytes_field(_PERIOD_TYPE, _value_type(*self._period_type)))
        parts.append(_int_field(_PERIOD, self._period))
        return gzip.compress(b"".join(parts), compresslevel=6)

    def _string(self, text: str) -> int:
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self._strings)
        return index

    def _encode_sample(
        self, location_ids: tuple[int, ...], labels: tuple[tuple[str, str], ...], values: list[int]
    ) -> bytes:
        encoded = _packed_field(1, location_ids) + _packed_field(2, values)
        for key, value in labels:
            label = _int_field(1, self._string(key)) + _int_field(2, self._string(value))
            encoded += _bytes_field(3, label)
        return encoded

    def _encode_mapping(self) -> bytes:
        # One mapping with has_functions/filenames/line_numbers set, so pprof
        # never tries to symbolize addresses: the frames already carry names.
        return (
            _int_field(1, 1) + _int_field(5, self._mapping_file) + b"".join(_int_field(field, 1) for field in (7, 8, 9))
        )


def _displayable(name: str, filename: str) -> str:
    """`<module>` as `pkg.<module>`: pprof reads a leading `<...>` as a C++ template and drops it."""
    if not name.startswith("<"):
        return name
    stem = os.path.splitext(os.path.basename(filename))[0] or "python"
    return f"{stem}.{name}"


def _value_type(kind: int, unit: int) -> bytes:
    return _int_field(1, kind) + _int_field(2, unit)
