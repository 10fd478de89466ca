"""netim's IM server against the asyncio and uvloop baselines, side by side.

    python bench/im.py p2p --pairs 500 --duration 10 --repeat 3
    python bench/im.py group --groups 10 --group-size 100 --rate 3000
    python bench/im.py idle --connections 15000 --servers netim-memory,uvloop

Each repetition starts every server in turn (a fresh process each time)
pinned to CPU 0, drives it with the same ``netim bench`` load pinned to
CPU 1, and stops it; repetitions interleave (netim, uvloop, asyncio,
netim, ...) so that a slow minute of the machine hurts all alike. The
table gives the medians of the repetitions and the ratios to uvloop.

Servers:

* ``netim-memory``: ``netim serve --store memory`` (NOT DURABLE: for
  comparing like with like, the baselines keep nothing either);
* ``netim-pure``: the same with every compiled part forced to its
  Python source (``NETIM_PURE_PYTHON=1``): the prototype;
* ``netim-sqlite``: ``netim serve`` with its SQLite store, durable
  (synchronous=FULL), in a fresh database;
* ``uvloop``, ``asyncio``: ``bench/baseline/asyncio_im.py`` on each loop
  (in memory, NOT DURABLE);
* ``NAME=DIR``: netim's in-memory server from another source tree (a
  ``git worktree`` of an older commit), for before/after records; with
  a NAME ending in ``-sqlite``, its SQLite store.

The code measured is this checkout's ``src/`` (put first on the path),
with whichever compiled build is there.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"
sys.path.insert(0, str(SOURCE))

from im.bench import cli as bench_cli  # noqa: E402
from im.bench.config import LoadConfig  # noqa: E402
from im.bench.runner import LoadResult, run_load  # noqa: E402

BASELINE = ROOT / "bench" / "baseline" / "asyncio_im.py"
HOST = "127.0.0.1"
SERVER_CPU = "0"
LOAD_CPUS = {1}
STARTUP_TIMEOUT = 20.0
DEFAULT_SERVERS = "netim-memory,uvloop,asyncio"


@dataclass
class Server:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: IO[bytes]

    def tail(self, lines: int = 5) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip()
        return " | ".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_command(
    name: str, port: int, secret: bytes, workdir: Path
) -> tuple[list[str], str]:
    """The command line of server ``name``, and its source tree."""
    source = str(SOURCE)
    address = ["--host", HOST, "--port", str(port), "--secret", secret.hex()]
    quiet = ["--log-level", "WARNING"]
    if name in ("uvloop", "asyncio"):
        script = [sys.executable, str(BASELINE), "--loop", name]
        return [*script, *address, *quiet], source
    netim = [sys.executable, "-m", "im.cli", "serve", *address, *quiet]
    database = workdir / f"netim-{port}.db"
    sqlite = ["--store", "sqlite", "--database", str(database)]
    if name == "netim-sqlite":
        return [*netim, *sqlite], source
    if name in ("netim-memory", "netim-pure"):
        return [*netim, "--store", "memory"], source
    label, _, tree = name.partition("=")
    if not tree:
        raise SystemExit(f"unknown server {name!r}")
    store = sqlite if label.endswith("-sqlite") else ["--store", "memory"]
    return [*netim, *store], str(Path(tree).resolve())


@contextmanager
def running(name: str, secret: bytes, workdir: Path) -> Iterator[Server]:
    port = free_port()
    command, source = server_command(name, port, secret, workdir)
    env = dict(os.environ)
    env["PYTHONPATH"] = source
    if name == "netim-pure":
        env["NETIM_PURE_PYTHON"] = "1"
    with tempfile.TemporaryFile() as log:
        popen = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *command],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(name, port, popen, log)
        try:
            wait_listening(server)
            yield server
        finally:
            stop(server)


def wait_listening(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        server.log.seek(0)
        if b"listening on " in server.log.read():
            return
        if server.popen.poll() is not None:
            raise SystemExit(f"{server.name} exited: {server.tail()}")
        time.sleep(0.05)
    raise SystemExit(f"{server.name} did not start: {server.tail()}")


def stop(server: Server) -> None:
    if server.popen.poll() is None:
        server.popen.send_signal(signal.SIGINT)
        try:
            server.popen.wait(15)
        except subprocess.TimeoutExpired:
            server.popen.kill()
            server.popen.wait()


# -- the runs -----------------------------------------------------------------


def run_all(
    config: LoadConfig, servers: list[str], repeat: int, pause: float
) -> dict[str, list[LoadResult]]:
    results: dict[str, list[LoadResult]] = {name: [] for name in servers}
    with tempfile.TemporaryDirectory(prefix="netim-im-bench-") as tmp:
        workdir = Path(tmp)
        for round_ in range(1, repeat + 1):
            for name in servers:
                # A new run id: users and conversations start afresh.
                run = replace(config, run_id=secrets.token_hex(3))
                with running(name, config.secret, workdir) as server:
                    result = run_load(
                        replace(run, port=server.port),
                        server_pid=server.popen.pid,
                        cpus=LOAD_CPUS,
                    )
                results[name].append(result)
                print(f"[{round_}/{repeat}] {label(name):14} {line(result)}")
                time.sleep(pause)
    return results


def label(name: str) -> str:
    """How a server is named in the tables: ``NAME=DIR`` as NAME."""
    return name.partition("=")[0]


def line(r: LoadResult) -> str:
    ok = "ok" if r.integrity.get("ok") else "INTEGRITY FAILED"
    if not r.integrity.get("settled", True):
        ok += " (drain ran out)"
    parts = [
        f"delivered {r.delivered_per_s:>10,.0f}/s",
        f"acked {r.acked_per_s:>9,.0f}/s",
        f"ack p99 {r.ack.p99_us / 1000:7.2f} ms",
        f"push p99 {r.push.p99_us / 1000:7.2f} ms",
        f"CPU {r.server_cpu_percent or 0:3.0f}%",
        f"load {r.load_cpu_percent:3.0f}%",
        f"RSS {r.server_rss_max_mib or 0:6.1f} MiB",
    ]
    if r.rss_per_connection_bytes is not None:
        parts.append(f"{r.rss_per_connection_bytes:,.0f} B/conn")
    if r.probe.count:
        parts.append(f"probe p99 {r.probe.p99_us / 1000:.2f} ms")
    if r.login.count:
        parts.append(f"logins {r.logins_per_s:,.0f}/s")
    return "  ".join(parts) + f"  {ok}"


FIGURES = {
    "delivered/s": lambda r: r.delivered_per_s,
    "acked/s": lambda r: r.acked_per_s,
    "logins/s": lambda r: r.logins_per_s,
    "ack p50 ms": lambda r: r.ack.p50_us / 1000,
    "ack p99 ms": lambda r: r.ack.p99_us / 1000,
    "push p50 ms": lambda r: r.push.p50_us / 1000,
    "push p99 ms": lambda r: r.push.p99_us / 1000,
    "probe p99 ms": lambda r: r.probe.p99_us / 1000,
    "server CPU %": lambda r: r.server_cpu_percent or 0.0,
    "RSS max MiB": lambda r: r.server_rss_max_mib or 0.0,
    "B/conn": lambda r: r.rss_per_connection_bytes or 0.0,
    "load CPU %": lambda r: r.load_cpu_percent,
}


def medians(results: dict[str, list[LoadResult]]) -> dict[str, dict]:
    table: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        if runs:
            table[label(name)] = {
                figure: statistics.median(get(r) for r in runs)
                for figure, get in FIGURES.items()
            }
    return table


def print_table(table: dict[str, dict[str, float]], reference: str) -> None:
    shown = [f for f in FIGURES if any(row[f] for row in table.values())]
    print("\nMedians of the repetitions; x: ratio to " + reference)
    header = f"{'server':14}" + "".join(f"{f:>14}" for f in shown)
    print(header)
    ref = table.get(reference)
    for name, row in table.items():
        cells = []
        for figure in shown:
            value = row[figure]
            cell = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
            if ref and ref[figure] and figure.endswith("/s"):
                cell += f" {value / ref[figure]:.2f}x"
            cells.append(f"{cell:>14}")
        print(f"{name:14}" + "".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="netim vs asyncio/uvloop IM baselines, side by side"
    )
    bench_cli.add_arguments(parser)
    parser.add_argument("--servers", default=DEFAULT_SERVERS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--pause", type=float, default=1.0, help="seconds between runs"
    )
    parser.add_argument("--save", type=Path, help="every run, as JSON")
    args = parser.parse_args(argv)
    if args.secret is None and args.secret_file is None:
        args.secret = secrets.token_hex(32)
    config = bench_cli.config_from(args)
    servers = [s for s in args.servers.split(",") if s]
    print(
        f"{config.scenario}: servers on CPU {SERVER_CPU}, load on CPU "
        f"{','.join(map(str, LOAD_CPUS))}; {args.repeat} repetitions of "
        f"{config.warmup:g} s warm-up + {config.duration:g} s"
    )
    results = run_all(config, servers, args.repeat, args.pause)
    table = medians(results)
    reference = "uvloop" if "uvloop" in table else label(servers[0])
    print_table(table, reference)
    failed = [
        name
        for name, runs in results.items()
        for r in runs
        if not r.integrity.get("ok")
    ]
    for name, runs in results.items():
        notes = {r.bottleneck for r in runs}
        print(f"{label(name)}: " + "; ".join(sorted(notes)))
    if args.save:
        args.save.write_text(
            json.dumps(
                {
                    "argv": sys.argv[1:],
                    "medians": table,
                    "runs": {
                        label(n): [r.as_dict() for r in runs]
                        for n, runs in results.items()
                    },
                },
                indent=1,
            )
            + "\n"
        )
    if failed:
        print("INTEGRITY FAILED in: " + ", ".join(sorted(set(failed))))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
