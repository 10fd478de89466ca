"""The durable store: message logs, cursors and groups in one SQLite file.

**One writer thread.** The loop must never wait on a disk, and every
sqlite3 call blocks. So each store call becomes an operation on one
queue, and one thread, the writer, owns the connection and runs the
operations in the order they were queued. One queue and one thread give
the ports' ordering rule by construction: calls are applied in the order
they were made, across all conversations and both stores, so seq
assignment, acks and membership changes never interleave half-done, and
a read sees every write made before it. SQLite takes one writer at a
time anyway; more threads would only queue on its lock. The file is
opened in exclusive locking mode, so a second process (a second server
started on the same file by mistake) is refused at open instead of
racing this one for seqs and ids.

**Batches.** A commit that must survive a power cut costs an fsync,
milliseconds on most disks, where an append's own work costs
microseconds. The writer therefore takes everything that queued up while
it was busy (at most ``max_batch`` operations), runs it in one
transaction and commits once. Under load one fsync is shared by the
whole batch; when the server is idle a lone append commits at once, with
no timer adding latency. Each writing operation is atomic on its own,
so one that fails (a NotAMember, say) leaves nothing behind and the rest
of the batch commits: most write with a single statement, which SQLite
undoes whole when it fails, and the few of several statements run them
in a savepoint. (A savepoint around every operation cost the writer a
third of an append's time: two more statements, each a round of the GIL
with the loop; docs/perf/010-sqlite-statements.md.) On the machine of
docs/perf/003-sqlite-store.md batching gives 9x the appends/s of a
commit per append (46 k/s against 4.9 k/s with FULL), and more on a disk
whose fsync is slower.

**Durable** means that a result completes only after the transaction
that produced it committed: an append's Pending resolves, and the sender
is acked, only once the message is in the write-ahead log. With
``synchronous="FULL"`` (the default) the commit waits for the fsync, so
an acked message survives a power cut or a kernel crash.
``synchronous="NORMAL"`` skips that fsync (SQLite syncs at checkpoints
instead): in WAL mode this still survives the process being killed,
``kill -9`` included, because committed frames are in the kernel's page
cache; only a power cut or a kernel crash may lose commits, up to all
of those since the last checkpoint (``CHECKPOINT_PAGES`` of log).

**Results come back through the loop.** The constructor takes
``submit(callable, *args)``, the loop's thread-safe ``EventLoop.submit``
in the server. After the commit, the writer posts each operation's
``pending.resolve(value)`` or ``pending.fail(error)`` through it, in
call order; it never touches a Pending otherwise, so Pendings stay
single-threaded as the domain requires, and each completes once. A
domain refusal (NoSuchGroup, NotAMember, GroupFull) comes back as the
same exception the in-memory store raises. A failure of the database
(disk full, I/O error, corruption) fails the Pendings it affects with
its exception and is logged once per outage, not once per Pending; the
writer carries on, and the first batch whose writes commit again ends
the outage in the log.

**Schema.** ``PRAGMA user_version`` is the number of ``MIGRATIONS``
applied; opening applies the missing ones in order, each in its own
transaction, and refuses a file from a newer version (``SchemaTooNew``)
or one that is not ours (``StoreOpenError``).

**Ids across restarts.** ``SQLiteStore.id_generator()`` starts message
ids past the highest stored one. Group ids carry the number of times the
file was opened (``"<opens>-<n>"``), committed before the generator
exists, so a restarted server never hands out a group id of an earlier
run, even one whose group was never stored.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeVar

from im.domain import (
    Appended,
    BacklogStart,
    ConversationId,
    DeviceAddress,
    DeviceId,
    Group,
    GroupId,
    GroupStore,
    Message,
    MessageDraft,
    MessagePage,
    MessageStore,
    NoSuchGroup,
    Pending,
    UserId,
)

from .basics import CountingIdGenerator

_log = logging.getLogger(__name__)

T = TypeVar("T")

# ``EventLoop.submit``'s shape: run ``callable(*args)`` on the loop.
Submit = Callable[..., object]

# "netm" in the file header: a file that is not ours is refused rather
# than migrated into.
APPLICATION_ID: Final = 0x6E65746D

# WAL pages between automatic checkpoints (see _Tables.open).
CHECKPOINT_PAGES: Final = 4096

# Conversations whose last seq the writer keeps in memory (see _Tables).
APPEND_CACHE_SIZE: Final = 65_536

# Each step runs once, in order, in the transaction that also sets
# user_version to its number; a released step is never edited, only
# followed by another.
MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: messages, who takes part in each direct conversation, cursors.
    f"""
    PRAGMA application_id = {APPLICATION_ID};
    CREATE TABLE messages (
        conversation TEXT NOT NULL,
        seq INTEGER NOT NULL,
        -- A u64 stored as the i64 with the same bits.
        message_id INTEGER NOT NULL,
        client_message_id TEXT NOT NULL,
        sender_user TEXT NOT NULL,
        sender_device TEXT NOT NULL,
        recipient TEXT NOT NULL,
        content_type INTEGER NOT NULL,
        body BLOB NOT NULL,
        timestamp_ms INTEGER NOT NULL,
        UNIQUE (conversation, seq)
    );
    CREATE UNIQUE INDEX messages_by_client_id
        ON messages (sender_user, client_message_id);
    -- The highest id at open, without a scan.
    CREATE INDEX messages_by_id ON messages (message_id);
    -- id: the order in which a user's conversations began.
    CREATE TABLE direct_conversations (
        id INTEGER PRIMARY KEY,
        user TEXT NOT NULL,
        conversation TEXT NOT NULL,
        UNIQUE (user, conversation)
    );
    CREATE TABLE cursors (
        user TEXT NOT NULL,
        device TEXT NOT NULL,
        conversation TEXT NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (user, device, conversation)
    ) WITHOUT ROWID;
    """,
    # 2: groups and members (id: creation and joining order), and the
    # count of opens that keeps group ids fresh across restarts.
    """
    CREATE TABLE groups (
        id INTEGER PRIMARY KEY,
        group_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE group_members (
        id INTEGER PRIMARY KEY,
        group_ref INTEGER NOT NULL REFERENCES groups (id),
        user TEXT NOT NULL,
        floor INTEGER NOT NULL,
        UNIQUE (group_ref, user)
    );
    CREATE INDEX group_members_by_user ON group_members (user);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('opens', 0);
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_U64: Final = 1 << 64
_I64_MAX: Final = (1 << 63) - 1


class StoreOpenError(RuntimeError):
    """The file cannot be opened as a netim store."""


class SchemaTooNew(StoreOpenError):
    """The file was written by a newer netim; this one must not touch it."""


class StoreClosed(RuntimeError):
    """A call on a store that is closed, or whose writer has stopped."""


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """What the writer has done since the store opened."""

    # Transactions committed, and the operations they held.
    batches: int = 0
    operations: int = 0
    largest_batch: int = 0
    # Transactions the database refused; all their operations failed.
    failed_batches: int = 0

    def __str__(self) -> str:
        average = self.operations / self.batches if self.batches else 0.0
        failed = (
            f", {self.failed_batches:,} refused" if self.failed_batches else ""
        )
        return (
            f"{self.batches:,} commits of {self.operations:,} operations "
            f"(average {average:.1f}, largest {self.largest_batch:,}){failed}"
        )


def migrate(
    connection: sqlite3.Connection,
    steps: Sequence[str] = MIGRATIONS,
) -> int:
    """Bring the schema up to ``len(steps)``; returns that version.

    Each step commits with its version number, so a crash between steps
    resumes at the first step not applied. ``connection`` must be in
    autocommit mode (``isolation_level=None``).
    """
    application_id, version = _header(connection)
    if application_id not in (0, APPLICATION_ID) or (
        application_id == 0 and version == 0 and _has_tables(connection)
    ):
        raise StoreOpenError("the file holds a database that is not netim's")
    if version > len(steps):
        raise SchemaTooNew(
            f"the database is at schema version {version}, newer than "
            f"this netim knows ({len(steps)}); run a newer netim or "
            "restore a backup"
        )
    for number in range(version + 1, len(steps) + 1):
        try:
            # executescript commits whatever is open first, so the
            # transaction lives inside the script.
            connection.executescript(
                f"BEGIN IMMEDIATE;\n{steps[number - 1]};\n"
                f"PRAGMA user_version = {number};\nCOMMIT;"
            )
        except BaseException:
            if connection.in_transaction:
                connection.rollback()
            raise
    return len(steps)


def _header(connection: sqlite3.Connection) -> tuple[int, int]:
    (application_id,) = connection.execute("PRAGMA application_id").fetchone()
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    return int(application_id), int(version)


def _has_tables(connection: sqlite3.Connection) -> bool:
    row = connection.execute("SELECT 1 FROM sqlite_schema LIMIT 1")
    return row.fetchone() is not None


class SQLiteStore:
    """The engine: one file, one connection, one writer thread.

    ``messages`` and ``groups`` are the two port adapters. They share
    this engine because they share its one queue: a join that reads a
    conversation's last seq and then adds the member is ordered against
    the appends around it, and both stores' writes of one batch commit
    in one fsync. The constructor opens the file (migrating it) before
    it returns, and raises if it cannot: call it before the loop serves.

    In the composition root::

        store = SQLiteStore(path, loop.submit)
        ids = store.id_generator()
        send = SendMessage(store.messages, store.groups, ..., ids)
        ...  # serve; at shutdown wait until not store.busy(), then
        store.close()
    """

    durable = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        submit: Submit,
        *,
        synchronous: str = "FULL",
        max_batch: int = 1000,
        group_cache_size: int = 1024,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(
                f"synchronous must be FULL or NORMAL, not {synchronous!r}"
            )
        if max_batch < 1:
            raise ValueError(f"max_batch {max_batch} < 1")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self._submit = submit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Operation | None] = queue.SimpleQueue()
        # Guards _closed against a close() from another thread, so that
        # no call is queued behind the writer's stop mark.
        self._lock = threading.Lock()
        self._closed = False
        self._statistics = StoreStatistics()
        # Writer thread only: whether the database is failing (logged
        # once until writes commit again), whether the batch in progress
        # met a failure, whether posting a result failed (logged once),
        # and the batch in progress until its results are being posted.
        self._failing = False
        self._hurt = False
        self._posting_failed = False
        self._unposted: list[_Operation] = []
        self._ids: CountingIdGenerator | None = None
        # Calls whose result the loop has not received yet; the loop's
        # alone (it makes the calls and runs the completions).
        self._in_flight = 0
        opened: concurrent.futures.Future[_Tables] = (
            concurrent.futures.Future()
        )
        self._thread = threading.Thread(
            target=self._write,
            args=(opened, group_cache_size),
            name=f"sqlite-writer {self.path}",
            daemon=True,
        )
        self._thread.start()
        try:
            self._tables = opened.result()
        except BaseException:
            self._thread.join()
            raise
        self.messages = SQLiteMessageStore(self)
        self.groups = SQLiteGroupStore(self)

    def id_generator(self) -> CountingIdGenerator:
        """The ids for this run: message ids past every stored one, and
        group ids that no earlier run of this file handed out.

        The same generator every time: two would hand out the same ids.
        """
        if self._ids is None:
            self._ids = CountingIdGenerator(
                first_message_id=self._tables.first_free_message_id,
                group_prefix=f"{self._tables.opens}-",
            )
        return self._ids

    def busy(self) -> bool:
        """Whether some call's result has not reached the loop yet: a
        shutdown waits for this to turn false before it says goodbye.
        Loop thread only."""
        return self._in_flight > 0

    def statistics(self) -> StoreStatistics:
        """A snapshot; safe from any thread."""
        return self._statistics

    def close(self) -> None:
        """Run and commit everything queued, then stop the writer and
        close the file. Blocks until then; idempotent. Results of the
        last batch are still posted through ``submit``."""
        with self._lock:
            first = not self._closed
            self._closed = True
        if first:
            self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the loop's side ------------------------------------------------------

    def _call(
        self, run: Callable[..., T], *args: Any, writes: bool
    ) -> Pending[T]:
        pending: Pending[T] = Pending()
        with self._lock:
            if self._closed:
                return Pending.failure(StoreClosed(f"{self.path} is closed"))
            self._queue.put(_Operation(run, args, pending, writes))
        self._in_flight += 1
        pending.add_done_callback(self._completed)
        return pending

    def _completed(self, _done: Pending[Any]) -> None:
        self._in_flight -= 1

    # -- the writer thread ----------------------------------------------------

    def _write(
        self, opened: concurrent.futures.Future[_Tables], cache_size: int
    ) -> None:
        try:
            tables = _Tables.open(self.path, self.synchronous, cache_size)
        except BaseException as error:
            opened.set_exception(error)
            return
        opened.set_result(tables)
        try:
            self._serve(tables)
        except BaseException as error:
            # Our bug, not the database's (those fail batches, not the
            # thread). Say so loudly and refuse further calls, so nothing
            # waits forever on a writer that is gone. The batch it was
            # running is rolled back by the close below.
            _log.exception(
                "the SQLite writer stopped; %s is closed", self.path
            )
            with self._lock:
                self._closed = True
            self._fail_queued(
                StoreClosed(f"the SQLite writer stopped: {error!r}")
            )
        finally:
            tables.close()

    def _serve(self, tables: _Tables) -> None:
        waiting = self._queue
        while True:
            first = waiting.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    operation = waiting.get_nowait()
                except queue.Empty:
                    break
                if operation is None:
                    stop = True
                    break
                batch.append(operation)
            self._unposted = batch
            self._run_batch(tables, batch)
            if stop:
                return

    def _run_batch(self, tables: _Tables, batch: list[_Operation]) -> None:
        db = tables.db
        outcomes: list[tuple[Any, Exception | None]] = []
        self._hurt = False
        try:
            db.execute("BEGIN IMMEDIATE")
            for operation in batch:
                outcomes.append(self._run_one(db, operation))
            db.execute("COMMIT")
        except Exception as error:
            # Nothing of the batch is stored, so nothing of it succeeded.
            tables.abandon()
            self._database_failed(error)
            outcomes = [(None, error)] * len(batch)
            self._count(len(batch), committed=False)
        else:
            # Over when writes commit again; a batch of reads proves
            # nothing about a full disk.
            wrote = any(operation.writes for operation in batch)
            if self._failing and wrote and not self._hurt:
                self._failing = False
                _log.warning("%s commits again", self.path)
            self._count(len(batch), committed=True)
        self._post(batch, outcomes)

    def _run_one(
        self, db: sqlite3.Connection, operation: _Operation
    ) -> tuple[Any, Exception | None]:
        # No savepoint here: every operation of _Tables is atomic by
        # itself (see its docstring), so a failed one has nothing to undo.
        try:
            return operation.run(*operation.args), None
        except Exception as error:
            if not db.in_transaction:
                raise  # SQLite ended the whole transaction: the batch fails
            if _is_database_failure(error):
                self._database_failed(error)
            return None, error

    def _database_failed(self, error: Exception) -> None:
        self._hurt = True
        if not self._failing:
            self._failing = True
            _log.error(
                "%s: the database failed; calls fail until it commits again",
                self.path,
                exc_info=error,
            )

    def _count(self, size: int, *, committed: bool) -> None:
        # A new record each time: a reader on another thread sees one
        # batch's figures whole or not at all.
        old = self._statistics
        self._statistics = StoreStatistics(
            batches=old.batches + committed,
            operations=old.operations + size,
            largest_batch=max(old.largest_batch, size * committed),
            failed_batches=old.failed_batches + (not committed),
        )

    def _post(
        self,
        batch: list[_Operation],
        outcomes: list[tuple[Any, Exception | None]],
    ) -> None:
        # From here on a dying writer must not fail these a second time.
        self._unposted = []
        submit = self._submit
        try:
            for operation, (value, error) in zip(batch, outcomes, strict=True):
                if error is None:
                    submit(operation.pending.resolve, value)
                else:
                    submit(operation.pending.fail, error)
        except Exception:
            # The loop is closed: nobody is left to hear the results.
            if not self._posting_failed:
                self._posting_failed = True
                _log.warning(
                    "%s: results could not be posted to the loop",
                    self.path,
                    exc_info=True,
                )

    def _fail_queued(self, error: Exception) -> None:
        batch = self._unposted
        while True:
            try:
                operation = self._queue.get_nowait()
            except queue.Empty:
                break
            if operation is not None:
                batch.append(operation)
        self._post(batch, [(None, error)] * len(batch))


