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
) -> tuple[float, float]:
    """Appends per second, and the mean number of operations per
    transaction."""
    posted: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]]]
    posted = queue.SimpleQueue()
    path = directory / f"bench-{time.monotonic_ns()}.db"
    store = SQLiteStore(
        path,
        lambda call, *args: posted.put((call, args)),
        synchronous=synchronous,
        max_batch=max_batch,
    )
    alice, bob = UserId("alice"), UserId("bob")
    conversation = ConversationId.direct(alice, bob)
    sender = DeviceAddress(alice, DeviceId("phone"))
    body = b"x" * 100
    done = 0

    def completed(_: Pending[Appended]) -> None:
        nonlocal done
        done += 1

    started = time.perf_counter()
    for i in range(appends):
        while i - done >= window:
            call, args = posted.get()
            call(*args)
        draft = MessageDraft(
            i + 1, f"c{i}", conversation, sender, bob, 1, body, 0
        )
        store.messages.append(draft).add_done_callback(completed)
    while done < appends:
        call, args = posted.get()
        call(*args)
    elapsed = time.perf_counter() - started
    stats = store.statistics()
    store.close()
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
    return appends / elapsed, stats.operations / stats.batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=options.dir) as directory:
        results: dict[int, list[tuple[float, float]]] = {}
        for _ in range(options.repeat):
            for index, (_, synchronous, batch, window) in enumerate(CONFIGS):
                figures = run(
                    Path(directory),
                    synchronous,
                    batch,
                    window,
                    options.appends,
                )
                results.setdefault(index, []).append(figures)
    print(
        f"{options.appends} appends of 100 bytes, medians of "
        f"{options.repeat} runs, in {options.dir or tempfile.gettempdir()}"
    )
    print(
        f"| synchronous | {'mode':<14} | window | appends/s "
        "| ops per commit | x one per commit |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    rates = {i: statistics.median(r for r, _ in v) for i, v in results.items()}
    for index, (name, synchronous, _, window) in enumerate(CONFIGS):
        per_commit = statistics.median(b for _, b in results[index])
        unbatched = next(
            i
            for i, c in enumerate(CONFIGS)
            if c[0] == "one per commit" and c[1] == synchronous
        )
        ratio = rates[index] / rates[unbatched]
        print(
            f"| {synchronous:<11} | {name:<14} | {window:>6} "
            f"| {rates[index]:>9,.0f} | {per_commit:>14.1f} "
            f"| {ratio:>15.2f}x |"
        )


if __name__ == "__main__":
    main()
