"""What only the SQLite store has: a file that outlives the process, one
writer thread with batched commits, migrations, failures of the disk."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from store_harness import DEADLINE, Pump, dev, draft

from im.domain import (
    Appended,
    ConversationId,
    Group,
    GroupId,
    NoSuchGroup,
    NotAMember,
    Pending,
    UserId,
)
from im.infrastructure import (
    SchemaTooNew,
    SQLiteStore,
    StoreClosed,
    StoreOpenError,
)
from im.infrastructure.sqlite_store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    migrate,
)

ALICE, BOB, CAROL = UserId("alice"), UserId("bob"), UserId("carol")
CONV = ConversationId.direct(ALICE, BOB)
LOGGER = "im.infrastructure.sqlite_store"
CHILD = Path(__file__).with_name("sqlite_kill_child.py")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "netim.db"


def append_all(
    store: SQLiteStore, pump: Pump, n: int, prefix: str = "c"
) -> list[Appended]:
    pendings = [
        store.messages.append(draft(CONV, f"{prefix}{i}", message_id=i + 1))
        for i in range(n)
    ]
    pump.until_done(*pendings)
    return [p.result() for p in pendings]


def all_messages(
    store: SQLiteStore, pump: Pump, conversation: ConversationId = CONV
) -> list[Any]:
    out: list[Any] = []
    while True:
        after = out[-1].seq if out else 0
        page = pump.value(store.messages.read_after(conversation, after, 200))
        out += page.messages
        if not page.has_more:
            return out


# -- restart ------------------------------------------------------------------


def test_a_reopened_file_holds_everything_and_carries_on(path: Path) -> None:
    pump = Pump()
    with SQLiteStore(path, pump.submit) as store:
        ids = store.id_generator()
        m, g = store.messages, store.groups
        before = append_all(store, pump, 3)
        pump.value(m.record_ack(dev("bob"), CONV, 2))
        first_gid, second_gid = ids.next_group_id(), ids.next_group_id()
        group = Group.create(first_gid, "team", CAROL, (BOB, ALICE), 7)
        pump.value(g.create(group))
        pump.value(g.add_member(first_gid, UserId("dave"), 3))
        pump.value(g.remove_member(first_gid, BOB))
        kept = pump.value(g.get(first_gid))
        group_message = pump.value(
            m.append(draft(group.conversation_id, "gc", to=first_gid))
        ).message

    pump = Pump()
    with SQLiteStore(path, pump.submit) as store:
        m, g = store.messages, store.groups
        assert all_messages(store, pump) == [a.message for a in before]
        resend = pump.value(m.append(draft(CONV, "c1", message_id=99)))
        assert resend.duplicate and resend.message == before[1].message
        nxt = pump.value(m.append(draft(CONV, "new", message_id=100)))
        assert nxt.message.seq == 4
        assert pump.value(m.acked_seq(dev("bob"), CONV)) == 2
        assert pump.value(m.direct_conversations(BOB)) == (CONV,)
        # Read from the table: a new writer remembers no conversation.
        assert pump.value(m.takes_part(BOB, CONV))
        assert not pump.value(m.takes_part(CAROL, CONV))
        again = pump.value(g.get(first_gid))
        assert again == kept
        assert again is not None
        assert list(again.members.items()) == [
            ("carol", 0), ("alice", 0), ("dave", 3),
        ]  # fmt: skip
        assert pump.value(g.groups_of(ALICE)) == (kept,)
        assert pump.value(g.groups_of(BOB)) == ()
        assert all_messages(store, pump, group.conversation_id) == [
            group_message
        ]
        ids = store.id_generator()
        assert ids is store.id_generator()
        assert ids.next_message_id() == 4  # past the highest stored (3)
        fresh = ids.next_group_id()
        assert fresh not in (first_gid, second_gid)
        assert pump.value(g.get(fresh)) is None


def test_message_ids_continue_past_u64_ids_stored(path: Path) -> None:
    pump = Pump()
    with SQLiteStore(path, pump.submit) as store:
        for i, message_id in enumerate((5, 2**64 - 9, 2**63 + 1)):
            sent = draft(CONV, f"c{i}", message_id=message_id)
            stored = pump.value(store.messages.append(sent)).message
            assert stored.message_id == message_id
    with SQLiteStore(path, pump.submit) as store:
        assert store.id_generator().next_message_id() == 2**64 - 8


# -- a process killed mid-stream ---------------------------------------------


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
def test_every_acked_message_survives_a_kill(
    path: Path, synchronous: str
) -> None:
    """NORMAL too: in WAL mode only a power cut can lose its commits."""
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), synchronous, "1000000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    # Only against a hang: the test normally kills the child far sooner.
    guard = threading.Timer(DEADLINE, child.kill)
    guard.start()
    try:
        assert child.stdout is not None
        lines = []
        for line in child.stdout:
            lines.append(line)
            if len(lines) == 300:
                child.send_signal(signal.SIGKILL)
                break
        lines += child.stdout.readlines()  # printed before the kill
        child.stdout.close()
        assert child.wait() == -signal.SIGKILL
    finally:
        guard.cancel()
    acked = [line.split() for line in lines if line.endswith("\n")]
    assert len(acked) >= 300

    pump = Pump()
    with SQLiteStore(path, pump.submit) as store:
        stored = all_messages(store, pump)
        assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
        by_seq = {m.seq: m.client_message_id for m in stored}
        for seq, client_id in acked:
            assert by_seq[int(seq)] == client_id
        client_ids = [m.client_message_id for m in stored]
        assert len(set(client_ids)) == len(client_ids)
        nxt = pump.value(store.messages.append(draft(CONV, "after")))
        assert nxt.message.seq == len(stored) + 1
        assert store.id_generator().next_message_id() > max(
            m.message_id for m in stored
        )


# -- one writer, batches, order -----------------------------------------------


class GatedPump(Pump):
    """A loop that is slow to take the first result: the writer waits in
    ``submit`` until the test opens the gate, so the test can queue work
    behind it and know it all queued up together."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def submit(self, callback: Callable[..., Any], *args: Any) -> None:
        self.entered.set()
        self.gate.wait(DEADLINE)
        super().submit(callback, *args)


