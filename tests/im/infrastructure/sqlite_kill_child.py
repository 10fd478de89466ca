"""Append messages to a SQLite store until killed.

Run by the kill test: ``python sqlite_kill_child.py PATH SYNCHRONOUS N``.
Keeps a window of appends in flight, as a busy server does, and prints
``<seq> <client message id>`` for each append as its result arrives,
that is, at the moment a server would ack the sender. The parent kills
this process mid-stream and checks that every printed line is in the
file.
"""

from __future__ import annotations

import queue
import sys
from collections.abc import Callable
from typing import Any

from im.domain import (
    Appended,
    ConversationId,
    DeviceAddress,
    DeviceId,
    MessageDraft,
    Pending,
    UserId,
)
from im.infrastructure import SQLiteStore

WINDOW = 64


def main() -> None:
    path, synchronous, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    posted: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]]
    posted = queue.SimpleQueue()
    store = SQLiteStore(
        path,
        lambda call, *args: posted.put((call, args)),
        synchronous=synchronous,
    )
    ids = store.id_generator()
    alice, bob = UserId("alice"), UserId("bob")
    conversation = ConversationId.direct(alice, bob)
    sender = DeviceAddress(alice, DeviceId("phone"))
    in_flight = 0

    def acked(done: Pending[Appended]) -> None:
        nonlocal in_flight
        in_flight -= 1
        message = done.result().message
        # One write per line: a kill cannot leave half a line behind.
        sys.stdout.write(f"{message.seq} {message.client_message_id}\n")
        sys.stdout.flush()

    for i in range(count):
        while in_flight >= WINDOW:
            call, args = posted.get()
            call(*args)
        draft = MessageDraft(
            ids.next_message_id(), f"m{i}", conversation, sender, bob, 1,
            b"x" * 100, 0,
        )  # fmt: skip
        in_flight += 1
        store.messages.append(draft).add_done_callback(acked)
    while in_flight:
        call, args = posted.get()
        call(*args)
    store.close()


if __name__ == "__main__":
    main()
