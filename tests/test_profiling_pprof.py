"""The profile.proto encoder, read back with a small independent wire-format decoder.

`go tool pprof` is the judge of the real profiles (test_profiling_live.py);
this checks the rules it is lenient about: deduplication, unique ids, one
value per sample type, and the helpers that name frames.
"""

from __future__ import annotations

import asyncio
import gzip
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from docserver.observability.profiling.pprof import Frame, ProfileBuilder
from docserver.observability.profiling.samples import StackCounts, line_at
from docserver.observability.profiling.sources import function_at
from docserver.observability.profiling.stacks import coroutine_stack, frame_of

Message = dict[int, list[int | bytes]]


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position


def decode(data: bytes) -> Message:
    """Field number -> values (ints, or bytes for length-delimited fields)."""
    fields: Message = defaultdict(list)
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = read_varint(data, position)
            fields[field].append(value)
        elif wire_type == 2:
            length, position = read_varint(data, position)
            fields[field].append(data[position : position + length])
            position += length
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
    return fields


def packed(value: int | bytes) -> list[int]:
    assert isinstance(value, bytes)
    values, position = [], 0
    while position < len(value):
        number, position = read_varint(value, position)
        values.append(number)
    return values


def sub(value: int | bytes) -> Message:
    assert isinstance(value, bytes)
    return decode(value)


def first(message: Message, field: int) -> int:
    value = message.get(field, [0])[0]
    assert isinstance(value, int)
    return value