@pytest.mark.parametrize(
    ("max_batch", "batches", "largest"), [(1000, 2, 200), (64, 5, 64)]
)
def test_queued_appends_share_transactions(
    path: Path, max_batch: int, batches: int, largest: int
) -> None:
    pump = GatedPump()
    with SQLiteStore(path, pump.submit, max_batch=max_batch) as store:
        first = store.messages.last_seq(CONV)
        assert pump.entered.wait(DEADLINE)
        appends = [
            store.messages.append(draft(CONV, f"c{i}")) for i in range(200)
        ]
        pump.gate.set()
        pump.until_done(first, *appends)
        seqs = [p.result().message.seq for p in appends]
        assert seqs == list(range(1, 201))
        stats = store.statistics()
    assert stats.operations == 201
    assert stats.batches == batches
    assert stats.largest_batch == largest
    assert stats.failed_batches == 0


def test_results_complete_in_call_order(path: Path) -> None:
    pump = Pump()
    with SQLiteStore(path, pump.submit) as store:
        m, g = store.messages, store.groups
        gid = GroupId("g")
        calls: list[Pending[Any]] = [
            g.create(Group.create(gid, "g", ALICE, (), 0)),
            m.append(draft(CONV, "a")),
            g.remove_member(gid, BOB),  # NotAMember
            m.last_seq(CONV),
            g.add_member(GroupId("none"), BOB, 0),  # NoSuchGroup
            m.append(draft(CONV, "b")),
            m.record_ack(dev("bob"), CONV, 9),
            g.add_member(gid, BOB, 2),
            m.append(draft(CONV, "a")),  # a resend
            m.read_after(CONV, 0, 10),
            g.groups_of(BOB),
        ]
        order: list[int] = []
        for index, pending in enumerate(calls):
            pending.add_done_callback(lambda _, i=index: order.append(i))
        pump.until_done(*calls)
    assert order == list(range(len(calls)))
    assert isinstance(calls[2].exception(), NotAMember)
    assert isinstance(calls[4].exception(), NoSuchGroup)
    # Each call saw the ones before it, the failed ones changing nothing.
    assert calls[3].result() == 1
    assert calls[6].result() == 2
    assert calls[8].result().duplicate
    assert [x.seq for x in calls[9].result().messages] == [1, 2]
    assert [x.group_id for x in calls[10].result()] == [gid]


def test_busy_until_every_result_reached_the_loop(path: Path) -> None:
    pump = Pump()
    with SQLiteStore(path, pump.submit) as store:
        assert not store.busy()
        pending = store.messages.append(draft(CONV, "a"))
        assert store.busy()
        pump.until_done(pending)
        assert not store.busy()


