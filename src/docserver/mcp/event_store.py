"""A bounded in-memory event store, so a client reconnecting with `Last-Event-ID` resumes its stream.

Without an event store the SDK's GET handler returns without answering a
`Last-Event-ID` reconnect (an HTTP 500). This one keeps the most recent
events of this process, bounded in count and age. Limits: a session lives
in one process already (its id is known only there), so resumption needs
the same session affinity as the session itself; an event older than
`max_age` seconds, or pushed out by `max_events` newer ones, is gone and
the reconnect gets an empty stream.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

DEFAULT_MAX_EVENTS = 1000
DEFAULT_MAX_AGE = 300.0


@dataclass(frozen=True, slots=True)
class _Event:
    stream_id: StreamId
    message: JSONRPCMessage | None
    stored_at: float


class MemoryEventStore(EventStore):
    """The last `max_events` events of this process, each kept at most `max_age` seconds."""

    def __init__(
        self,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_age: float = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_events = max_events
        self.max_age = max_age
        self.clock = clock
        # Ids name this process, so an id minted by another replica is simply unknown here.
        self._prefix = os.urandom(6).hex()
        self._sequence = itertools.count(1)
        self._events: OrderedDict[EventId, _Event] = OrderedDict()

    @property
    def size(self) -> int:
        """How many events are kept (no `__len__`: the SDK tests the store for truth)."""
        return len(self._events)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = f"{self._prefix}-{next(self._sequence)}"
        now = self.clock()
        self._events[event_id] = _Event(stream_id, message, now)
        self._expire(now)
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        self._expire(self.clock())
        last = self._events.get(last_event_id)
        if last is None:
            return None
        later = itertools.dropwhile(lambda item: item[0] != last_event_id, self._events.items())
        next(later)  # the last event the client saw
        for event_id, event in list(later):
            if event.stream_id == last.stream_id and event.message is not None:
                await send_callback(EventMessage(event.message, event_id))
        return last.stream_id

    def _expire(self, now: float) -> None:
        events = self._events
        while events and (len(events) > self.max_events or now - next(iter(events.values())).stored_at > self.max_age):
            events.popitem(last=False)
