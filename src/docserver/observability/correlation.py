"""Correlation ids: the caller's `X-Correlation-ID` when it is safe to echo and log, else a fresh UUID."""

from __future__ import annotations

import itertools
import os
import random
import re

CORRELATION_HEADER = b"x-correlation-id"
_VALID_CORRELATION_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def _process_prefix() -> str:
    h = f"{random.SystemRandom().getrandbits(80):020x}"
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-"


def _start() -> None:
    global _prefix, _sequence
    _prefix = _process_prefix()
    _sequence = itertools.count(random.getrandbits(40))


_prefix = ""
_sequence = itertools.count()
_start()
os.register_at_fork(after_in_child=_start)  # a forked worker must not repeat its parent's ids


def new_correlation_id() -> str:
    """A version-4-shaped UUID: 74 random bits chosen once per process, then a 48-bit sequence.

    A correlation id must be unique, not secret or unguessable: the random
    part keeps processes and replicas apart, the sequence keeps this
    process's requests apart. One addition and one format per request
    (about a fifth of formatting 128 fresh random bits).
    """
    return f"{_prefix}{next(_sequence) & 0xFFFFFFFFFFFF:012x}"


def accept_correlation_id(value: bytes | None) -> str | None:
    """The supplied id when it is safe to echo and log, else None."""
    if value is not None and _VALID_CORRELATION_ID.match(value):
        return value.decode("ascii")
    return None