# -- open and close -----------------------------------------------------------


def test_close_commits_what_was_queued(path: Path) -> None:
    pump = Pump()
    store = SQLiteStore(path, pump.submit)
    queued = [store.messages.append(draft(CONV, f"c{i}")) for i in range(50)]
    store.close()
    store.close()
    pump.until_done(*queued)
    assert queued[-1].result().message.seq == 50
    late = store.messages.last_seq(CONV)
    assert late.done and isinstance(late.exception(), StoreClosed)
    with SQLiteStore(path, pump.submit) as again:
        assert pump.value(again.messages.last_seq(CONV)) == 50


def test_one_file_one_store(path: Path) -> None:
    with (
        SQLiteStore(path, Pump().submit),
        pytest.raises(StoreOpenError, match="in use"),
    ):
        SQLiteStore(path, Pump().submit)
    SQLiteStore(path, Pump().submit).close()


def test_synchronous_is_full_or_normal(path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(path, Pump().submit, synchronous="OFF")
    pump = Pump()
    with SQLiteStore(path, pump.submit, synchronous="NORMAL") as store:
        assert append_all(store, pump, 2)[-1].message.seq == 2


# -- the schema ---------------------------------------------------------------


def test_an_older_schema_is_migrated(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db, MIGRATIONS[:1]) == 1
    db.execute(
        "INSERT INTO messages VALUES (?, 1, 7, 'c0', 'alice', 'phone', 'bob',"
        " 1, x'6869', 5)",
        (CONV.value,),
    )
    db.close()
    pump = Pump()
    with SQLiteStore(path, pump.submit) as store:
        (old,) = all_messages(store, pump)
        assert (old.message_id, old.body, old.sender) == (
            7,
            b"hi",
            dev("alice"),
        )
        nxt = pump.value(store.messages.append(draft(CONV, "c1")))
        assert nxt.message.seq == 2
        group = Group.create(GroupId("g"), "g", ALICE, (), 0)
        assert pump.value(store.groups.create(group)) == group
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    db.close()


def test_a_newer_schema_is_refused_untouched(path: Path) -> None:
    SQLiteStore(path, Pump().submit).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="newer than this netim"):
        SQLiteStore(path, Pump().submit)
    db = sqlite3.connect(path)
    version = db.execute("PRAGMA user_version").fetchone()
    db.close()
    assert version == (SCHEMA_VERSION + 1,)


