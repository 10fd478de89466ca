"""The IM use cases: what the server does, with no sockets or threads.

Each use case is an object built once with its ports (stores, clock, id
generator, device directory) and called per request by the interface
layer, which turns packets into calls and results into packets.

Results are ``Pending`` values, because the durable store will answer
later: writes go to one writer thread in batched transactions, and the
loop must never wait for it. The choice, and what it costs:

- A store method returns a ``Pending`` at once and completes it *on the
  loop thread* when the work is done (the SQLite adapter posts the
  completion through the loop's thread-safe submit). A use case chains
  its steps with ``then``/``chain`` and returns the end of the chain; no
  use case blocks, and none knows whether its store is threaded.
- The interface layer adds one callback to the returned ``Pending``: on
  a value it replies and pushes; on a ``DomainError`` it sends ERROR
  with the code named by ``error_name``; on anything else, INTERNAL_ERROR
  and a log line. It must not assume the callback runs later: with the
  in-memory store it runs inside ``add_done_callback``.
- Coroutines (``async def``) would read more plainly, but would tie the
  domain to one event loop's future type; ``Pending`` is a small class
  with no dependency, and tests drive it without any loop.
- Ordering is the store's: calls on one conversation are applied in the
  order made, so two sends complete in seq order and their pushes go out
  in seq order. A use case that reads, then writes (membership check,
  then append) may interleave with another; the consequences are named
  where they happen (a member who leaves as it sends, one who joins as
  a message is stored) and none loses or duplicates a message.

Membership and floors: see ``im.domain.group``. Errors: see
``im.domain.errors``.
"""

from .groups import CreateGroup, ManageGroups, NewGroup
from .messaging import (
    MAX_PAGE_SIZE,
    AcknowledgeDelivery,
    History,
    HistoryPage,
    SendMessage,
    SendOutcome,
    SyncBacklog,
    SyncPage,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "AcknowledgeDelivery",
    "CreateGroup",
    "History",
    "HistoryPage",
    "ManageGroups",
    "NewGroup",
    "SendMessage",
    "SendOutcome",
    "SyncBacklog",
    "SyncPage",
]
