"""Run one blocking profile job in its own thread and await it without blocking the event loop.

A profile takes seconds (sampling, waiting for allocations), so it never runs
on the loop. Its thread is a fresh, named daemon thread rather than an
executor worker: a 60-second profile must not hold one of the few threads
that `asyncio.to_thread` and Starlette share, and the name makes the sampler
recognisable (and excludable) in other tools' thread dumps.

`cancel` is how the endpoint stops a job early (client gone, server shutting
down); jobs poll it between ticks and return what they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

Job = Callable[[threading.Event], T]


async def run_job(job: Job[T], cancel: threading.Event, *, name: str) -> T:
    """Start `job(cancel)` in a thread named `name` and await its result.

    If the awaiting task is cancelled, `cancel` is set so the thread stops
    within one tick, and the cancellation propagates.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(setter: Callable[[], None]) -> None:
        if not future.done():
            setter()

    def target() -> None:
        try:
            result = job(cancel)
        except BaseException as exc:  # handed to the awaiting task, re-raised there
            error = exc
            _call_soon(loop, lambda: deliver(lambda: future.set_exception(error)))
        else:
            _call_soon(loop, lambda: deliver(lambda: future.set_result(result)))

    threading.Thread(target=target, name=name, daemon=True).start()
    try:
        return await future
    finally:
        cancel.set()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    # RuntimeError: the loop closed while the job ran (server stopped), so nobody waits.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)
