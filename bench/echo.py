"""Side-by-side echo benchmark: netim against uvloop and stock asyncio.

What it measures
----------------
Every server speaks the echo-frame protocol (a 4-byte big-endian length N,
then N payload bytes; each frame goes back to its sender unchanged) and is
driven by the same C load generator, bench/loadgen.c:

* netim:   python examples/echo_server.py --workers 1
* uvloop:  python bench/baseline/asyncio_echo.py --loop uvloop
* asyncio: python bench/baseline/asyncio_echo.py --loop asyncio
* uvloop-runs: python bench/baseline/asyncio_echo.py --loop uvloop --runs

The baseline is the server a Python user would write on asyncio's Protocol
API, with the idiomatic batching of one write per read. Like netim's echo
server, it hands every frame to the application as an object of its own;
uvloop-runs instead answers a run of complete frames with one slice of
the input, which no server that reads its messages can do, and is shown
as the ceiling of a framed Python server.  Servers run from
the repository root with src/ first on PYTHONPATH, so the checkout is what
gets measured; build the compiled codec in place first, or netim runs its
pure-Python twin.

The load is closed-loop: each of --connections connections keeps
--inflight frames outstanding and sends a new frame for each echo that
comes back.  Every frame carries its send time, so the round trip of
every frame is measured, not sampled.  The load generator reports frames
per second and p50/p99/p99.9 latency over the measured window, after a
warm-up that is not counted.

Pinning
-------
The server runs on CPU 0 and the load generator on CPU 1 (taskset), so
each has one core to itself; the result is what one server core can do.
The runner sleeps through the runs and is not pinned.  Under this load a
server's core should be 100 % busy.  If the load generator's own CPU use
reaches 90 %, it may be the bottleneck instead, and the report says
"load generator saturated: numbers are a lower bound".

CPU and memory
--------------
The runner reads CPU use with psutil when the load generator starts its
measured window and again when it reports, so the figures cover the
window and not the warm-up:

* CPU %: the server's own processes (the whole process tree, should a
  server run its worker in a child).
* core %: how busy the server's CPU was in all, measured as wall time
  minus idle time.  It includes kernel work such as softirq network
  processing, which Linux does not always charge to a process.
* other %: core % minus our own processes: work by anything else that
  competed for the pinned CPU.  On a quiet machine it stays under about
  6 % (kernel work charged to no process).
* RSS: the server's resident memory at the end of the window.

The load generator exits as its window closes, too early for psutil to
read its final CPU times, so it reports its own CPU use over the same
window (getrusage) and the runner adds the same core and other figures
for CPU 1.

A shared machine makes a benchmark lie, so the runner guards against
it.  Before each run it waits, up to --quiet-wait seconds (default 30),
for both pinned CPUs to be nearly idle.  A run during which other work
still took 10 % or more of a pinned CPU is run again, up to --retries
times (default 2); if every attempt is noisy the least noisy counts, and
the report warns that the machine was not quiet.

Repetitions are interleaved (netim, uvloop, asyncio, netim, uvloop, ...)
so that a slow drift of the machine touches every server alike, and each
run starts a fresh server process.  The report gives the median of each
figure per server, and the rate and p99 ratios against uvloop.

Idle-connection memory
----------------------
--idle N measures what an idle connection costs instead.  For each
server: start it and read its RSS once stable; open N connections that
send nothing (the load generator's --idle mode, paced at 2,000 new
connections per second, since a burst overflows a small listen backlog
and with SYN cookies some connections are then silently lost); wait
until the server holds N more descriptors and its RSS is stable again;
report (after - before) / accepted bytes per connection, and the RSS
before.  Above about 25,000 connections one source address runs out of
ephemeral ports, and the connections are spread over 127.0.0.1,
127.0.0.2, ...; the open-file limit (20,000 here) binds first.

Commands
--------
    python bench/echo.py                         # all servers, defaults
    python bench/echo.py --servers netim,uvloop
    python bench/echo.py --repeat 5 --duration 20 --json results.json
    python bench/echo.py --size 1024 --connections 1000 --inflight 1
    python bench/echo.py --idle 10000            # bytes per idle connection
    python bench/echo.py --quick                 # smoke run for CI

Defaults: 64-byte payloads, 100 connections, 16 frames in flight each,
10 s measured after 2 s of warm-up, 3 repetitions.  --quick means 1 s
measured after 0.5 s of warm-up, 1 repetition, 10 connections.
--server-cpu and --loadgen-cpu change the pinning; --json FILE saves the
settings, every run and the medians.

The load generator is compiled on first use, and again whenever its
source is newer, with gcc -O2 -Wall -o bench/.build/loadgen
bench/loadgen.c.  It can be run by hand as well: bench/.build/loadgen
--port P [--connections --inflight --size --duration --warmup --idle].
A server whose script is missing or which fails to start is skipped with
the reason, and the others still run.  Only loopback addresses are ever
used.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LOADGEN_SOURCE = BENCH_DIR / "loadgen.c"
LOADGEN_BINARY = BENCH_DIR / ".build" / "loadgen"
BASELINE_SERVER = BENCH_DIR / "baseline" / "asyncio_echo.py"
NETIM_SERVER = REPO_ROOT / "examples" / "echo_server.py"
SOURCE_DIR = REPO_ROOT / "src"

HOST = "127.0.0.1"
ALL_SERVERS = ("netim", "uvloop", "asyncio", "uvloop-runs")
# The baselines hand each frame to the application as an object of its
# own, as netim does; "-runs" echoes whole runs of frames as one slice
# (no object per frame), the upper bound of a Python framed server.
REFERENCE_SERVER = "uvloop"

# At or above this CPU % the load generator may be what limits the rate.
SATURATED_PERCENT = 90.0

# Other work taking this much of a pinned CPU during the measured window
# makes a run suspect: it competed with the server or the load generator.
# Such a run is repeated, and the report flags it if it stays.  On a
# quiet machine our own unattributed kernel work stays under about 6 %.
NOISY_PERCENT = 10.0

# A Python server imports and binds in well under a second; 20 s leaves
# room for a loaded CI machine without hanging on a broken server.
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0

# Idle mode: how long the load generator may hold its connections (the
# runner releases them much sooner), how long the server may take to
# accept them all and how long the count may stand still before we stop
# waiting, and when RSS counts as stable: the last few samples spread
# over no more than RSS_STABLE_BYTES.
IDLE_HOLD_S = 600.0
ACCEPT_TIMEOUT_S = 120.0
ACCEPT_STALL_S = 5.0
RSS_SAMPLE_S = 0.2
RSS_STABLE_SAMPLES = 5
RSS_STABLE_BYTES = 64 * 1024
RSS_STABLE_TIMEOUT_S = 30.0

# Before each run, wait until no pinned CPU is more than QUIET_PERCENT
# busy over a QUIET_SAMPLE_S sample (up to --quiet-wait seconds).
QUIET_PERCENT = 5.0
QUIET_SAMPLE_S = 0.5

# Leave a tenth of each source address's ephemeral ports unused, for
# whatever else the machine is doing.
PORT_HEADROOM = 0.9


# ---------------------------------------------------------------------
# Settings and results
# ---------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    servers: tuple[str, ...]
    repeat: int
    connections: int
    inflight: int
    size: int
    duration: float
    warmup: float
    idle: int
    server_cpu: str
    loadgen_cpu: str
    quiet_wait: float
    retries: int


@dataclass
class LoadResult:
    """One load run against one server."""

    server: str
    repetition: int
    frames: int
    seconds: float
    frames_per_s: float
    p50_us: float
    p99_us: float
    p999_us: float
    errors: int
    server_cpu_percent: float  # the server's processes
    server_core_busy_percent: float  # its CPU, kernel work included
    server_rss_bytes: int
    loadgen_cpu_percent: float
    loadgen_core_busy_percent: float
    other_on_server_cpu_percent: float  # other work on its CPU
    other_on_loadgen_cpu_percent: float

    @property
    def noise(self) -> float:
        """The larger share of a pinned CPU that other work took."""
        return max(
            self.other_on_server_cpu_percent,
            self.other_on_loadgen_cpu_percent,
        )

    @property
    def noisy(self) -> bool:
        return self.noise >= NOISY_PERCENT

    def describe(self) -> str:
        return (
            f"{self.frames_per_s:>9,.0f}/s"
            f"  p50 {self.p50_us:>6,.0f} p99 {self.p99_us:>6,.0f} us"
            f"  CPU {self.server_cpu_percent:3.0f}"
            f"/{self.server_core_busy_percent:3.0f}"
            f"  gen {self.loadgen_cpu_percent:3.0f}"
            f"/{self.loadgen_core_busy_percent:3.0f}"
            f"  other {self.other_on_server_cpu_percent:2.0f}"
            f"/{self.other_on_loadgen_cpu_percent:2.0f}"
        )


@dataclass
class IdleResult:
    """One idle-connection run against one server."""

    server: str
    repetition: int
    connections: int
    accepted: int  # held by the server when RSS was read
    rss_before_bytes: int
    rss_after_bytes: int
    bytes_per_connection: float

    # Memory is not disturbed by a neighbour's CPU use.
    noise = 0.0
    noisy = False

    def describe(self) -> str:
        text = (
            f"RSS {mib(self.rss_before_bytes):6.1f} MiB ->"
            f" {mib(self.rss_after_bytes):6.1f} MiB"
            f"  = {self.bytes_per_connection:7,.0f} bytes per connection"
        )
        if self.accepted < self.connections:
            text += f" (only {self.accepted:,} accepted)"
        return text


Result = LoadResult | IdleResult
AnyResult = TypeVar("AnyResult", LoadResult, IdleResult)
RunOne = Callable[[str, int, Settings, Path], Result]


class ServerUnavailable(Exception):
    """The server's command is missing, or it failed to start."""


