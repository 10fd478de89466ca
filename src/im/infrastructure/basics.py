"""The simple ports: the system clock and an id generator."""

from __future__ import annotations

import itertools
import time

from im.domain import GroupId


class SystemClock:
    """Wall-clock time; what message timestamps mean on the wire."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class CountingIdGenerator:
    """Ids from counters. Unique within one process run only: a durable
    server must start ``first_message_id`` past the highest stored id,
    and group ids from a source that survives restarts."""

    def __init__(
        self, first_message_id: int = 1, group_prefix: str = ""
    ) -> None:
        self._messages = itertools.count(first_message_id)
        self._groups = itertools.count(1)
        self._group_prefix = group_prefix

    def next_message_id(self) -> int:
        return next(self._messages)

    def next_group_id(self) -> GroupId:
        return GroupId(f"{self._group_prefix}{next(self._groups)}")
