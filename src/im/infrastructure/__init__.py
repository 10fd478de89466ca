"""Adapters for the domain's ports.

For now only the in-memory ones, which are NOT DURABLE (see
``memory_store``); the SQLite store comes next.
"""

from .basics import CountingIdGenerator, SystemClock
from .memory_store import InMemoryGroupStore, InMemoryMessageStore

__all__ = [
    "CountingIdGenerator",
    "InMemoryGroupStore",
    "InMemoryMessageStore",
    "SystemClock",
]