class RunFailed(Exception):
    """A run started but produced no usable result."""


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------
# The load generator
# ---------------------------------------------------------------------


def build_loadgen() -> Path:
    """Compile the load generator unless an up-to-date build exists."""
    binary = LOADGEN_BINARY
    if (
        binary.exists()
        and binary.stat().st_mtime >= LOADGEN_SOURCE.stat().st_mtime
    ):
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so that two runners starting at
    # once never execute a half-written binary.
    partial = binary.with_name(f"{binary.name}.{os.getpid()}")
    command = ["gcc", "-O2", "-Wall", "-o", str(partial), str(LOADGEN_SOURCE)]
    say(f"building the load generator: {' '.join(command)}")
    subprocess.run(command, check=True)
    partial.replace(binary)
    return binary


def pinned(cpu: str, command: Sequence[str]) -> list[str]:
    """taskset execs the command, so the pid we get is the real one."""
    return ["taskset", "-c", cpu, *command]


def loadgen_command(
    binary: Path, port: int, settings: Settings, **extra: object
) -> list[str]:
    command = [str(binary), "--host", HOST, "--port", str(port)]
    for name, value in extra.items():
        flag = "--" + name.replace("_", "-")
        command += [flag] if value is True else [flag, str(value)]
    return pinned(settings.loadgen_cpu, command)


