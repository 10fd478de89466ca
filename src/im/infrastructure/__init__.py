"""Adapters for the domain's ports.

The in-memory stores are NOT DURABLE (see ``memory_store``); the SQLite
store (``sqlite_store``) is the durable one.
"""

from .basics import CountingIdGenerator, SystemClock
from .memory_store import InMemoryGroupStore, InMemoryMessageStore
from .sqlite_store import (
    SchemaTooNew,
    SQLiteGroupStore,
    SQLiteMessageStore,
    SQLiteStore,
    StoreClosed,
    StoreOpenError,
    StoreStatistics,
)

__all__ = [
    "CountingIdGenerator",
    "InMemoryGroupStore",
    "InMemoryMessageStore",
    "SQLiteGroupStore",
    "SQLiteMessageStore",
    "SQLiteStore",
    "SchemaTooNew",
    "StoreClosed",
    "StoreOpenError",
    "StoreStatistics",
    "SystemClock",
]
