"""``Client``: the protocol as plain blocking calls, for scripts, tests
and the chat.

A ``Client`` runs its own reactor ``EventLoop`` on a background thread
and one ``Connection`` on it. Each call posts the work to the loop with
``loop.submit`` (the loop's one thread-safe entry) and waits on a
``concurrent.futures.Future`` that the reply completes::

    with Client.connect("127.0.0.1", 7700) as client:
        client.login(token, "laptop")
        client.wait_backlog()  # what came while the device was away
        ack = client.send_to_user("bob", "hello")
        message = client.next_push(timeout=5)

Why a thread and not asyncio: the callers (pytest, the chat's command
handlers, a REPL) are synchronous, and the reactor already is the event
loop; a thread around it is the least machinery that lets them wait.

Incoming messages go to the ``on_event`` callback (on the loop thread:
it must not block) and, unless ``queue_pushes=False``, to a thread-safe
queue that ``next_push`` reads. When the connection ends (KICKED, the
server closing, a dead heartbeat) every waiting call raises the
``ConnectionLost`` that says why (``KickedError`` after KICKED), and so
does ``next_push`` once the queue is empty; ``closed_reason`` keeps it.

After LOGIN_OK the server sends the device's backlog by itself, in
pages, before any live push; its messages are queued like pushes, in
order, and ``wait_backlog`` waits for the last page. ``sync()`` asks
for the backlog again (it returns only what the device did not have).
Automatic acks follow the tracker's rule (see ``tracker``): they start
once the backlog (or a sync) has come to its last page.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from im.protocol import (
    ContentType,
    GroupCreated,
    GroupJoined,
    GroupLeft,
    HistoryPage,
    LoginOk,
    Message,
    Serializer,
    ServerAck,
)
from reactor import EventLoop, Future

from .connection import (
    DEFAULT_ACK_DELAY,
    DEFAULT_CONNECT_TIMEOUT,
    Connection,
    EventCallback,
)
from .errors import ConnectionLost, RequestTimeout, UnexpectedReplyError
from .events import (
    BacklogPageReceived,
    Disconnected,
    Event,
    MessageReceived,
)
from .session import (
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_SYNC_LIMIT,
    ClientSession,
)

__all__ = ["DEFAULT_REQUEST_TIMEOUT", "Client"]

# Long enough for a loaded server and a slow disk under a send; short
# enough that a test waiting on a lost reply fails within seconds.
DEFAULT_REQUEST_TIMEOUT: Final = 10.0

# How long close() waits for the connection and the loop thread to end.
_CLOSE_TIMEOUT: Final = 5.0


def _copy_outcome(
    source: Future, target: concurrent.futures.Future[Any]
) -> None:
    """Complete ``target`` (any thread's) like ``source`` (the loop's)."""
    if target.done():
        return
    error = source.exception()
    if error is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


class Client:
    """A blocking client; see the module docstring. Make one with
    ``Client.connect``; close it (or use ``with``) to end the thread."""

    def __init__(
        self,
        loop: EventLoop,
        thread: threading.Thread,
        connection: Connection,
        request_timeout: float,
        pushes: queue.SimpleQueue[Message | ConnectionLost] | None,
        backlog: _BacklogWatch,
    ) -> None:
        # Private: Client.connect builds the pieces and hands them over.
        self._loop = loop
        self._thread = thread
        self._connection = connection
        self.request_timeout = request_timeout
        self._pushes = pushes
        self._close_lock = threading.Lock()
        self._closed = False
        self._backlog = backlog

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        timeout: float = DEFAULT_CONNECT_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        session: ClientSession | None = None,
        serializer: Serializer = Serializer.MSGPACK,
        on_event: EventCallback | None = None,
        queue_pushes: bool = True,
        auto_ack: bool = True,
        ack_delay: float = DEFAULT_ACK_DELAY,
        heartbeat: bool = True,
        fill_gaps: bool = True,
    ) -> Client:
        """Connect to ``host:port`` and start the loop thread.

        ``session`` carries a device's state over from an earlier
        connection (see ``resend_unacked``); ``serializer`` applies to a
        new session. Raises ``OSError`` (``ConnectionRefusedError``,
        ``TimeoutError``...) when the connection cannot be made.
        """
        if session is None:
            session = ClientSession(serializer=serializer)
        pushes: queue.SimpleQueue[Message | ConnectionLost] | None = (
            queue.SimpleQueue() if queue_pushes else None
        )
        loop = EventLoop()
        thread = threading.Thread(
            target=loop.run, name=f"netim client {host}:{port}", daemon=True
        )
        thread.start()
        opened: concurrent.futures.Future[Connection] = (
            concurrent.futures.Future()
        )
        backlog = _BacklogWatch()

        def on_loop_event(event: Event) -> None:
            if type(event) is BacklogPageReceived:
                assert isinstance(event, BacklogPageReceived)
                backlog.page(event)
            elif type(event) is Disconnected:
                backlog.ended.set()
            if pushes is not None:
                if type(event) is MessageReceived:
                    assert isinstance(event, MessageReceived)
                    pushes.put(event.message)
                elif type(event) is Disconnected:
                    assert isinstance(event, Disconnected)
                    pushes.put(event.error)
            if on_event is not None:
                on_event(event)

        def start() -> None:
            Connection.open(
                loop,
                host,
                port,
                timeout=timeout,
                session=session,
                on_event=on_loop_event,
                auto_ack=auto_ack,
                ack_delay=ack_delay,
                heartbeat=heartbeat,
                fill_gaps=fill_gaps,
            ).add_listener(lambda f: _copy_outcome(f, opened))

        loop.submit(start)
        try:
            # The bootstrap enforces ``timeout``; the margin only guards
            # against a loop that never answers at all.
            connection = opened.result(timeout + 5.0)
        except BaseException:
            _stop_loop(loop, thread)
            raise
        return cls(loop, thread, connection, request_timeout, pushes, backlog)

    # -- state ----------------------------------------------------------------

    @property
    def session(self) -> ClientSession:
        """The device's protocol state. It belongs to the loop thread:
        read it freely once the client is closed (to reconnect with it),
        not while it runs."""
        return self._connection.session

    @property
    def login_ok(self) -> LoginOk | None:
        """The LOGIN_OK of this connection, once logged in."""
        return self._connection.session.login_ok

    @property
    def user_id(self) -> str | None:
        login_ok = self.login_ok
        return None if login_ok is None else login_ok.user_id

    @property
    def closed_reason(self) -> ConnectionLost | None:
        """Why the connection ended (None while it is open)."""
        return self._connection.lost

    @property
    def is_open(self) -> bool:
        return self._connection.is_open

    # -- requests -------------------------------------------------------------

    def login(
        self, token: str, device_id: str, *, timeout: float | None = None
    ) -> LoginOk:
        """Log in. Raises ``LoginFailedError`` (code and reason) if the
        token is refused; the server then closes the connection."""
        result: LoginOk = self._call(
            lambda c: c.login(token, device_id), timeout
        )
        return result

    def wait_backlog(self, timeout: float | None = None) -> int:
        """Wait until the backlog that the server sends after LOGIN_OK
        has come to its last page; returns how many of its messages were
        new to this device (they are queued for ``next_push``, or given
        to ``on_event``, in order). Raises ``RequestTimeout`` if the
        last page has not come within ``timeout`` (default: the request
        timeout), and the ``ConnectionLost`` if the connection ended."""
        limit = self.request_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        watch = self._backlog
        while not watch.complete.wait(min(0.05, limit)):
            if watch.ended.is_set() and not watch.complete.is_set():
                lost = self.closed_reason
                raise lost or ConnectionLost("the connection ended")
            if time.monotonic() > deadline:
                raise RequestTimeout(f"no end of the backlog within {limit} s")
        return watch.fresh

    def ping(self, *, timeout: float | None = None) -> float:
        """PING the server; returns the round trip in seconds."""
        started = time.perf_counter()
        self._call(lambda c: c.ping(), timeout)
        return time.perf_counter() - started

    def send_to_user(
        self,
        user: str,
        content: bytes | str,
        content_type: int = ContentType.TEXT,
        client_message_id: str | None = None,
        *,
        timeout: float | None = None,
    ) -> ServerAck:
        """Send a direct message; returns its SERVER_ACK. ``str``
        content goes as UTF-8. Raises ``RequestError`` if refused."""
        result: ServerAck = self._call(
            lambda c: c.send_to_user(
                user, content, content_type, client_message_id
            ),
            timeout,
        )
        return result

    def send_to_group(
        self,
        group_id: str,
        content: bytes | str,
        content_type: int = ContentType.TEXT,
        client_message_id: str | None = None,
        *,
        timeout: float | None = None,
    ) -> ServerAck:
        """Send to a group; as ``send_to_user``."""
        result: ServerAck = self._call(
            lambda c: c.send_to_group(
                group_id, content, content_type, client_message_id
            ),
            timeout,
        )
        return result

    def resend_unacked(self, *, timeout: float | None = None) -> list[Any]:
        """Send every message of the session still without SERVER_ACK
        again, with its first client message id; returns, per message,
        its ``ServerAck`` or the exception that refused it."""
        futures: list[Future] = self._call_now(lambda c: c.resend_unacked())
        outcomes: list[Any] = []
        for future in futures:
            try:
                outcomes.append(self._wait(future, timeout))
            except (RequestTimeout, ConnectionLost):
                raise
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def ack(self, conversation_id: str, seq: int) -> None:
        """Send DELIVERY_ACK up to ``seq`` now (no reply comes)."""
        self._call_now(lambda c: c.ack(conversation_id, seq))

    def sync(
        self,
        limit: int = DEFAULT_SYNC_LIMIT,
        *,
        timeout: float | None = None,
    ) -> list[Message]:
        """Fetch the backlog, page after page; returns the messages new
        to this device. ``timeout`` applies to each page. With auto-ack
        on, each page is acked as it arrives."""
        # Walked here rather than with Connection.sync, so that the
        # timeout applies per page: a long backlog is not a slow server.
        messages: list[Message] = []
        cursor = ""
        while True:
            page, fresh = self._call(_sync_page(cursor, limit), timeout)
            messages.extend(fresh)
            if not page.has_more:
                return messages
            if not page.next_cursor:
                # Asking again with "" would start over, forever.
                raise UnexpectedReplyError(
                    "SYNC_PAGE has_more without a cursor"
                )
            cursor = page.next_cursor

    def history(
        self,
        conversation_id: str,
        before_seq: int = 0,
        limit: int = DEFAULT_HISTORY_LIMIT,
        *,
        timeout: float | None = None,
    ) -> HistoryPage:
        """Up to ``limit`` messages older than ``before_seq`` (0: the
        newest), ascending; ``has_more`` says older ones exist."""
        result: HistoryPage = self._call(
            lambda c: c.history(conversation_id, before_seq, limit), timeout
        )
        return result

    def create_group(
        self,
        name: str,
        members: Iterable[str] = (),
        *,
        timeout: float | None = None,
    ) -> GroupCreated:
        members = tuple(members)
        result: GroupCreated = self._call(
            lambda c: c.create_group(name, members), timeout
        )
        return result

    def join_group(
        self, group_id: str, *, timeout: float | None = None
    ) -> GroupJoined:
        result: GroupJoined = self._call(
            lambda c: c.join_group(group_id), timeout
        )
        return result

    def leave_group(
        self, group_id: str, *, timeout: float | None = None
    ) -> GroupLeft:
        result: GroupLeft = self._call(
            lambda c: c.leave_group(group_id), timeout
        )
        return result

    def members(
        self, group_id: str, *, timeout: float | None = None
    ) -> tuple[str, ...]:
        """The user ids of a group's members."""
        member_list = self._call(lambda c: c.members(group_id), timeout)
        members: tuple[str, ...] = member_list.members
        return members

    # -- pushes ---------------------------------------------------------------

    def next_push(self, timeout: float | None = None) -> Message:
        """The next message pushed (or fetched to fill a gap), waiting
        up to ``timeout`` seconds (None: forever). Raises
        ``TimeoutError`` if none came, or the ``ConnectionLost`` that
        ended the connection once every message before it was read."""
        if self._pushes is None:
            raise RuntimeError("this client was made with queue_pushes=False")
        try:
            item = self._pushes.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message within {timeout} s") from None
        if isinstance(item, ConnectionLost):
            self._pushes.put(item)  # every later call says the same
            raise item
        return item

    def drain_pushes(self) -> list[Message]:
        """The messages queued now, without waiting."""
        messages: list[Message] = []
        while self._pushes is not None:
            try:
                item = self._pushes.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, ConnectionLost):
                self._pushes.put(item)
                break
            messages.append(item)
        return messages

    # -- closing --------------------------------------------------------------

    def close(self) -> None:
        """Send due acks, close the connection, stop the loop thread.
        Safe to call twice and after the connection was lost."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._loop.submit(
                lambda: self._connection.close().add_listener(
                    lambda f: _copy_outcome(f, done)
                )
            )
            done.result(_CLOSE_TIMEOUT)
        except (RuntimeError, concurrent.futures.TimeoutError):
            pass  # the loop is gone or stuck: stopping it is all we can do
        finally:
            _stop_loop(self._loop, self._thread)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------

    def _call(
        self, start: Callable[[Connection], Future], timeout: float | None
    ) -> Any:
        """Start a request on the loop and wait for its reply."""
        future: Future = self._call_now(start)
        return self._wait(future, timeout)

    def _call_now(self, action: Callable[[Connection], Any]) -> Any:
        """Run ``action(connection)`` on the loop; return its result."""
        outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                outcome.set_result(action(self._connection))
            except BaseException as exc:
                outcome.set_exception(exc)

        try:
            self._loop.submit(run)
        except RuntimeError:
            raise ConnectionLost("the client is closed") from None
        # The loop runs it within a turn; only a wedged loop is slower.
        return outcome.result(_CLOSE_TIMEOUT)

    def _wait(self, future: Future, timeout: float | None) -> Any:
        waited: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            self._loop.submit(
                lambda: future.add_listener(lambda f: _copy_outcome(f, waited))
            )
        except RuntimeError:
            raise ConnectionLost("the client is closed") from None
        limit = self.request_timeout if timeout is None else timeout
        try:
            return waited.result(limit)
        except concurrent.futures.TimeoutError:
            if waited.done():  # the reply won the race after all
                return waited.result()
            try:
                self._loop.submit(self._connection.abandon, future)
            except RuntimeError:
                pass  # closed meanwhile: nothing to abandon
            raise RequestTimeout(f"no reply within {limit} s") from None


class _BacklogWatch:
    """How far the server's backlog flush has come, for
    ``wait_backlog``; written on the loop thread, read on any."""

    def __init__(self) -> None:
        self.fresh = 0
        self.complete = threading.Event()
        self.ended = threading.Event()

    def page(self, event: BacklogPageReceived) -> None:
        self.fresh += event.fresh
        if event.complete:
            self.complete.set()


def _sync_page(cursor: str, limit: int) -> Callable[[Connection], Future]:
    return lambda connection: connection.sync_page(cursor, limit)


def _stop_loop(loop: EventLoop, thread: threading.Thread) -> None:
    try:
        loop.stop()
    except RuntimeError:
        pass  # already closed
    thread.join(_CLOSE_TIMEOUT)
    if not thread.is_alive():
        loop.close()