# ---------------------------------------------------------------------
# Server processes
# ---------------------------------------------------------------------


def server_command(name: str, port: int) -> list[str]:
    if name == "netim":
        script, options = NETIM_SERVER, ["--workers", "1"]
    else:
        loop, _, mode = name.partition("-")
        script, options = BASELINE_SERVER, ["--loop", loop]
        if mode == "runs":
            options.append("--runs")
    if not script.exists():
        raise ServerUnavailable(f"{script.relative_to(REPO_ROOT)} not found")
    address = ["--host", HOST, "--port", str(port)]
    return [sys.executable, str(script), *address, *options]


def server_environment() -> dict[str, str]:
    """Put the checkout's src/ first on the import path, so that the code
    in this tree is what gets measured, installed or not."""
    env = dict(os.environ)
    paths = [str(SOURCE_DIR), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def free_port() -> int:
    """Ask the kernel for an unused port.  Another process could take it
    before the server binds it; on a benchmark machine that is rare, and
    the server then fails to start and says why."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    popen: subprocess.Popen[bytes]
    process: psutil.Process
    log: IO[bytes]

    def log_tail(self, lines: int = 5) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip()
        return " | ".join(text.splitlines()[-lines:])


def wait_until_listening(server: Server) -> None:
    """Wait for the "listening on HOST:PORT" line the servers print."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        server.log.seek(0)
        if re.search(rb"listening on \S+:\d+", server.log.read()):
            return
        if server.popen.poll() is not None:
            raise ServerUnavailable(
                f"exited with code {server.popen.returncode}: "
                f"{server.log_tail()}"
            )
        time.sleep(0.05)
    raise ServerUnavailable(
        f"printed no 'listening on' line within {STARTUP_TIMEOUT_S:.0f} s"
    )


@contextmanager
def running_server(name: str, settings: Settings) -> Iterator[Server]:
    """Start a server pinned to the server CPU; stop it on the way out.

    Its output goes to a temporary file rather than a pipe: a pipe nobody
    reads fills up, and a server that logs would then block mid-run."""
    port = free_port()
    command = pinned(settings.server_cpu, server_command(name, port))
    with tempfile.TemporaryFile() as log:
        popen = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=server_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = Server(name, port, popen, psutil.Process(popen.pid), log)
        try:
            wait_until_listening(server)
            yield server
        finally:
            stop_server(server)


def stop_server(server: Server) -> None:
    """Ask politely (SIGINT), then insist; then end any worker processes
    it left behind, each by its own pid."""
    try:
        children = server.process.children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if server.popen.poll() is None:
        server.popen.send_signal(signal.SIGINT)
        try:
            server.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.popen.kill()
            server.popen.wait()
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


def process_tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for member in process_tree(process):
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def tree_rss_bytes(process: psutil.Process) -> int:
    total = 0
    for member in process_tree(process):
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def tree_open_fds(process: psutil.Process) -> int:
    total = 0
    for member in process_tree(process):
        try:
            total += member.num_fds()
        except psutil.NoSuchProcess:
            continue
    return total


# ---------------------------------------------------------------------
# One load run
# ---------------------------------------------------------------------


def wait_for_measuring(stderr: IO[str]) -> None:
    """Read the load generator's notes until its measured window opens."""
    notes = []
    for line in stderr:
        if line.startswith("loadgen: measuring"):
            return
        notes.append(line.strip())
    raise RunFailed("load generator ended early: " + " | ".join(notes))


@dataclass
class CpuSample:
    """CPU seconds used so far, read at one instant of a run."""

    wall: float
    server: float  # the server's process tree
    server_cores_idle: float  # the CPUs the server is pinned to
    loadgen_cores_idle: float  # the CPUs the load generator is pinned to


def sample_cpu(server: Server, settings: Settings) -> CpuSample:
    return CpuSample(
        wall=time.monotonic(),
        server=tree_cpu_seconds(server.process),
        server_cores_idle=idle_seconds(settings.server_cpu),
        loadgen_cores_idle=idle_seconds(settings.loadgen_cpu),
    )


def idle_seconds(cpu_list: str) -> float:
    """Idle time of the listed CPUs since boot.

    A core's busy time is measured as wall time minus idle time, because
    the kernel keeps idle time exactly, while its other categories come
    from sampling at each timer tick, which a virtual machine can miss.
    Busy time so measured also counts kernel work such as the network
    stack's softirqs, whether or not it was charged to a process."""
    per_cpu = psutil.cpu_times(percpu=True)
    cpus = parse_cpu_list(cpu_list)
    return float(sum(per_cpu[i].idle + per_cpu[i].iowait for i in cpus))


def parse_cpu_list(cpu_list: str) -> list[int]:
    """Expand taskset's notation: "1", "0,2", "0-3"."""
    cpus: list[int] = []
    for part in cpu_list.split(","):
        first, _, last = part.partition("-")
        cpus += range(int(first), int(last or first) + 1)
    return cpus


def start_loadgen(
    server: Server, settings: Settings, binary: Path
) -> subprocess.Popen[str]:
    command = loadgen_command(
        binary,
        server.port,
        settings,
        connections=settings.connections,
        inflight=settings.inflight,
        size=settings.size,
        duration=settings.duration,
        warmup=settings.warmup,
    )
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_load(
    name: str, repetition: int, settings: Settings, binary: Path
) -> LoadResult:
    with (
        running_server(name, settings) as server,
        start_loadgen(server, settings, binary) as loadgen,
    ):
        assert loadgen.stdout is not None and loadgen.stderr is not None
        wait_for_measuring(loadgen.stderr)
        start = sample_cpu(server, settings)
        # The load generator stops by itself (and has an alarm should it
        # not), so this read always ends.
        report = loadgen.stdout.readline()
        end = sample_cpu(server, settings)
        rss = tree_rss_bytes(server.process)
        notes = loadgen.stderr.read()
    if not report.startswith("{"):
        raise RunFailed(f"load generator printed no result: {notes}")
    return load_result(
        name, repetition, json.loads(report), start, end, rss, settings
    )


def load_result(
    name: str,
    repetition: int,
    report: dict[str, Any],
    start: CpuSample,
    end: CpuSample,
    rss: int,
    settings: Settings,
) -> LoadResult:
    """Combine the load generator's report with what the runner sampled.

    "Other" CPU is what a pinned core was busy with besides our process
    on it: a neighbour's work that competed during the window."""
    wall = max(end.wall - start.wall, 1e-9)
    server_cpu = end.server - start.server
    loadgen_cpu = report["cpu_percent"] / 100 * report["seconds"]
    server_busy = busy_seconds(
        settings.server_cpu,
        wall,
        end.server_cores_idle - start.server_cores_idle,
    )
    loadgen_busy = busy_seconds(
        settings.loadgen_cpu,
        wall,
        end.loadgen_cores_idle - start.loadgen_cores_idle,
    )
    return LoadResult(
        server=name,
        repetition=repetition,
        frames=report["frames"],
        seconds=report["seconds"],
        frames_per_s=report["frames_per_s"],
        p50_us=report["p50_us"],
        p99_us=report["p99_us"],
        p999_us=report["p999_us"],
        errors=report["errors"],
        server_cpu_percent=100 * server_cpu / wall,
        server_core_busy_percent=100 * server_busy / wall,
        server_rss_bytes=rss,
        loadgen_cpu_percent=report["cpu_percent"],
        loadgen_core_busy_percent=100 * loadgen_busy / wall,
        other_on_server_cpu_percent=percent_over(
            server_busy, server_cpu, wall
        ),
        other_on_loadgen_cpu_percent=percent_over(
            loadgen_busy, loadgen_cpu, wall
        ),
    )


def busy_seconds(cpu_list: str, wall: float, idle: float) -> float:
    return len(parse_cpu_list(cpu_list)) * wall - idle


def percent_over(total: float, ours: float, wall: float) -> float:
    """The share of `wall` that `total` exceeds `ours` by, never below 0
    (the two are read a moment apart)."""
    return max(0.0, 100 * (total - ours) / wall)


# ---------------------------------------------------------------------
# One idle-connection run
# ---------------------------------------------------------------------


def wait_for_stable_rss(process: psutil.Process) -> int:
    """Sample RSS until the last few samples agree; return the last.

    Allocators return memory lazily and a server may still be accepting,
    so one early sample could miss part of the cost."""
    samples: list[int] = []
    deadline = time.monotonic() + RSS_STABLE_TIMEOUT_S
    while time.monotonic() < deadline:
        samples.append(tree_rss_bytes(process))
        recent = samples[-RSS_STABLE_SAMPLES:]
        if len(recent) == RSS_STABLE_SAMPLES and (
            max(recent) - min(recent) <= RSS_STABLE_BYTES
        ):
            return recent[-1]
        time.sleep(RSS_SAMPLE_S)
    raise RunFailed(f"RSS still moving after {RSS_STABLE_TIMEOUT_S:.0f} s")


def wait_for_accepts(process: psutil.Process, target: int) -> int:
    """Wait until the server holds `target` descriptors; return how many
    it holds.  A connection our side sees as established may still sit in
    the listen queue, or may have been lost there (see loadgen.c); the
    server holds it only once it has accepted it.  Gives up when the
    count stops moving."""
    held = tree_open_fds(process)
    last_change = time.monotonic()
    deadline = last_change + ACCEPT_TIMEOUT_S
    while held < target and time.monotonic() < deadline:
        time.sleep(RSS_SAMPLE_S)
        now_held = tree_open_fds(process)
        if now_held != held:
            held, last_change = now_held, time.monotonic()
        elif time.monotonic() - last_change > ACCEPT_STALL_S:
            break
    return held


def source_addresses(connections: int) -> int:
    """How many 127.0.0.x source addresses N connections need: every
    connection to one server port takes its own ephemeral port."""
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low, high = (int(part) for part in path.read_text().split())
    per_source = int((high - low + 1) * PORT_HEADROOM)
    return max(1, math.ceil(connections / per_source))


def start_idle_loadgen(
    server: Server, settings: Settings, binary: Path
) -> subprocess.Popen[str]:
    command = loadgen_command(
        binary,
        server.port,
        settings,
        idle=True,
        connections=settings.idle,
        duration=IDLE_HOLD_S,
        sources=source_addresses(settings.idle),
    )
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def run_idle(
    name: str, repetition: int, settings: Settings, binary: Path
) -> IdleResult:
    with running_server(name, settings) as server:
        before = wait_for_stable_rss(server.process)
        fds_before = tree_open_fds(server.process)
        with start_idle_loadgen(server, settings, binary) as loadgen:
            assert loadgen.stdin is not None and loadgen.stdout is not None
            if loadgen.stdout.readline().strip() != "ready":
                raise RunFailed("load generator could not connect")
            target = fds_before + settings.idle
            accepted = wait_for_accepts(server.process, target) - fds_before
            after = wait_for_stable_rss(server.process)
            loadgen.stdin.close()  # tells it to let go
            report = json.loads(loadgen.stdout.readline())
    if report["errors"]:
        raise RunFailed(f"server closed {report['errors']} connections")
    if accepted <= 0:
        raise RunFailed("the server accepted no connection")
    return IdleResult(
        server=name,
        repetition=repetition,
        connections=settings.idle,
        accepted=accepted,
        rss_before_bytes=before,
        rss_after_bytes=after,
        # Divide by what the server holds: a connection lost in its
        # listen queue costs it nothing.
        bytes_per_connection=(after - before) / accepted,
    )


# ---------------------------------------------------------------------
# Interleaved repetitions
# ---------------------------------------------------------------------


def run_all(
    settings: Settings, binary: Path
) -> tuple[list[Result], dict[str, str]]:
    """Run every server once per repetition, in turn.  A server that
    cannot start is dropped for the rest of the session."""
    results: list[Result] = []
    skipped: dict[str, str] = {}
    for repetition in range(1, settings.repeat + 1):
        for name in settings.servers:
            if name in skipped:
                continue
            label = f"[{repetition}/{settings.repeat}] {name:<11}"
            try:
                result = run_quietly(name, repetition, settings, binary)
            except ServerUnavailable as error:
                skipped[name] = str(error)
                say(f"{label} skipped: {error}")
                continue
            except RunFailed as error:
                say(f"{label} failed: {error}")
                continue
            results.append(result)
            say(f"{label} {result.describe()}")
    return results, skipped


def run_quietly(
    name: str, repetition: int, settings: Settings, binary: Path
) -> Result:
    """One run, started on quiet CPUs and repeated (up to --retries
    times) if other work competed with it after all; if every attempt
    was noisy, the least noisy counts, and the report flags it."""
    run_one: RunOne = run_idle if settings.idle else run_load
    attempts: list[Result] = []
    for attempt in range(settings.retries + 1):
        if attempt:
            say(f"  {name}: {attempts[-1].describe()}: noisy, again")
        wait_for_quiet(settings)
        attempts.append(run_one(name, repetition, settings, binary))
        if not attempts[-1].noisy:
            break
    return min(attempts, key=lambda result: result.noise)


def wait_for_quiet(settings: Settings) -> None:
    """Hold the next run until the pinned CPUs are nearly idle, for at
    most --quiet-wait seconds: on a shared machine, a compile or a test
    suite next door would otherwise take its share of the server's core."""
    cpus = parse_cpu_list(settings.server_cpu)
    cpus += parse_cpu_list(settings.loadgen_cpu)
    deadline = time.monotonic() + settings.quiet_wait
    announced = False
    while time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=QUIET_SAMPLE_S, percpu=True)
        busiest = max(busy[cpu] for cpu in cpus)
        if busiest < QUIET_PERCENT:
            return
        if not announced:
            say(
                f"  waiting for the pinned CPUs to quiet down"
                f" (busiest {busiest:.0f} %)"
            )
            announced = True
    if announced:
        say("  they are still busy; running anyway")


