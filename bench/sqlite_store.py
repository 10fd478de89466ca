"""How much batching buys the SQLite store: appends/s, batched or not.

Each run opens a fresh store file and appends ``--appends`` messages to
one conversation, keeping ``--window`` appends in flight as a server
with many senders does, and completing the results on this thread as
the loop would. Configurations:

* batched: the writer takes whatever queued up (``max_batch`` 1000) and
  commits once per batch;
* one per commit: ``max_batch=1``, the same pipelined load, but every
  append is a transaction, and so an fsync, of its own;
* one sender: a window of 1, each append waiting for the one before, so
  no batch can form: the latency of an ack when the server is idle.

All three with ``synchronous`` FULL (an fsync per commit) and NORMAL.
Runs are interleaved and repeated; the table shows medians.

    python bench/sqlite_store.py                 # 3 x each, in a tmp dir
    python bench/sqlite_store.py --dir /data     # on the server's disk

The file system decides the fsync's cost, so measure on the disk that
the server will use.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

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

CONFIGS = [
    # name, synchronous, max_batch, window
    ("batched", "FULL", 1000, 256),
    ("one per commit", "FULL", 1, 256),
    ("one sender", "FULL", 1000, 1),
    ("batched", "NORMAL", 1000, 256),
    ("one per commit", "NORMAL", 1, 256),
    ("one sender", "NORMAL", 1000, 1),
]


def run(
    directory: Path,
    synchronous: str,
    max_batch: int,
    window: int,
    appends: int,
    conversations: int = 1,
) -> tuple[float, float, float]:
    """Appends per second, the mean number of operations per
    transaction, and the process's CPU time per append (us).

    With ``conversations`` above 1 the appends go round that many direct
    conversations, each between two users taking turns, and every
    fourth append is followed by a delivery ack of its recipient: the
    pattern of the p2p load, whose writes land all over the indexes
    instead of at their ends."""
    posted: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]]
    posted = queue.SimpleQueue()
    path = directory / f"bench-{time.monotonic_ns()}.db"
    store = SQLiteStore(
        path,
        lambda call, *args: posted.put((call, args)),
        synchronous=synchronous,
        max_batch=max_batch,
    )
    pairs = [
        (UserId(f"user{2 * i}"), UserId(f"user{2 * i + 1}"))
        for i in range(conversations)
    ]
    ids = [ConversationId.direct(a, b) for a, b in pairs]
    phone = DeviceId("phone")
    body = b"x" * 100
    done = 0

    def completed(_: Pending[Appended]) -> None:
        nonlocal done
        done += 1

    started = time.perf_counter()
    cpu_started = time.process_time()
    for i in range(appends):
        while i - done >= window:
            call, args = posted.get()
            call(*args)
        turn, index = divmod(i, conversations)
        sender, recipient = pairs[index][::-1] if turn % 2 else pairs[index]
        draft = MessageDraft(
            i + 1,
            f"c{i}",
            ids[index],
            DeviceAddress(sender, phone),
            recipient,
            1,
            body,
            0,
        )
        store.messages.append(draft).add_done_callback(completed)
        if conversations > 1 and i % 4 == 3:
            device = DeviceAddress(recipient, phone)
            store.messages.record_ack(device, ids[index], turn + 1)
    while done < appends or store.busy():
        call, args = posted.get()
        call(*args)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    stats = store.statistics()
    store.close()
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
    return (
        appends / elapsed,
        stats.operations / stats.batches,
        cpu / appends * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument(
        "--conversations",
        type=int,
        default=1,
        help="spread the appends over this many conversations (see run)",
    )
    parser.add_argument(
        "--only", default=None, help="run only the configurations of this mode"
    )
    options = parser.parse_args()
    chosen = [
        index
        for index, config in enumerate(CONFIGS)
        if options.only is None or config[0] == options.only
    ]
    with tempfile.TemporaryDirectory(dir=options.dir) as directory:
        results: dict[int, list[tuple[float, float, float]]] = {}
        for _ in range(options.repeat):
            for index in chosen:
                _, synchronous, batch, window = CONFIGS[index]
                figures = run(
                    Path(directory),
                    synchronous,
                    batch,
                    window,
                    options.appends,
                    options.conversations,
                )
                results.setdefault(index, []).append(figures)
    print(
        f"{options.appends} appends of 100 bytes to "
        f"{options.conversations} conversation(s), medians of "
        f"{options.repeat} runs, in {options.dir or tempfile.gettempdir()}"
    )
    print(
        f"| synchronous | {'mode':<14} | window | appends/s "
        "| ops per commit | CPU us per append | x one per commit |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    rates = {
        i: statistics.median(r for r, _, _ in v) for i, v in results.items()
    }
    for index in chosen:
        name, synchronous, _, window = CONFIGS[index]
        per_commit = statistics.median(b for _, b, _ in results[index])
        cpu = statistics.median(c for _, _, c in results[index])
        unbatched = next(
            (
                i
                for i in chosen
                if CONFIGS[i][0] == "one per commit"
                and CONFIGS[i][1] == synchronous
            ),
            None,
        )
        ratio = (
            f"{rates[index] / rates[unbatched]:.2f}x"
            if unbatched is not None
            else "-"
        )
        print(
            f"| {synchronous:<11} | {name:<14} | {window:>6} "
            f"| {rates[index]:>9,.0f} | {per_commit:>14.1f} "
            f"| {cpu:>17.1f} | {ratio:>16} |"
        )


if __name__ == "__main__":
    main()