@dataclass(frozen=True, slots=True)
class _Operation:
    run: Callable[..., Any]
    args: tuple[Any, ...]
    pending: Pending[Any]
    writes: bool


class SQLiteMessageStore(MessageStore):
    """The message port on an ``SQLiteStore``'s writer. Durable: an
    append completes once its transaction has committed."""

    durable = True

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._tables = store._tables

    def append(self, draft: MessageDraft) -> Pending[Appended]:
        return self._store._call(self._tables.append, draft, writes=True)

    def last_seq(self, conversation: ConversationId) -> Pending[int]:
        return self._store._call(
            self._tables.last_seq, conversation.value, writes=False
        )

    def read_after(
        self, conversation: ConversationId, after_seq: int, limit: int
    ) -> Pending[MessagePage]:
        return self._store._call(
            self._tables.read_after,
            conversation,
            after_seq,
            limit,
            writes=False,
        )

    def read_before(
        self,
        conversation: ConversationId,
        before_seq: int,
        limit: int,
        floor: int = 0,
    ) -> Pending[MessagePage]:
        return self._store._call(
            self._tables.read_before,
            conversation,
            before_seq,
            limit,
            floor,
            writes=False,
        )

    def direct_conversations(
        self, user: UserId
    ) -> Pending[Sequence[ConversationId]]:
        return self._store._call(
            self._tables.direct_conversations, user, writes=False
        )

    def takes_part(
        self, user: UserId, conversation: ConversationId
    ) -> Pending[bool]:
        return self._store._call(
            self._tables.takes_part, user, conversation.value, writes=False
        )

    def record_ack(
        self,
        device: DeviceAddress,
        conversation: ConversationId,
        seq: int,
    ) -> Pending[int]:
        return self._store._call(
            self._tables.record_ack, device, conversation, seq, writes=True
        )

    def acked_seq(
        self, device: DeviceAddress, conversation: ConversationId
    ) -> Pending[int]:
        return self._store._call(
            self._tables.acked_seq, device, conversation, writes=False
        )

    def read_backlog(
        self,
        device: DeviceAddress,
        starts: Sequence[BacklogStart],
        limit: int,
    ) -> Pending[MessagePage]:
        # A copy: the caller's list must not change under the writer.
        return self._store._call(
            self._tables.read_backlog,
            device,
            tuple(starts),
            limit,
            writes=False,
        )