# ---------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------


def mib(n: float) -> float:
    return n / (1024 * 1024)


def median_of(results: Sequence[Result], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in results))


def by_server(
    results: Sequence[AnyResult], servers: Sequence[str]
) -> dict[str, list[AnyResult]]:
    grouped: dict[str, list[AnyResult]] = {}
    for name in servers:
        runs = [r for r in results if r.server == name]
        if runs:
            grouped[name] = runs
    return grouped


def summarize(
    results: Sequence[Result], settings: Settings
) -> dict[str, dict[str, float]]:
    """The medians (and worst cases) of each server's runs."""
    if settings.idle:
        idle = [r for r in results if isinstance(r, IdleResult)]
        grouped_idle = by_server(idle, settings.servers)
        return {
            name: idle_summary(runs) for name, runs in grouped_idle.items()
        }
    load = [r for r in results if isinstance(r, LoadResult)]
    grouped_load = by_server(load, settings.servers)
    return {name: load_summary(runs) for name, runs in grouped_load.items()}


def ratio(value: float, reference: float | None) -> str:
    if not reference:
        return "-"
    return f"{value / reference:.2f}x"


def load_summary(results: Sequence[LoadResult]) -> dict[str, float]:
    fields = (
        "frames_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "server_cpu_percent",
        "server_core_busy_percent",
        "server_rss_bytes",
        "loadgen_cpu_percent",
        "loadgen_core_busy_percent",
    )
    summary = {field: median_of(results, field) for field in fields}
    summary["errors"] = sum(r.errors for r in results)
    summary["runs"] = len(results)
    for field in (
        "loadgen_cpu_percent",
        "other_on_server_cpu_percent",
        "other_on_loadgen_cpu_percent",
    ):
        summary["max_" + field] = max(getattr(r, field) for r in results)
    return summary


