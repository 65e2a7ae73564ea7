"""Write int64 feature rows into Feast's Redis online store without Feast (contracts/feast_redis.py layout).

The streaming-features job runs where Feast cannot be installed, so it writes the keys Feast's Redis
store reads. The write rule is Feast's own (`RedisOnlineStore.online_write_batch`): a row whose event
time is older than the stored one is skipped, so a replay or a late batch materialization cannot move a
feature back. One difference, on purpose: a row at the *same* event time is written, because the
stream may correct a value at an unchanged window end (a late event inside the allowed lateness adds to
the count without moving the card's newest event time); Feast skips equal times.

Only redis-py and the standard library: the ML environment (tests against Feast's reader) and the
streaming environment (the job) both import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from contracts import feast_redis


@dataclass(frozen=True)
class Row:
    """One entity's features of one view at `event_time`."""

    entity: int | str
    features: Mapping[str, int]
    event_time: datetime


class RedisOnlineWriter:
    """Writes rows of one feature view (one join key) in two pipelined round trips per batch."""

    def __init__(self, url: str, project: str, feature_view: str, join_key: str,
                 key_ttl_seconds: int | None = None, client: Any = None) -> None:
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError(f"online store URL must look like redis://HOST:PORT/DB, got {url!r}")
        self.project, self.feature_view, self.join_key = project, feature_view, join_key
        self.key_ttl_seconds = key_ttl_seconds
        self.client = client if client is not None else redis.Redis.from_url(url, socket_timeout=5)
        self._ts_field = feast_redis.ts_field(feature_view)

    def write(self, rows: Iterable[Row]) -> int:
        """Write `rows` (the newest per entity wins within the batch); return how many were written."""
        newest: dict[bytes, Row] = {}
        for row in rows:
            key = feast_redis.entity_key(self.project, self.join_key, row.entity)
            if key not in newest or row.event_time >= newest[key].event_time:
                newest[key] = row
        if not newest:
            return 0
        keys = list(newest)
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, self._ts_field)
            stored = pipe.execute()
        written = 0
        with self.client.pipeline(transaction=False) as pipe:
            for key, previous in zip(keys, stored, strict=True):
                row = newest[key]
                mapping = feast_redis.row_mapping(self.feature_view, dict(row.features), row.event_time)
                before = feast_redis.parse_timestamp(previous)
                now = feast_redis.parse_timestamp(mapping[self._ts_field])
                if before is not None and now is not None and now < before:
                    continue  # older than what the store holds: Feast's rule, never move a feature back
                pipe.hset(key, mapping=mapping)
                if self.key_ttl_seconds:
                    pipe.expire(key, self.key_ttl_seconds)
                written += 1
            pipe.execute()
        return written

    def close(self) -> None:
        self.client.close()
