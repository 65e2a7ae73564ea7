"""Feast's Redis online-store layout, written with the standard library only.

The streaming-features job runs in an environment without Feast (its engine pins an older pyarrow than
Feast needs), yet it must write rows that Feast's own reader and the serving fast path read. This module
is that writer's whole knowledge of the layout (Feast 0.63 Redis online store, entity key serialization
version 3):

    key    = <u32 n_keys=1> <u32 STRING> <u32 len> join_key <u32 value_type> <u32 len> value   + project
    fields = murmur3_32("<feature_view>:<feature>") (4 little-endian bytes) -> serialized ValueProto
             "_ts:<feature_view>"                                          -> serialized Timestamp

`tests/ml/test_feast_redis_layout.py` proves it against Feast in the ML environment: the bytes equal
Feast's serializers', and rows written here come back from `FeatureStore.get_online_features`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import UTC, datetime

STRING, INT64 = 2, 4  # Feast ValueType enum values in the serialized entity key
_VALUE_INT64_FIELD = 4  # `int64_val` in feast.types.Value
_MASK32 = 0xFFFFFFFF


def entity_key(project: str, join_key: str, value: int | str) -> bytes:
    """The Redis key of one entity (one join key) in `project`."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"entity value for {join_key!r} must be int or str, got {type(value).__name__}")
    k = join_key.encode()
    if isinstance(value, int):
        vtype, vbytes = INT64, struct.pack("<q", value)
    else:
        vtype, vbytes = STRING, value.encode()
    return b"".join(
        (struct.pack("<III", 1, STRING, len(k)), k, struct.pack("<II", vtype, len(vbytes)), vbytes, project.encode())
    )


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit, unsigned (what `mmh3.hash(..., signed=False)` returns)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _MASK32
    tail = len(data) & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * c1) & _MASK32
        k = ((k << 15) | (k >> 17)) & _MASK32
        k = (k * c2) & _MASK32
        h ^= k
        h = ((h << 13) | (h >> 19)) & _MASK32
        h = (h * 5 + 0xE6546B64) & _MASK32
    k = 0
    rest = data[tail:]
    if len(rest) == 3:
        k ^= rest[2] << 16
    if len(rest) >= 2:
        k ^= rest[1] << 8
    if rest:
        k ^= rest[0]
        k = (k * c1) & _MASK32
        k = ((k << 15) | (k >> 17)) & _MASK32
        k = (k * c2) & _MASK32
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    h ^= h >> 16
    return h


def field_key(feature_view: str, feature: str) -> bytes:
    """The hash field of one feature of a view."""
    return struct.pack("<I", murmur3_32(f"{feature_view}:{feature}".encode()))


def ts_field(feature_view: str) -> bytes:
    return f"_ts:{feature_view}".encode()


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # protobuf writes negative int64 as its 64-bit two's complement
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def int64_value(value: int) -> bytes:
    """A serialized `feast.types.Value` holding `int64_val`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"int64 feature value must be int, got {type(value).__name__}")
    if not -(1 << 63) <= value < (1 << 63):
        raise ValueError(f"int64 feature value out of range: {value}")
    return bytes([(_VALUE_INT64_FIELD << 3) | 0]) + _varint(value)


def timestamp(when: datetime) -> bytes:
    """A serialized `google.protobuf.Timestamp` (fields at their default are omitted, as protobuf does)."""
    if when.tzinfo is None:
        raise ValueError(f"timestamp must be timezone-aware, got {when!r}")
    micros = round((when - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    seconds, rem = divmod(micros, 1_000_000)
    out = b""
    if seconds:
        out += b"\x08" + _varint(seconds)
    if rem:
        out += b"\x10" + _varint(rem * 1000)
    return out


def _fields(raw: bytes) -> Iterator[tuple[int, int]]:
    """(tag byte, varint value) of a message whose fields are all varints (Timestamp, Value.int64_val)."""
    i = 0
    while i < len(raw):
        tag = raw[i]
        i += 1
        if tag & 0x07:
            raise ValueError(f"unexpected wire type in field tag {tag:#x}")
        value = shift = 0
        while True:
            if i >= len(raw):
                raise ValueError("truncated varint")
            byte = raw[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        yield tag, value


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def parse_int64_value(raw: bytes | None) -> int | None:
    """The int64 of a serialized `feast.types.Value` (None: absent or not an int64 value)."""
    if raw is None:
        return None
    for tag, value in _fields(raw):
        if tag == (_VALUE_INT64_FIELD << 3):
            return _signed(value)
    return None


def parse_timestamp(raw: bytes | None) -> int | None:
    """Nanoseconds since the epoch of a serialized Timestamp written by Feast or by `timestamp` (None: absent)."""
    if raw is None:
        return None
    seconds = nanos = 0
    for tag, value in _fields(raw):
        if tag == 0x08:
            seconds = _signed(value)
        elif tag == 0x10:
            nanos = value
        else:
            raise ValueError(f"not a serialized Timestamp: unexpected tag {tag:#x}")
    return seconds * 1_000_000_000 + nanos


def row_mapping(feature_view: str, features: dict[str, int], event_time: datetime) -> dict[bytes, bytes]:
    """The HSET mapping of one row of int64 features, as Feast's online write makes it."""
    mapping = {ts_field(feature_view): timestamp(event_time)}
    for name, value in features.items():
        mapping[field_key(feature_view, name)] = int64_value(value)
    return mapping