class SQLiteGroupStore(GroupStore):
    """The group port on an ``SQLiteStore``'s writer. Durable."""

    durable = True

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._tables = store._tables

    def create(self, group: Group) -> Pending[Group]:
        return self._store._call(self._tables.create, group, writes=True)

    def get(self, group_id: GroupId) -> Pending[Group | None]:
        return self._store._call(self._tables.get, group_id, writes=False)

    def add_member(
        self, group_id: GroupId, user: UserId, floor: int
    ) -> Pending[Group]:
        return self._store._call(
            self._tables.add_member, group_id, user, floor, writes=True
        )

    def remove_member(self, group_id: GroupId, user: UserId) -> Pending[Group]:
        return self._store._call(
            self._tables.remove_member, group_id, user, writes=True
        )

    def groups_of(self, user: UserId) -> Pending[Sequence[Group]]:
        return self._store._call(self._tables.groups_of, user, writes=False)


_MESSAGE_COLUMNS = (
    "SELECT message_id, client_message_id, conversation, seq, sender_user,"
    " sender_device, recipient, content_type, body, timestamp_ms"
    " FROM messages"
)


class _Tables:
    """The SQL of every operation. The writer thread's alone.

    Reads and results mirror ``InMemoryMessageStore`` and
    ``InMemoryGroupStore`` step by step, edge cases included, so that
    one set of contract tests holds for both.

    Every writing method is atomic: when it raises, the database is as
    it was before the call. One that writes with a single statement is
    so already (a failed statement changes nothing) provided nothing
    after that statement can fail; one that writes with several runs
    them under ``_atomic()``.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        opens: int,
        first_free_message_id: int,
        cache_size: int,
    ) -> None:
        self.db = db
        self.opens = opens
        self.first_free_message_id = first_free_message_id
        # Every group send reads its group, members and all; a group is
        # immutable, so the loaded one is shared until it changes. Only
        # the writer changes groups, so the cache is exact, as long as a
        # transaction that fails takes its cached groups with it.
        self._groups: collections.OrderedDict[GroupId, tuple[int, Group]] = (
            collections.OrderedDict()
        )
        self._cache_size = cache_size
        # What every append would otherwise ask the database: the last
        # seq of its conversation, and whether its two users already
        # list it. Exact for the same reason (only the writer writes).
        # A write to them is either a value just read from the database
        # or an append's last step, after all its statements succeeded,
        # so an operation that fails, and so changed nothing, leaves
        # them true; a failed batch clears them.
        # Past its size one is emptied and refills from the database
        # (at most ``APPEND_CACHE_SIZE`` entries: a few MB).
        self._last_seqs: dict[str, int] = {}
        self._listed: set[tuple[str, str]] = set()

    @classmethod
    def open(cls, path: str, synchronous: str, cache_size: int) -> _Tables:
        # timeout=0: the lock is ours for good or never, so waiting for it
        # would only delay the error.
        db = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            # Before anything reads: the first access takes the lock,
            # and with it WAL keeps its index in our memory, not in a
            # file shared with other processes.
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            try:
                (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
            except sqlite3.OperationalError as error:
                if "locked" in str(error):
                    raise StoreOpenError(
                        f"{path} is in use by another store (another "
                        "server on the same file?)"
                    ) from error
                raise
            if mode != "wal":
                raise StoreOpenError(f"{path}: no WAL mode ({mode})")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            # A checkpoint copies every page changed since the last one
            # from the WAL into the file; at SQLite's default (1,000
            # pages) a busy writer copies the same index pages again and
            # again. 4,096 pages (16 MB of WAL) took a sixth off an
            # append's CPU time (docs/perf/009-sqlite-appends.md).
            db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
            # Checkpoints leave the WAL at its largest; cap what it keeps.
            db.execute(f"PRAGMA journal_size_limit = {64 << 20}")
            migrate(db)
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'opens'"
            )
            (opens,) = db.execute(
                "SELECT value FROM counters WHERE name = 'opens'"
            ).fetchone()
            highest = _highest_message_id(db)
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return cls(db, opens, highest + 1, cache_size)

    def close(self) -> None:
        if self.db.in_transaction:
            self.db.rollback()
        self.db.close()

    def abandon(self) -> None:
        """Undo the batch in progress, and forget what it cached."""
        self._groups.clear()
        self._last_seqs.clear()
        self._listed.clear()
        if self.db.in_transaction:
            try:
                self.db.rollback()
            except sqlite3.Error:
                _log.exception("rollback failed")

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """Run the statements of the block all, or none of them."""
        db = self.db
        db.execute("SAVEPOINT operation")
        try:
            yield
        except BaseException:
            if db.in_transaction:  # else SQLite rolled back everything
                self._end_savepoint(undo=True)
            raise
        self._end_savepoint(undo=False)

    def _end_savepoint(self, *, undo: bool) -> None:
        try:
            if undo:
                self.db.execute("ROLLBACK TO operation")
            self.db.execute("RELEASE operation")
        except sqlite3.Error:
            # A savepoint that cannot be undone or let go of leaves the
            # operation's writes in doubt: end the whole transaction, so
            # that its batch fails (and the caches are dropped) rather
            # than commit what the caller is told failed.
            self.db.rollback()
            raise

    # -- messages -------------------------------------------------------------

    def append(self, draft: MessageDraft) -> Appended:
        conversation = draft.conversation_id.value
        message = draft.stored_as(self.last_seq(conversation) + 1)
        pair = (draft.sender.user, conversation)
        # The first message of a direct conversation (as far as the
        # cache knows) lists it too: the row and the listing go in
        # together. Every other append is one statement.
        listing = (
            draft.conversation_id.group is None and pair not in self._listed
        )
        if not listing:
            appended = self._insert(draft, message)
        else:
            with self._atomic():
                appended = self._insert(draft, message)
                if not appended.duplicate:
                    self._list(pair, draft.to)
        if appended.duplicate:
            return appended
        # Last, once every statement succeeded (see __init__).
        if listing:
            self._remember_listed(pair)
            self._remember_listed((draft.to, conversation))
        self._remember_seq(conversation, message.seq)
        return appended

    def _insert(self, draft: MessageDraft, message: Message) -> Appended:
        """Store ``message``, or find the one this draft resends."""
        # Made before the INSERT, so that nothing after it can fail.
        appended = Appended(message, duplicate=False)
        try:
            self.db.execute(
                "INSERT INTO messages (conversation, seq, message_id,"
                " client_message_id, sender_user, sender_device, recipient,"
                " content_type, body, timestamp_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    draft.conversation_id.value,
                    message.seq,
                    _to_i64(message.message_id),
                    message.client_message_id,
                    message.sender.user,
                    message.sender.device,
                    message.to,
                    message.content_type,
                    message.body,
                    message.timestamp_ms,
                ),
            )
        except sqlite3.IntegrityError:
            # The sender used this client message id before, and its
            # unique index refused the row (a refused statement leaves
            # nothing behind): the message stored then is the answer.
            # Looking it up first would cost every append a query, for
            # the rare resend.
            row = self.db.execute(
                f"{_MESSAGE_COLUMNS}"
                " WHERE sender_user = ? AND client_message_id = ?",
                draft.dedup_key,
            ).fetchone()
            if row is None:
                raise
            return Appended(_message(row), duplicate=True)
        return appended

    def _list(self, pair: tuple[str, str], other_user: str) -> None:
        """List the conversation ``pair[1]`` for both of its users."""
        self.db.executemany(
            "INSERT OR IGNORE INTO direct_conversations"
            " (user, conversation) VALUES (?, ?)",
            (pair, (other_user, pair[1])),
        )

    def _remember_listed(self, pair: tuple[str, str]) -> None:
        """(user, conversation) is in the table.

        Any pair of a conversation, whoever put it here, proves that
        both of its rows are: ``_list`` writes the two together or
        neither, nothing deletes them, and a rollback (which could take
        them back) empties this set (``abandon``). So an append may skip
        the listing when either user's pair is known.
        """
        listed = self._listed
        if pair in listed:
            return
        if len(listed) >= APPEND_CACHE_SIZE:
            listed.clear()
        listed.add(pair)

    def takes_part(self, user: str, conversation: str) -> bool:
        pair = (user, conversation)
        if pair in self._listed:
            return True
        # Only a yes is remembered: a no would be wrong after the
        # conversation's first message.
        found = self.db.execute(
            "SELECT 1 FROM direct_conversations"
            " WHERE user = ? AND conversation = ?",
            pair,
        ).fetchone()
        if found is not None:
            self._remember_listed(pair)
        return found is not None

    def last_seq(self, conversation: str) -> int:
        seq = self._last_seqs.get(conversation)
        if seq is not None:
            return seq
        (found,) = self.db.execute(
            "SELECT MAX(seq) FROM messages WHERE conversation = ?",
            (conversation,),
        ).fetchone()
        seq = 0 if found is None else int(found)
        self._remember_seq(conversation, seq)
        return seq

    def _remember_seq(self, conversation: str, seq: int) -> None:
        last_seqs = self._last_seqs
        if (
            len(last_seqs) >= APPEND_CACHE_SIZE
            and conversation not in last_seqs
        ):
            last_seqs.clear()
        last_seqs[conversation] = seq

    def read_after(
        self, conversation: ConversationId, after_seq: int, limit: int
    ) -> MessagePage:
        last = self.last_seq(conversation.value)
        if last == 0:
            return MessagePage((), False)
        messages = self._after(conversation.value, after_seq, limit)
        end = messages[-1].seq if messages else after_seq
        return MessagePage(messages, end < last)

    def read_before(
        self,
        conversation: ConversationId,
        before_seq: int,
        limit: int,
        floor: int,
    ) -> MessagePage:
        last = self.last_seq(conversation.value)
        if last == 0:
            return MessagePage((), False)
        if before_seq == 0:
            before_seq = last + 1
        end = min(before_seq - 1, last)
        start = max(floor, end - limit, 0)
        messages = self._between(conversation.value, start, end)
        first = messages[0].seq if messages else before_seq
        return MessagePage(messages, first - 1 > floor)

    def direct_conversations(self, user: UserId) -> tuple[ConversationId, ...]:
        rows = self.db.execute(
            "SELECT conversation FROM direct_conversations"
            " WHERE user = ? ORDER BY id",
            (user,),
        )
        return tuple(ConversationId(text) for (text,) in rows)

    def record_ack(
        self,
        device: DeviceAddress,
        conversation: ConversationId,
        seq: int,
    ) -> int:
        current = self.acked_seq(device, conversation)
        seq = min(seq, self.last_seq(conversation.value))
        if seq <= current:
            return current
        self.db.execute(
            "INSERT OR REPLACE INTO cursors (user, device, conversation, seq)"
            " VALUES (?, ?, ?, ?)",
            (device.user, device.device, conversation.value, seq),
        )
        return seq

    def acked_seq(
        self, device: DeviceAddress, conversation: ConversationId
    ) -> int:
        row = self.db.execute(
            "SELECT seq FROM cursors"
            " WHERE user = ? AND device = ? AND conversation = ?",
            (device.user, device.device, conversation.value),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def read_backlog(
        self,
        device: DeviceAddress,
        starts: Sequence[BacklogStart],
        limit: int,
    ) -> MessagePage:
        out: list[Message] = []
        for start in starts:
            conversation = start.conversation_id
            last = self.last_seq(conversation.value)
            if last == 0:
                continue
            after = max(self.acked_seq(device, conversation), start.after_seq)
            if after >= last:
                continue  # nothing unread here
            if len(out) == limit:
                return MessagePage(out, True)
            taken = self._after(conversation.value, after, limit - len(out))
            out.extend(taken)
            if taken[-1].seq < last:
                return MessagePage(out, True)
        return MessagePage(out, False)

    def _after(self, conversation: str, seq: int, limit: int) -> list[Message]:
        rows = self.db.execute(
            f"{_MESSAGE_COLUMNS} WHERE conversation = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            (conversation, max(seq, 0), max(limit, 0)),
        )
        return [_message(row) for row in rows]

    def _between(
        self, conversation: str, low: int, high: int
    ) -> list[Message]:
        """Messages with low < seq <= high, ascending."""
        if high <= low:
            return []
        rows = self.db.execute(
            f"{_MESSAGE_COLUMNS} WHERE conversation = ? AND seq > ?"
            " AND seq <= ? ORDER BY seq",
            (conversation, low, high),
        )
        return [_message(row) for row in rows]

    # -- groups ---------------------------------------------------------------

    def create(self, group: Group) -> Group:
        if self._load(group.group_id) is not None:
            # An id generator handing out an id twice is our bug.
            raise ValueError(f"group {group.group_id} exists already")
        with self._atomic():  # the group and its members
            cursor = self.db.execute(
                "INSERT INTO groups (group_id, name, created_at_ms)"
                " VALUES (?, ?, ?)",
                (group.group_id, group.name, group.created_at_ms),
            )
            ref = cursor.lastrowid
            assert ref is not None
            self.db.executemany(
                "INSERT INTO group_members (group_ref, user, floor)"
                " VALUES (?, ?, ?)",
                [(ref, user, floor) for user, floor in group.members.items()],
            )
        self._remember(ref, group)
        return group

    def get(self, group_id: GroupId) -> Group | None:
        found = self._load(group_id)
        return None if found is None else found[1]

    def add_member(self, group_id: GroupId, user: UserId, floor: int) -> Group:
        ref, group = self._require(group_id)
        joined = group.joined(user, floor)
        if joined is not group:
            self.db.execute(
                "INSERT INTO group_members (group_ref, user, floor)"
                " VALUES (?, ?, ?)",
                (ref, user, floor),
            )
            self._remember(ref, joined)
        return joined

    def remove_member(self, group_id: GroupId, user: UserId) -> Group:
        ref, group = self._require(group_id)
        left = group.left(user)
        self.db.execute(
            "DELETE FROM group_members WHERE group_ref = ? AND user = ?",
            (ref, user),
        )
        self._remember(ref, left)
        return left

    def groups_of(self, user: UserId) -> tuple[Group, ...]:
        rows = self.db.execute(
            "SELECT g.group_id FROM group_members AS m"
            " JOIN groups AS g ON g.id = m.group_ref"
            " WHERE m.user = ? ORDER BY g.id",
            (user,),
        ).fetchall()
        out = []
        for (group_id,) in rows:
            found = self._load(GroupId(group_id))
            assert found is not None
            out.append(found[1])
        return tuple(out)

    def _require(self, group_id: GroupId) -> tuple[int, Group]:
        found = self._load(group_id)
        if found is None:
            raise NoSuchGroup(f"no group {group_id}")
        return found

    def _load(self, group_id: GroupId) -> tuple[int, Group] | None:
        cached = self._groups.get(group_id)
        if cached is not None:
            self._groups.move_to_end(group_id)
            return cached
        row = self.db.execute(
            "SELECT id, name, created_at_ms FROM groups WHERE group_id = ?",
            (group_id,),
        ).fetchone()
        if row is None:
            return None
        ref, name, created_at_ms = row
        members = self.db.execute(
            "SELECT user, floor FROM group_members"
            " WHERE group_ref = ? ORDER BY id",
            (ref,),
        )
        group = Group(
            group_id,
            name,
            created_at_ms,
            MappingProxyType({UserId(u): f for u, f in members}),
        )
        self._remember(ref, group)
        return ref, group

    def _remember(self, ref: int, group: Group) -> None:
        cache = self._groups
        cache[group.group_id] = (ref, group)
        cache.move_to_end(group.group_id)
        while len(cache) > self._cache_size:
            cache.popitem(last=False)


def _message(row: tuple[Any, ...]) -> Message:
    return Message(
        message_id=_from_i64(row[0]),
        client_message_id=row[1],
        conversation_id=ConversationId(row[2]),
        seq=row[3],
        sender=DeviceAddress(UserId(row[4]), DeviceId(row[5])),
        to=row[6],
        content_type=row[7],
        body=row[8],
        timestamp_ms=row[9],
    )


def _is_database_failure(error: Exception) -> bool:
    """The disk or the file failed (full, I/O error, corrupt), rather
    than a call being wrong (a value SQLite cannot bind, say)."""
    return (
        isinstance(error, (sqlite3.OperationalError, sqlite3.InternalError))
        or type(error) is sqlite3.DatabaseError
    )


def _to_i64(value: int) -> int:
    # SQLite's integers are signed; a u64 id keeps its bits.
    return value - _U64 if value > _I64_MAX else value


def _from_i64(value: int) -> int:
    return value + _U64 if value < 0 else value


def _highest_message_id(db: sqlite3.Connection) -> int:
    # Ids of 2**63 and up are stored negative (see _to_i64), and are the
    # higher ones; both lookups walk the index, not the table.
    (wrapped,) = db.execute(
        "SELECT MAX(message_id) FROM messages WHERE message_id < 0"
    ).fetchone()
    if wrapped is not None:
        return _from_i64(int(wrapped))
    (highest,) = db.execute("SELECT MAX(message_id) FROM messages").fetchone()
    return 0 if highest is None else int(highest)
