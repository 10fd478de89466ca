"""Interleaved sends to one group: one order, seen the same by everyone.

The store finishes appends in an order hypothesis picks, as a writer
thread would, and senders resend some client message ids.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from im_app_fakes import App, DeferredMessageStore, dev, value

from im.application import SendOutcome
from im.domain import DeviceAddress, Message, Pending, ServerAck, UserId

USERS = [f"u{i}" for i in range(6)]
DEVICES = ["phone", "laptop"]

# An action is a send (sender, device, client id: small, so that resends
# happen) or the store finishing its k-th queued append.
sends = st.tuples(
    st.just("send"),
    st.integers(0, len(USERS) - 1),
    st.integers(0, len(DEVICES) - 1),
    st.integers(0, 7),
)
completions = st.tuples(
    st.just("complete"), st.integers(0, 50), st.just(0), st.just(0)
)


def read_backlog(app: App, device: DeviceAddress) -> list[Message]:
    out: list[Message] = []
    cursor = ""
    while True:
        page = value(app.sync(device, cursor, limit=3))
        out += page.messages
        if not page.has_more:
            return out
        cursor = page.next_cursor


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(sends, completions), max_size=60))
def test_interleaved_group_sends_get_one_contiguous_order(
    actions: list[tuple[str, int, int, int]],
) -> None:
    store = DeferredMessageStore()
    app = App(messages=store)
    members = tuple(UserId(u) for u in USERS[1:])
    group = value(app.manage.create(UserId(USERS[0]), "g", members))

    sent: list[tuple[tuple[str, int], Pending[SendOutcome]]] = []
    for kind, a, b, c in actions:
        if kind == "send":
            sender = dev(USERS[a], DEVICES[b])
            pending = app.send.to_group(
                sender, f"cid{c}", group.group_id, 1, f"{a}:{c}".encode()
            )
            sent.append(((USERS[a], c), pending))
        elif store.queued:
            store.run(a % len(store.queued))
    store.run_all()

    # Every (sender, client id) maps to one ack, however often it was sent.
    acks: dict[tuple[str, int], ServerAck] = {}
    for key, pending in sent:
        outcome = pending.result()
        assert acks.setdefault(key, outcome.ack) == outcome.ack
        if not outcome.duplicate:
            assert set(outcome.recipients) == set(USERS)

    # Seqs are 1..n, each used once.
    stored = sorted(ack.seq for ack in acks.values())
    assert stored == list(range(1, len(acks) + 1))

    # Every member's every device has the same backlog, in seq order.
    orders = {
        tuple((m.seq, m.message_id) for m in read_backlog(app, dev(u, d)))
        for u in USERS
        for d in DEVICES
    }
    assert len(orders) == 1
    (order,) = orders
    assert [seq for seq, _ in order] == stored
    history = value(app.history(UserId(USERS[3]), group.conversation_id))
    assert tuple((m.seq, m.message_id) for m in history.messages) == order
