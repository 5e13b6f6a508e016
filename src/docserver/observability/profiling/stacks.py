"""Python frames and coroutines turned into pprof stacks (leaf first).

While a coroutine runs, its frame's `f_back` chain goes through every
coroutine that awaits it and on to the event loop, so a thread's stack shows
the running coroutine chain (`search_docs` -> the store query) by itself. A
suspended task has no running frames: its chain is followed through
`cr_await` instead (see `coroutine_stack`).
"""

from __future__ import annotations

import sys
from types import CodeType, FrameType
from typing import Any

from docserver.observability.profiling.pprof import Frame

MAX_DEPTH = 128
"""Deeper stacks keep their leaf-most frames; pprof shows the truncation as a shorter root."""


def code_name(code: CodeType) -> str:
    """`Class.method` where the interpreter knows it (3.11+), else the bare name."""
    return getattr(code, "co_qualname", code.co_name)


def frame_of(frame: FrameType) -> Frame:
    code = frame.f_code
    return Frame(code_name(code), code.co_filename, frame.f_lineno or 0, code.co_firstlineno)


def coroutine_stack(coro: object, limit: int = MAX_DEPTH) -> list[Frame]:
    """The stack of a task's coroutine, leaf first.

    A suspended coroutine is followed through what it awaits (`cr_await`,
    `gi_yieldfrom`, `ag_await`) down to the innermost one. A running one (the
    task asking for the list) is read from the live frames instead, since a
    running coroutine's awaits are frames, not `cr_await` links.
    """
    outer_frame = _frame(coro)
    if outer_frame is not None and _running(coro):
        return _running_stack(outer_frame, limit)
    outermost_first: list[Frame] = []
    current: object = coro
    while current is not None and len(outermost_first) < limit:
        frame = _frame(current)
        if frame is None:
            break
        outermost_first.append(frame_of(frame))
        current = _awaiting(current)
    outermost_first.reverse()
    return outermost_first


def _running_stack(outer_frame: FrameType, limit: int) -> list[Frame]:
    stack: list[Frame] = []
    frame: FrameType | None = sys._getframe(1)  # from coroutine_stack, the leaf of the running chain
    while frame is not None and len(stack) < limit:
        stack.append(frame_of(frame))
        if frame is outer_frame:
            break
        frame = frame.f_back
    return stack


def _frame(obj: object) -> FrameType | None:
    for attribute in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(obj, attribute, None)
        if isinstance(frame, FrameType):
            return frame
    return None


def _running(obj: object) -> bool:
    return any(getattr(obj, attribute, False) for attribute in ("cr_running", "gi_running", "ag_running"))


def _awaiting(obj: Any) -> object:
    for attribute in ("cr_await", "gi_yieldfrom", "ag_await"):
        awaited = getattr(obj, attribute, None)
        if awaited is not None:
            return awaited
    return None