def print_load_report(summaries: dict[str, dict[str, float]]) -> None:
    say("\nMedians of the runs.  Ratios are to uvloop: for the rate higher is")
    say("better, for latency lower.")
    print_rate_table(summaries)
    say("\nCPU %: the process's own use / its core's, kernel work included.")
    say("Other %: other work's share of the server's / generator's core.")
    print_resource_table(summaries)
    warn_about_load(summaries)


def print_rate_table(summaries: dict[str, dict[str, float]]) -> None:
    reference = summaries.get(REFERENCE_SERVER, {})
    say(
        f"{'server':<11} {'frames/s':>10} {'p50 us':>8} {'p99 us':>8}"
        f" {'p99.9 us':>9} {'x rate':>7} {'x p99':>7}"
    )
    for name, s in summaries.items():
        say(
            f"{name:<11} {s['frames_per_s']:>10,.0f} {s['p50_us']:>8,.0f}"
            f" {s['p99_us']:>8,.0f} {s['p999_us']:>9,.0f}"
            f" {ratio(s['frames_per_s'], reference.get('frames_per_s')):>7}"
            f" {ratio(s['p99_us'], reference.get('p99_us')):>7}"
        )


def pair(first: float, second: float) -> str:
    return f"{first:.0f} / {second:.0f}"


