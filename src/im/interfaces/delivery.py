"""Getting a device everything, once, in order: backlog, then live.

The problem
-----------
When a device logs in, two streams want to reach it at once: its
*backlog* (what it has not acked, read from the store page by page) and
*live* pushes (messages stored while those pages are on their way). If
live pushes went out at once, a device could receive seq 41 of a
conversation while seqs 12..40 are still in a page the store has not
read: the newer message would overtake the backlog.

The same happens later to a device that reads too slowly: once its
output passes the high watermark we stop pushing to it (queueing more
would only grow our memory), and when it drains it must get what it
missed before anything new.

The approach
------------
One mechanism serves both, the *flush*: page through the device's
backlog with the sync use case and send each page as an unsolicited
SYNC_PAGE (request id 0), waiting for the channel to become writable
between pages. While a flush runs, live pushes are *held* (in arrival
order, which is seq order per conversation) instead of sent; when the
last page is out, the held pushes follow. Nothing overtakes.

A held push may be in a page already (stored before the page was read)
or not (stored after, or in a conversation the walk had passed). So the
session remembers, per conversation, the highest seq it has sent, and
drops anything at or below it: each message goes out at most once per
session, and the device needs its own dedup only across sessions.

Held pushes are bounded. Past the bound no more are held, and when the
pass ends all of them are dropped and the flush runs one more pass from
the start: the messages are in the store, so they come in that pass.

What is not done here: acks. A message sent is not a message delivered;
until the device acks it, the store keeps it in the device's backlog,
and the next session's flush sends it again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from im.application import SyncBacklog, SyncPage
from im.domain import ConversationId, Pending

from .wire import PushEncoder, encode_sync_page

if TYPE_CHECKING:
    from .sessions import Session

__all__ = ["Delivery"]

log = logging.getLogger("im.server")

# Messages per backlog page: enough to make each store read and frame
# worth it, few enough that one page is a small write.
FLUSH_PAGE_SIZE = 200
# Live pushes held while a flush runs. Past this, a new pass reads them
# from the store instead: memory per session stays bounded.
HELD_PUSH_LIMIT = 1000


# The "sent" map of a session that has sent nothing: shared, never
# written (``_note_sent`` makes the session its own first).
_NOTHING_SENT: dict[ConversationId, int] = {}


class Delivery:
    """What one session has been sent, and its backlog flush."""

    __slots__ = (
        "_cursor",
        "_flushing",
        "_held",
        "_held_overflow",
        "_sent",
        "_session",
        "_sync",
        "_waiting_writable",
        "flush_passes",
        "page_size",
    )

    def __init__(
        self, sync: SyncBacklog, page_size: int = FLUSH_PAGE_SIZE
    ) -> None:
        self._sync = sync
        self.page_size = page_size
        self._session: Session | None = None
        # Made on first use: an idle session holds neither (a dict and a
        # list each cost a connection 60 bytes or so, at 15,000 of them).
        self._sent: dict[ConversationId, int] = _NOTHING_SENT
        self._flushing = False
        self._waiting_writable = False
        self._cursor = ""
        self._held: list[PushEncoder] | None = None
        self._held_overflow = False
        self.flush_passes = 0

    @property
    def flushing(self) -> bool:
        return self._flushing

    def sent_seq(self, conversation: ConversationId) -> int:
        return self._sent.get(conversation, 0)

    def detach(self) -> None:
        """The session ended: forget it (and what was held for it)."""
        self._session = None
        self._held = None

    # -- live -----------------------------------------------------------------

    def push(self, encoder: PushEncoder) -> None:
        """Send a newly stored message, unless it must wait or was sent."""
        if self._flushing:
            held = self._held
            if held is None:
                held = self._held = []
            if len(held) < HELD_PUSH_LIMIT:
                held.append(encoder)
            else:
                self._held_overflow = True
            return
        session = self._session
        if session is None:
            return
        message = encoder.message
        conversation = message.conversation_id
        if message.seq <= self._sent.get(conversation, 0):
            return
        if not session.channel.is_writable:
            # Behind: stop here. The store has this message; a flush
            # sends it once the device has read what is queued.
            self.start_flush(session)
            return
        session.send_frame(encoder.framed_for(session.serializer))
        self._note_sent(conversation, message.seq)

    def own_acked(self, conversation: ConversationId, seq: int) -> None:
        """The device's own message ``seq`` was acked to it here.

        It holds that message, so a later page need not bring it back:
        counted as sent, when it is the very next seq of what the
        session has been sent (marking it past a seq the device has not
        had would drop that one from the pages). Otherwise a page may
        carry it again, which the device takes as the copy it is.
        """
        if seq == self._sent.get(conversation, 0) + 1:
            self._note_sent(conversation, seq)

    def _note_sent(self, conversation: ConversationId, seq: int) -> None:
        sent = self._sent
        if sent is _NOTHING_SENT:
            sent = self._sent = {}
        sent[conversation] = seq

    # -- the flush ------------------------------------------------------------

    def start_flush(self, session: Session) -> None:
        """Send the backlog, then what arrives meanwhile (see above)."""
        self._session = session
        if self._flushing:
            return
        self._flushing = True
        self._cursor = ""
        self.flush_passes += 1
        self._next_page()

    def channel_writable(self) -> None:
        """The channel drained below its low watermark."""
        if self._waiting_writable:
            self._waiting_writable = False
            self._next_page()

    def _next_page(self) -> None:
        session = self._session
        if session is None or not session.channel.is_open:
            return
        if not session.channel.is_writable:
            self._waiting_writable = True
            return
        pending = self._sync(
            session.address, self._cursor, None, self.page_size
        )
        pending.add_done_callback(self._page_read)

    def _page_read(self, done: Pending[SyncPage]) -> None:
        session = self._session
        if session is None or not session.channel.is_open:
            return
        error = done.exception()
        if error is not None:
            log.error(
                "%r %s: backlog read failed: %r",
                session.channel,
                session.address,
                error,
            )
            session.close_reason = "backlog read failed"
            session.channel.close()
            return
        page = done.result()
        sent = self._send_page(session, page)
        if sent.has_more:
            self._cursor = sent.next_cursor
            # Through the loop, not recursion: with a store that answers
            # at once, a long backlog would otherwise nest one call
            # chain per page.
            session.channel.loop.call_soon(self._next_page)
        else:
            self._finish()

    def _send_page(self, session: Session, page: SyncPage) -> SyncPage:
        sent_seqs = self._sent
        fresh = [
            m
            for m in page.messages
            if m.seq > sent_seqs.get(m.conversation_id, 0)
        ]
        if not fresh and page.has_more:
            return page  # all sent live already: nothing to say yet
        # The cursor stays the store's: it marks where this read ended,
        # whatever was left out as sent.
        unsent = SyncPage(fresh, page.has_more, page.next_cursor)
        data, cut = encode_sync_page(unsent, 0, session.serializer)
        session.send(data)
        for message in cut.messages:
            self._note_sent(message.conversation_id, message.seq)
        return cut if cut is not unsent else page

    def _finish(self) -> None:
        session = self._session
        held, self._held = self._held or (), None
        if self._held_overflow:
            self._held_overflow = False
            self._cursor = ""
            self.flush_passes += 1
            self._next_page()
            return
        self._flushing = False
        for encoder in held:
            self.push(encoder)  # may start another flush: then it holds
        if session is not None and not self._flushing:
            log.debug("%r %s: backlog sent", session.channel, session.address)