def test_a_file_that_is_not_ours_is_refused(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (name TEXT)")
    db.close()
    with pytest.raises(StoreOpenError, match="not netim's"):
        SQLiteStore(path, Pump().submit)


def test_migration_steps_apply_once_in_order_each_atomic(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    steps = ["CREATE TABLE t (x INTEGER)", "INSERT INTO t VALUES (1)"]
    assert migrate(db, steps) == 2
    assert migrate(db, steps) == 2
    broken = [*steps, "INSERT INTO t VALUES (2); INSERT INTO nope VALUES (3)"]
    with pytest.raises(sqlite3.OperationalError, match="nope"):
        migrate(db, broken)
    assert migrate(db, [*steps, "INSERT INTO t VALUES (3)"]) == 3
    assert db.execute("SELECT x FROM t").fetchall() == [(1,), (3,)]
    assert db.execute("PRAGMA user_version").fetchone() == (3,)
    db.close()


# -- failures -----------------------------------------------------------------


def set_max_pages(store: SQLiteStore, pump: Pump, pages: int) -> None:
    """Cap the file's size: the disk is full once it reaches it. (The
    only way in to the writer's connection is the private one.)"""

    def cap() -> None:
        store._tables.db.execute(f"PRAGMA max_page_count = {pages}")

    pump.value(store._call(cap, writes=False))


def test_a_full_disk_fails_the_writes_and_is_logged_once(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pump = Pump()
    big = b"x" * 20_000
    with SQLiteStore(path, pump.submit) as store:
        m = store.messages
        append_all(store, pump, 2)
        set_max_pages(store, pump, 1)
        for i in range(3):
            full = m.append(draft(CONV, f"big{i}", body=big))
            seq = m.last_seq(CONV)
            pump.until_done(full, seq)
            assert isinstance(full.exception(), sqlite3.OperationalError)
            assert "full" in str(full.exception())
        set_max_pages(store, pump, 1 << 30)
        after = pump.value(m.append(draft(CONV, "big", body=big)))
        assert after.message.seq == 3  # no seq lost to the failures
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "commits again" in caplog.records[-1].getMessage()


def test_a_bad_call_fails_alone_and_the_writer_carries_on(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pump = Pump()
    with SQLiteStore(path, pump.submit) as store:
        m = store.messages
        bad = draft(CONV, "bad", body=object())  # type: ignore[arg-type]
        calls = [m.append(draft(CONV, "a")), m.append(bad)]
        calls.append(m.append(draft(CONV, "b")))
        pump.until_done(*calls)
        assert isinstance(calls[1].exception(), sqlite3.Error)
        assert [c.result().message.seq for c in (calls[0], calls[2])] == [
            1,
            2,
        ]
        assert store.statistics().failed_batches == 0
    assert not caplog.records  # a caller's bug, not the database's


def test_an_append_that_fails_after_its_row_loses_no_seq(path: Path) -> None:
    # The writer keeps each conversation's last seq in memory. An append
    # whose message row was written but whose next statement failed is
    # rolled back, and must not leave its seq behind in that memory.
    pump = Pump()
    conv = ConversationId.direct(ALICE, CAROL)
    with SQLiteStore(path, pump.submit) as store:
        m = store.messages

        def sql(statement: str) -> Callable[[], None]:
            return lambda: store._tables.db.execute(statement)

        assert (
            pump.value(m.append(draft(conv, "a", to="carol"))).message.seq == 1
        )
        pump.value(
            store._call(
                sql(
                    "CREATE TEMP TRIGGER refuse BEFORE INSERT ON"
                    " direct_conversations WHEN NEW.user = 'dave'"
                    " BEGIN SELECT RAISE(ABORT, 'dave refused'); END"
                ),
                writes=False,
            )
        )
        # The first message to dave lists the conversation for both:
        # refused, after the message row was written.
        to_dave = ConversationId.direct(ALICE, UserId("dave"))
        refused = m.append(draft(to_dave, "b", to="dave"))
        pump.until_done(refused)
        assert "dave refused" in str(refused.exception())
        # Nobody takes part yet: the refused append is not remembered.
        assert not pump.value(m.takes_part(UserId("dave"), to_dave))
        assert not pump.value(m.takes_part(ALICE, to_dave))
        pump.value(store._call(sql("DROP TRIGGER refuse"), writes=False))
        again = pump.value(m.append(draft(to_dave, "c", to="dave")))
        assert again.message.seq == 1
        assert [
            x.client_message_id for x in all_messages(store, pump, to_dave)
        ] == ["c"]
        # Listed for real this time (read from the table, not a cache).
        assert pump.value(m.direct_conversations(UserId("dave"))) == (to_dave,)


class RefusesOnce:
    """The writer's connection, refusing the first statement that
    begins with ``refused`` (one more than a test can arrange with a
    trigger: ``COMMIT``, ``RELEASE``)."""

    def __init__(self, db: sqlite3.Connection, refused: str) -> None:
        self.db = db
        self.refused: str | None = refused

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.refused is not None and sql.startswith(self.refused):
            self.refused = None
            raise sqlite3.OperationalError(f"cannot {sql.lower()} (test)")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_a_batch_that_cannot_commit_leaves_no_one_taking_part(
    path: Path,
) -> None:
    # The writer remembers who takes part in which conversation once
    # the rows are written; a batch rolled back takes the rows back, and
    # must take what was remembered with them.
    pump = Pump()
    to_erin = ConversationId.direct(ALICE, UserId("erin"))
    with SQLiteStore(path, pump.submit) as store:
        m = store.messages
        store._tables.db = RefusesOnce(store._tables.db, "COMMIT")  # type: ignore[assignment]
        refused = m.append(draft(to_erin, "a", to="erin"))
        pump.until_done(refused)
        assert "cannot commit" in str(refused.exception())
        assert not pump.value(m.takes_part(UserId("erin"), to_erin))
        assert not pump.value(m.takes_part(ALICE, to_erin))
        # The next first message lists the conversation again.
        pump.value(m.append(draft(to_erin, "b", to="erin")))
        assert pump.value(m.direct_conversations(UserId("erin"))) == (to_erin,)


def test_a_savepoint_that_cannot_be_released_fails_its_batch(
    path: Path,
) -> None:
    # Its writes are then in doubt: they must not commit while the
    # caller hears "failed", so the whole batch is rolled back.
    pump = Pump()
    group = Group.create(GroupId("g1"), "g", ALICE, (BOB,), 0)
    with SQLiteStore(path, pump.submit) as store:
        tables = store._tables
        tables.db = RefusesOnce(tables.db, "RELEASE")  # type: ignore[assignment]
        refused = store.groups.create(group)
        pump.until_done(refused)
        assert "cannot release" in str(refused.exception())
        assert store.statistics().failed_batches == 1
        assert pump.value(store.groups.get(group.group_id)) is None
        assert pump.value(store.groups.create(group)) == group
    with SQLiteStore(path, pump.submit) as again:
        assert pump.value(again.groups.get(group.group_id)) == group


def test_a_group_whose_members_are_refused_is_not_created(path: Path) -> None:
    # A group is two statements (the group, then its members); the
    # second failing (after the owner's row went in) must take the
    # first with it, or the id would be taken by a group missing its
    # members.
    pump = Pump()
    group = Group.create(GroupId("g1"), "g", ALICE, (BOB,), 0)
    with SQLiteStore(path, pump.submit) as store:
        db = store._tables.db
        pump.value(
            store._call(
                lambda: db.execute(
                    "CREATE TEMP TRIGGER refuse BEFORE INSERT ON"
                    " group_members WHEN NEW.user = 'bob'"
                    " BEGIN SELECT RAISE(ABORT, 'bob refused'); END"
                ),
                writes=False,
            )
        )
        refused = store.groups.create(group)
        pump.until_done(refused)
        assert "bob refused" in str(refused.exception())
        assert pump.value(store.groups.get(group.group_id)) is None
        pump.value(
            store._call(
                lambda: db.execute("DROP TRIGGER refuse"), writes=False
            )
        )
        assert pump.value(store.groups.create(group)) == group
    with SQLiteStore(path, pump.submit) as again:
        assert pump.value(again.groups.get(group.group_id)) == group


def test_a_refused_row_leaves_the_rest_of_its_batch_stored(path: Path) -> None:
    # One statement, no savepoint: the trigger aborts the INSERT after
    # its row went in, SQLite undoes that statement alone, and the
    # appends queued around it in the same transaction commit.
    pump = GatedPump()
    with SQLiteStore(path, pump.submit) as store:
        m = store.messages
        db = store._tables.db
        first = m.append(draft(CONV, "a"))
        assert pump.entered.wait(DEADLINE)
        trigger = store._call(
            lambda: db.execute(
                "CREATE TEMP TRIGGER refuse AFTER INSERT ON messages"
                " WHEN NEW.client_message_id = 'bad'"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            ),
            writes=False,
        )
        calls = [m.append(draft(CONV, c)) for c in ("b", "bad", "c")]
        pump.gate.set()
        pump.until_done(first, trigger, *calls)
        assert "refused" in str(calls[1].exception())
        assert [
            calls[0].result().message.seq,
            calls[2].result().message.seq,
        ] == [
            2,
            3,
        ]
        stats = store.statistics()
        assert (stats.failed_batches, stats.largest_batch) == (0, 4)
    pump = Pump()
    with SQLiteStore(path, pump.submit) as again:
        assert [x.client_message_id for x in all_messages(again, pump)] == [
            "a",
            "b",
            "c",
        ]


class WriterBug(BaseException):
    """Stands for a bug that escapes the writer's handling of calls."""


def test_a_writer_that_dies_says_so_and_leaves_no_call_waiting(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def bug() -> None:
        raise WriterBug

    pump = GatedPump()
    store = SQLiteStore(path, pump.submit)
    m = store.messages
    first = m.append(draft(CONV, "a"))
    assert pump.entered.wait(DEADLINE)
    # One batch: the bug kills the writer in the middle of it.
    calls = [m.append(draft(CONV, "b")), store._call(bug, writes=True)]
    calls.append(m.append(draft(CONV, "c")))
    pump.gate.set()
    pump.until_done(first, *calls)
    for call in calls:
        assert isinstance(call.exception(), StoreClosed)
    late = m.last_seq(CONV)
    assert late.done and isinstance(late.exception(), StoreClosed)
    store.close()
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "writer stopped" in record.getMessage()
    pump = Pump()
    with SQLiteStore(path, pump.submit) as again:
        assert all_messages(again, pump) == [first.result().message]