def print_resource_table(summaries: dict[str, dict[str, float]]) -> None:
    say(
        f"{'server':<11} {'server CPU %':>13} {'RSS MiB':>8}"
        f" {'loadgen CPU %':>14} {'other % (max)':>14}"
    )
    for name, s in summaries.items():
        server = pair(s["server_cpu_percent"], s["server_core_busy_percent"])
        loadgen = pair(
            s["loadgen_cpu_percent"], s["loadgen_core_busy_percent"]
        )
        other = pair(
            s["max_other_on_server_cpu_percent"],
            s["max_other_on_loadgen_cpu_percent"],
        )
        say(
            f"{name:<11} {server:>13} {mib(s['server_rss_bytes']):>8.1f}"
            f" {loadgen:>14} {other:>14}"
        )


def warn_about_load(summaries: dict[str, dict[str, float]]) -> None:
    for name, s in summaries.items():
        if s["max_loadgen_cpu_percent"] >= SATURATED_PERCENT:
            say(
                f"WARNING {name}: load generator saturated"
                f" ({s['max_loadgen_cpu_percent']:.0f} % CPU): numbers are"
                " a lower bound"
            )
        if s["errors"]:
            say(f"WARNING {name}: {s['errors']:.0f} frame errors")
        other = max(
            s["max_other_on_server_cpu_percent"],
            s["max_other_on_loadgen_cpu_percent"],
        )
        if other >= NOISY_PERCENT:
            say(
                f"WARNING {name}: other work took up to {other:.0f} % of a"
                " pinned CPU during a run: the machine was not quiet,"
                " compare with care"
            )