def sample_profile() -> Message:
    builder = ProfileBuilder([("samples", "count"), ("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 10_000_000)
    leaf, other, root = Frame("leaf", "/a.py", 10, 5), Frame("other", "/a.py", 20, 5), Frame("root", "/b.py", 2, 1)
    builder.add_sample([leaf, root], (1, 10), {"thread": "MainThread"})
    builder.add_sample([leaf, root], (2, 20), {"thread": "MainThread"})
    builder.add_sample([other, root], (1, 10), {"thread": "worker"})
    builder.add_sample([leaf._replace(line=11), root], (1, 10), {"thread": "worker"})
    return decode(gzip.decompress(builder.encode(time_nanos=1_000, duration_nanos=2_000)))


def strings(profile: Message) -> list[str]:
    return [value.decode() for value in profile[6] if isinstance(value, bytes)]


def test_output_is_gzip_and_string_table_starts_empty() -> None:
    table = strings(sample_profile())
    assert table[0] == ""
    assert len(table) == len(set(table))
    assert {"samples", "count", "cpu", "nanoseconds", "leaf", "/a.py", "thread", "MainThread"} <= set(table)


def test_functions_and_locations_are_deduplicated_with_unique_nonzero_ids() -> None:
    profile = sample_profile()
    table = strings(profile)
    functions = [sub(value) for value in profile[5]]
    locations = [sub(value) for value in profile[4]]
    assert sorted(table[first(function, 2)] for function in functions) == ["leaf", "other", "root"]
    assert len(locations) == 4  # leaf:10, leaf:11, other:20, root:2
    for items in (functions, locations, [sub(value) for value in profile[3]]):
        ids = [first(item, 1) for item in items]
        assert 0 not in ids
        assert len(ids) == len(set(ids))


def test_same_stack_and_labels_merge_and_every_sample_has_one_value_per_type() -> None:
    profile = sample_profile()
    assert len(profile[1]) == 2  # sample types
    samples = [sub(value) for value in profile[2]]
    assert sorted(packed(sample[2][0]) for sample in samples) == [[1, 10], [1, 10], [3, 30]]
    assert all(len(sample[1]) == 1 and len(packed(sample[1][0])) == 2 for sample in samples)


def test_stacks_are_written_leaf_first() -> None:
    profile = sample_profile()
    table = strings(profile)
    function_names = {first(sub(f), 1): table[first(sub(f), 2)] for f in profile[5]}
    location_function = {first(sub(loc), 1): first(sub(sub(loc)[4][0]), 1) for loc in profile[4]}
    stacks = [[function_names[location_function[i]] for i in packed(sub(s)[1][0])] for s in profile[2]]
    assert sorted(stacks) == [["leaf", "root"], ["leaf", "root"], ["other", "root"]]


def test_period_time_and_duration() -> None:
    profile = sample_profile()
    table = strings(profile)
    period_type = sub(profile[11][0])
    assert (table[first(period_type, 1)], table[first(period_type, 2)]) == ("cpu", "nanoseconds")
    assert (first(profile, 12), first(profile, 9), first(profile, 10)) == (10_000_000, 1_000, 2_000)


def test_names_pprof_would_drop_get_their_module_in_front() -> None:
    # pprof reads a leading <...> as a C++ template argument and shows nothing of it.
    builder = ProfileBuilder([("samples", "count")])
    builder.add_sample([Frame("<listcomp>", "/src/app.py", 3), Frame("<module>", "/src/app.py", 3)], (1,))
    builder.add_sample([Frame("f.<locals>.<lambda>", "/src/app.py", 3)], (1,))
    profile = decode(gzip.decompress(builder.encode(time_nanos=1, duration_nanos=1)))
    table = strings(profile)
    names = sorted(table[first(sub(function), 2)] for function in profile[5])
    assert names == ["app.<listcomp>", "app.<module>", "f.<locals>.<lambda>"]


def test_a_sample_with_the_wrong_number_of_values_is_refused() -> None:
    builder = ProfileBuilder([("samples", "count"), ("cpu", "nanoseconds")])
    with pytest.raises(ValueError, match="expected 2 values"):
        builder.add_sample([Frame("f", "f.py", 1)], (1,))


def test_frame_of_gives_qualified_name_file_and_lines() -> None:
    class Outer:
        def method(self) -> Frame:
            return frame_of(sys._getframe())

    frame = Outer().method()
    assert frame.name == "test_frame_of_gives_qualified_name_file_and_lines.<locals>.Outer.method"
    assert frame.filename == __file__
    assert frame.line > frame.start_line > 0


def test_counted_stacks_merge_and_keep_the_frames_names_and_lines_leaf_first() -> None:
    builder, counts = ProfileBuilder([("samples", "count"), ("cpu", "nanoseconds")]), StackCounts()

    def record(weight: int) -> None:
        counts.add(sys._getframe(), (("thread", "t"),), weight)  # the first line of `record`

    for weight in (5, 7):  # the same stack twice: one sample
        record(weight)
    counts.into(builder)
    profile = decode(gzip.decompress(builder.encode(time_nanos=1, duration_nanos=1)))
    table = strings(profile)
    names = {first(sub(f), 1): table[first(sub(f), 2)] for f in profile[5]}
    lines = {first(sub(loc), 1): sub(sub(loc)[4][0]) for loc in profile[4]}
    [sample] = [sub(value) for value in profile[2]]
    leaf, caller = ((names[first(line, 1)], first(line, 2)) for line in (lines[i] for i in packed(sample[1][0])[:2]))
    assert leaf == (record.__qualname__, record.__code__.co_firstlineno + 1)
    assert caller[0] == frame_of(sys._getframe()).name
    assert packed(sample[2][0]) == [2, 12]


def test_line_at_agrees_with_f_lineno() -> None:
    frame = sys._getframe()
    assert line_at(frame.f_code, frame.f_lasti) == frame.f_lineno
    assert line_at(frame.f_code, -1) == frame.f_code.co_firstlineno


async def test_a_suspended_coroutine_chain_is_followed_to_its_innermost_await() -> None:
    release = asyncio.Event()

    async def inner() -> None:
        await release.wait()

    async def outer() -> None:
        await inner()

    task = asyncio.create_task(outer())
    await asyncio.sleep(0)
    stack = coroutine_stack(task.get_coro())
    release.set()
    await task
    assert [frame.name.rsplit(".", 1)[-1] for frame in stack] == ["wait", "inner", "outer"]
    assert stack[0].name == "Event.wait"
    assert stack[1].filename == __file__


def test_function_at_names_the_innermost_enclosing_function(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        textwrap.dedent(
            """\
            X = [1]

            class Store:
                @staticmethod
                def search():
                    def run():
                        return [0] * 10
                    return run()

            def after():
                pass
            """
        )
    )
    assert function_at(str(source), 1) == ("<module>", 1)
    assert function_at(str(source), 7) == ("Store.search.<locals>.run", 6)
    assert function_at(str(source), 8) == ("Store.search", 4)
    assert function_at(str(source), 11) == ("after", 10)
    assert function_at(str(tmp_path / "gone.py"), 3) == ("gone.py:3", 0)
