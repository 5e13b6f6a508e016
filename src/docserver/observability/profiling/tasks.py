"""Every asyncio task with its stack: the Python counterpart of Go's goroutine profile.

The profile has one sample per distinct stack, valued by the number of tasks
waiting there, so 500 tasks stuck on the same `await` show as one line of
500. `?debug=1` gives the same as readable text, task by task.

Must be called on the event loop's thread (the endpoint is a coroutine):
`asyncio.all_tasks()` and the coroutines' frames are only stable there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from docserver.observability.profiling.pprof import Frame, ProfileBuilder
from docserver.observability.profiling.stacks import code_name, coroutine_stack

SAMPLE_TYPES = [("tasks", "count")]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    state: str
    coroutine: str
    stack: tuple[Frame, ...]  # leaf first


def describe_tasks(tasks: Iterable[asyncio.Task[object]] | None = None) -> list[TaskInfo]:
    """The running loop's tasks (or `tasks`), with their stacks, in a stable order."""
    found = asyncio.all_tasks() if tasks is None else set(tasks)
    infos = [_describe(task) for task in found]
    infos.sort(key=lambda info: (info.coroutine, info.name))
    return infos


def tasks_profile(infos: list[TaskInfo]) -> bytes:
    """A gzip pprof profile: one sample per distinct stack, valued by its number of tasks."""
    builder = ProfileBuilder(SAMPLE_TYPES, SAMPLE_TYPES[0], 1)
    for info in infos:
        builder.add_sample(info.stack, (1,))
    now = time.time_ns()
    return builder.encode(time_nanos=now, duration_nanos=0)


def tasks_text(infos: list[TaskInfo]) -> str:
    """The `?debug=1` listing: every task, its state and its stack, innermost frame first."""
    lines = [f"asyncio tasks: {len(infos)} (stacks innermost frame first)", ""]
    for info in infos:
        lines.append(f"task {info.name!r} {info.state} coro={info.coroutine}")
        lines.extend(f"    {frame.name} ({frame.filename}:{frame.line})" for frame in info.stack)
        lines.append("")
    return "\n".join(lines)


def _describe(task: asyncio.Task[object]) -> TaskInfo:
    coro = task.get_coro()
    coroutine = _coroutine_name(coro)
    stack = coroutine_stack(coro) if coro is not None else []
    if not stack:
        # A task that has finished (or not yet started) has no frames; give it
        # one named after its coroutine so it still shows in the profile.
        stack = [Frame(coroutine, "<no frame>", 0)]
    return TaskInfo(task.get_name(), _state(task), coroutine, tuple(stack))


def _coroutine_name(coro: object) -> str:
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None) or getattr(coro, "ag_code", None)
    if code is not None:
        return code_name(code)
    return getattr(coro, "__qualname__", type(coro).__qualname__)


def _state(task: asyncio.Task[object]) -> str:
    if task.cancelled():
        return "cancelled"
    if task.done():
        return "done"
    return "cancelling" if task.cancelling() else "pending"