def idle_summary(results: Sequence[IdleResult]) -> dict[str, float]:
    fields = ("rss_before_bytes", "rss_after_bytes", "bytes_per_connection")
    summary = {field: median_of(results, field) for field in fields}
    summary["runs"] = len(results)
    summary["min_accepted"] = min(r.accepted for r in results)
    return summary


def print_idle_report(
    summaries: dict[str, dict[str, float]], connections: int
) -> None:
    reference = summaries.get(REFERENCE_SERVER, {})
    say("")
    say(f"{connections:,} idle connections, medians of the runs")
    say(
        f"{'server':<11} {'RSS before MiB':>14} {'RSS after MiB':>13}"
        f" {'bytes/conn':>10} {'x uvloop':>8}"
    )
    reference_cost = reference.get("bytes_per_connection")
    for name, s in summaries.items():
        per_connection = s["bytes_per_connection"]
        say(
            f"{name:<11} {mib(s['rss_before_bytes']):>14.1f}"
            f" {mib(s['rss_after_bytes']):>13.1f}"
            f" {per_connection:>10,.0f}"
            f" {ratio(per_connection, reference_cost):>8}"
        )
    for name, s in summaries.items():
        if s["min_accepted"] < connections:
            say(
                f"WARNING {name}: accepted only {s['min_accepted']:,.0f}"
                " connections in a run (the rest were lost in its listen"
                " queue); bytes/conn divides by what it held"
            )


