"""The protobuf wire format's one shared piece: a varint (the pprof and OTLP encoders build on it)."""

from __future__ import annotations

_UINT64 = (1 << 64) - 1


def varint(value: int) -> bytes:
    """A base-128 varint; an int64 negative is its ten-byte two's complement."""
    if 0 <= value < 0x80:
        return bytes((value,))
    if 0 < value < 0x4000:  # two bytes: the length of most spans and messages
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    value &= _UINT64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