def print_skipped(skipped: dict[str, str]) -> None:
    for name, reason in skipped.items():
        say(f"NOTE {name} was skipped: {reason}")


def save_json(
    path: Path,
    settings: Settings,
    results: Sequence[Result],
    summaries: dict[str, dict[str, float]],
    skipped: dict[str, str],
) -> None:
    document = {
        "settings": asdict(settings),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "runs": [asdict(r) for r in results],
        "summary": summaries,
        "skipped": skipped,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    say(f"raw results saved to {path}")


# ---------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------


def parse_servers(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in ALL_SERVERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"choose from {', '.join(ALL_SERVERS)}; got {text!r}"
        )
    return names


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Side-by-side echo benchmark (see the module docstring)."
    )
    add = parser.add_argument
    add(
        "--servers",
        type=parse_servers,
        default=ALL_SERVERS,
        help="comma-separated, from " + ",".join(ALL_SERVERS),
    )
    add("--repeat", type=int, default=3, help="interleaved repetitions")
    add("--connections", type=int, default=100)
    add("--inflight", type=int, default=16, help="frames per connection")
    add("--size", type=int, default=64, help="payload bytes per frame")
    add("--duration", type=float, default=10.0, help="measured seconds")
    add("--warmup", type=float, default=2.0, help="uncounted seconds")
    add(
        "--idle",
        type=int,
        default=0,
        metavar="N",
        help="RSS per idle connection",
    )
    add("--quick", action="store_true", help="1 s, 1 repeat, 10 conns")
    add("--server-cpu", default="0", help="CPU list for servers")
    add("--loadgen-cpu", default="1", help="CPU list for the load gen")
    add(
        "--quiet-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait for idle pinned CPUs before each run",
    )
    add("--retries", type=int, default=2, help="reruns of a noisy run")
    add("--json", type=Path, metavar="FILE", help="save raw results")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    if args.quick:
        args.duration, args.warmup = 1.0, 0.5
        args.repeat, args.connections = 1, 10
    return Settings(
        servers=args.servers,
        repeat=args.repeat,
        connections=args.connections,
        inflight=args.inflight,
        size=args.size,
        duration=args.duration,
        warmup=args.warmup,
        idle=args.idle,
        server_cpu=args.server_cpu,
        loadgen_cpu=args.loadgen_cpu,
        quiet_wait=args.quiet_wait,
        retries=args.retries,
    )


def describe_settings(settings: Settings) -> str:
    if settings.idle:
        return f"{settings.idle:,} idle connections"
    return (
        f"{settings.size}-byte payloads, {settings.connections} connections"
        f" x {settings.inflight} in flight, {settings.duration:g} s measured"
        f" after {settings.warmup:g} s warm-up"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_from(args)
    binary = build_loadgen()
    say(
        f"{describe_settings(settings)}; {settings.repeat} repetition(s);"
        f" server on CPU {settings.server_cpu},"
        f" load generator on CPU {settings.loadgen_cpu}"
    )
    if not settings.idle:
        say(
            "per run: frames/s, latency, CPU % of the server process/its"
            " core, the same for\nthe load generator, and other work's"
            " CPU % on the server's/generator's core"
        )
    results, skipped = run_all(settings, binary)
    summaries = summarize(results, settings)
    if settings.idle:
        print_idle_report(summaries, settings.idle)
    else:
        print_load_report(summaries)
    print_skipped(skipped)
    if args.json:
        save_json(args.json, settings, results, summaries, skipped)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
