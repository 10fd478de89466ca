"""The load run: start the load processes, drive the phases, add it up.

Phases, each with a deadline:

1. **Setup.** Every worker connects its devices at the login rate, logs
   them in and makes its groups, then says "ready". The server's RSS is
   read before and after (the idle scenario's figure).
2. **Run.** One "go" with a start time a moment ahead, so every worker
   starts together. Warm-up, then the measured window; once a second
   each worker reports its counters and the latencies of that second.
3. **Drain.** Senders stop; workers wait for the last acks and pushes,
   then send their final report: per conversation the last acked seq,
   per device and conversation what it holds. The integrity check runs
   on those.

While it runs, the runner samples the server's CPU and RSS and the load
processes' own CPU (psutil). A load generator that uses most of its CPU
while the server has some to spare measures itself, not the server; the
result says so (``bottleneck``).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Final

import psutil
from hdrh.histogram import HdrHistogram

from im.protocol import ErrorCode

from .config import LoadConfig, WorkerPlan, plan_workers
from .device import error_key
from .integrity import check
from .recorder import new_histogram
from .worker import SETUP_TIMEOUT, worker_main

__all__ = [
    "LatencySummary",
    "LoadResult",
    "RunError",
    "find_server",
    "run_load",
]

# A CPU this busy is the limit of whatever runs on it.
SATURATED: Final = 90.0
PERCENTILES: Final = (50.0, 90.0, 99.0, 99.9)
# How long after "go" the run starts: every worker gets the message.
_START_DELAY: Final = 0.3


class RunError(RuntimeError):
    """The run could not be made; the message says why."""


@dataclass
class LatencySummary:
    count: int = 0
    p50_us: float = 0.0
    p90_us: float = 0.0
    p99_us: float = 0.0
    p999_us: float = 0.0
    max_us: float = 0.0

    @classmethod
    def of(cls, histogram: HdrHistogram) -> LatencySummary:
        if histogram.get_total_count() == 0:
            return cls()
        p50, p90, p99, p999 = (
            histogram.get_value_at_percentile(p) for p in PERCENTILES
        )
        return cls(
            histogram.get_total_count(),
            p50,
            p90,
            p99,
            p999,
            histogram.get_max_value(),
        )


@dataclass
class LoadResult:
    scenario: str
    config: dict[str, Any]
    workers: int
    devices: int
    window_s: float
    # Per second over the measured window.
    sent_per_s: float = 0.0
    acked_per_s: float = 0.0
    delivered_per_s: float = 0.0
    logins_per_s: float = 0.0
    ack: LatencySummary = field(default_factory=LatencySummary)
    push: LatencySummary = field(default_factory=LatencySummary)
    probe: LatencySummary = field(default_factory=LatencySummary)
    login: LatencySummary = field(default_factory=LatencySummary)
    errors: dict[str, int] = field(default_factory=dict)
    disconnects: int = 0
    integrity: dict[str, Any] = field(default_factory=dict)
    server_pid: int | None = None
    server_cpu_percent: float | None = None
    server_rss_before_mib: float | None = None
    server_rss_ready_mib: float | None = None
    server_rss_max_mib: float | None = None
    rss_per_connection_bytes: float | None = None
    load_cpu_percent: float = 0.0
    load_cpu_capacity: float = 100.0
    bottleneck: str = ""
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the server's process -----------------------------------------------------


def find_server(port: int, pid: int | None = None) -> psutil.Process | None:
    """The server's process: ``pid`` if given, else whoever listens on
    ``port`` here (None if that cannot be seen)."""
    if pid is not None:
        return psutil.Process(pid)
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if (
                conn.status == psutil.CONN_LISTEN
                and conn.laddr
                and conn.laddr.port == port
                and conn.pid
            ):
                return psutil.Process(conn.pid)
    except (psutil.AccessDenied, PermissionError):
        return None
    return None


class _Sampler:
    """CPU and RSS of a set of processes over the run."""

    def __init__(self, processes: Iterable[psutil.Process]) -> None:
        self.processes = list(processes)
        self.rss_max = 0
        self._cpu_start = 0.0
        self._wall_start = 0.0

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for process in self.processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        self.rss_max = max(self.rss_max, total)
        return total

    def start(self) -> None:
        self._cpu_start = self.cpu_seconds()
        self._wall_start = time.monotonic()

    def percent(self) -> float:
        wall = time.monotonic() - self._wall_start
        if wall <= 0:
            return 0.0
        return 100.0 * (self.cpu_seconds() - self._cpu_start) / wall


# -- the run ------------------------------------------------------------------


Progress = Callable[[float, dict[str, float]], None]


def run_load(
    config: LoadConfig,
    *,
    server_pid: int | None = None,
    cpus: set[int] | None = None,
    progress: Progress | None = None,
) -> LoadResult:
    """Run ``config`` against the server; see the module docstring.

    ``cpus``: pin the load processes there (the runner of a side by
    side comparison keeps the server on another core). ``progress`` is
    called about once a second with the elapsed fraction and live rates.
    """
    plans = plan_workers(config)
    server = find_server(config.port, server_pid)
    server_sampler = _Sampler([server] if server else [])
    rss_before = server_sampler.rss() if server else None
    context = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    processes: list[Any] = []
    try:
        for plan in plans:
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker_main,
                args=(plan, theirs),
                name=f"netim-bench-{plan.index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            if cpus and process.pid is not None:
                os.sched_setaffinity(process.pid, cpus)
            pipes.append(ours)
            processes.append(process)
        return _drive(
            config, plans, pipes, processes, server, server_sampler,
            rss_before, cpus, progress,
        )  # fmt: skip
    finally:
        for pipe in pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for process in processes:
            process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join(5.0)
        for pipe in pipes:
            pipe.close()


def _drive(
    config: LoadConfig,
    plans: list[WorkerPlan],
    pipes: list[Connection],
    processes: list[Any],
    server: psutil.Process | None,
    server_sampler: _Sampler,
    rss_before: int | None,
    cpus: set[int] | None,
    progress: Progress | None,
) -> LoadResult:
    ready = _collect(pipes, "ready", SETUP_TIMEOUT + 10.0)
    devices = sum(r["devices"] for r in ready.values())
    rss_ready = _settled_rss(server_sampler) if server else None
    load_sampler = _Sampler(psutil.Process(p.pid) for p in processes)

    t0 = time.monotonic() + _START_DELAY
    for pipe in pipes:
        pipe.send(("go", t0))
    planned = config.warmup + config.duration
    deadline = t0 + planned + config.drain + 90.0
    marks: dict[str, dict[int, dict[str, Any]]] = {"start": {}, "end": {}}
    finals: dict[int, dict[str, Any]] = {}
    lines: list[dict[str, Any]] = []
    live: dict[int, dict[str, Any]] = {}
    sampled_at_start = False
    server_cpu = load_cpu = 0.0
    while len(finals) < len(pipes):
        if time.monotonic() > deadline:
            raise RunError("the load processes did not finish in time")
        for ready_pipe in wait(pipes, timeout=0.5):
            assert isinstance(ready_pipe, Connection)
            try:
                message = ready_pipe.recv()
            except EOFError:
                raise RunError("a load process died") from None
            kind = message[0]
            if kind == "stats":
                line = message[1]
                lines.append(line)
                live[line["worker"]] = line
            elif kind == "mark":
                line = message[2]
                marks[message[1]][line["worker"]] = line
                if message[1] == "start" and not sampled_at_start:
                    sampled_at_start = True
                    server_sampler.start()
                    load_sampler.start()
                elif message[1] == "end" and len(marks["end"]) == 1:
                    server_cpu = server_sampler.percent()
                    load_cpu = load_sampler.percent()
            elif kind == "final":
                finals[message[1]["worker"]] = message[1]
            elif kind == "failed":
                raise RunError(message[1])
        if server is not None:
            server_sampler.rss()
        if progress is not None and live:
            elapsed = (time.monotonic() - t0) / planned
            progress(min(max(elapsed, 0.0), 1.0), _live_rates(live))
    if not sampled_at_start or len(marks["end"]) < len(pipes):
        raise RunError("the run ended before its measured window did")
    return _result(
        config, plans, devices, marks, finals, lines, server,
        server_sampler, rss_before, rss_ready, server_cpu, load_cpu, cpus,
    )  # fmt: skip


def _collect(
    pipes: list[Connection], kind: str, timeout: float
) -> dict[int, dict[str, Any]]:
    """Wait for message ``kind`` from every worker."""
    got: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    waiting = list(pipes)
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RunError(f"no {kind!r} from {len(waiting)} load processes")
        for pipe in wait(waiting, timeout=left):
            assert isinstance(pipe, Connection)
            try:
                message = pipe.recv()
            except EOFError:
                raise RunError("a load process died during setup") from None
            if message[0] == "failed":
                raise RunError(message[1])
            if message[0] == kind:
                got[message[1]["worker"]] = message[1]
                waiting.remove(pipe)
    return got


def _settled_rss(sampler: _Sampler) -> int:
    """RSS once it stops moving (the server settles after a burst of
    logins), at most two seconds."""
    last = sampler.rss()
    for _ in range(20):
        time.sleep(0.1)
        now = sampler.rss()
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def _live_rates(live: dict[int, dict[str, Any]]) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for line in live.values():
        for key in ("sent", "acks", "delivered", "logins", "errors"):
            totals[key] += line[key]
    return dict(totals)


def _merge(encoded: Iterable[str | None]) -> HdrHistogram:
    histogram = new_histogram()
    for text in encoded:
        if text:
            histogram.add(HdrHistogram.decode(text.encode("ascii")))
    return histogram


def _result(
    config: LoadConfig,
    plans: list[WorkerPlan],
    devices: int,
    marks: dict[str, dict[int, dict[str, Any]]],
    finals: dict[int, dict[str, Any]],
    lines: list[dict[str, Any]],
    server: psutil.Process | None,
    server_sampler: _Sampler,
    rss_before: int | None,
    rss_ready: int | None,
    server_cpu: float,
    load_cpu: float,
    cpus: set[int] | None,
) -> LoadResult:
    window = config.duration

    def rate(key: str) -> float:
        start = sum(m[key] for m in marks["start"].values())
        end = sum(m[key] for m in marks["end"].values())
        return (end - start) / window

    every_line = [*lines, *marks["end"].values()]
    every_line += [f["line"] for f in finals.values()]
    errors: Counter[str] = Counter()
    last_acked: dict[str, int] = {}
    acked_counts: dict[str, int] = {}
    views: dict[tuple[str, str], tuple[int, ...]] = {}
    disconnects = 0
    for final in finals.values():
        errors.update(final["errors"])
        for conversation, seq in final["last_acked"].items():
            last_acked[conversation] = max(
                last_acked.get(conversation, 0), seq
            )
        for conversation, count in final["acked_counts"].items():
            acked_counts[conversation] = (
                acked_counts.get(conversation, 0) + count
            )
        views.update(final["views"])
        disconnects += final["disconnects"]
    settled = all(final["settled"] for final in finals.values())
    integrity = check(last_acked, acked_counts, views, settled)
    capacity = 100.0 * (len(cpus) if cpus else (os.cpu_count() or 1))
    capacity = min(capacity, 100.0 * len(plans))
    result = LoadResult(
        scenario=config.scenario,
        config=_config_summary(config),
        workers=len(plans),
        devices=devices,
        window_s=window,
        sent_per_s=rate("sent"),
        acked_per_s=rate("acks"),
        delivered_per_s=rate("delivered"),
        logins_per_s=rate("logins"),
        ack=LatencySummary.of(_merge(x.get("ack") for x in every_line)),
        push=LatencySummary.of(_merge(x.get("push") for x in every_line)),
        probe=LatencySummary.of(_merge(x.get("probe") for x in every_line)),
        login=LatencySummary.of(_merge(x.get("login") for x in every_line)),
        errors=dict(errors),
        disconnects=disconnects,
        integrity=integrity.as_dict(),
        server_pid=server.pid if server else None,
        server_cpu_percent=server_cpu if server else None,
        server_rss_before_mib=_mib(rss_before),
        server_rss_ready_mib=_mib(rss_ready),
        server_rss_max_mib=_mib(server_sampler.rss_max) if server else None,
        load_cpu_percent=load_cpu,
        load_cpu_capacity=capacity,
        timeline=_timeline(lines, config),
    )
    if rss_before is not None and rss_ready is not None and devices:
        result.rss_per_connection_bytes = (rss_ready - rss_before) / devices
    result.bottleneck = _bottleneck(result)
    return result


def _config_summary(config: LoadConfig) -> dict[str, Any]:
    summary = asdict(config)
    summary.pop("secret")
    return summary


_RATE_LIMITED: Final = error_key(ErrorCode.RATE_LIMITED)


def _mib(value: float | None) -> float | None:
    return None if value is None else value / (1024 * 1024)


def _bottleneck(result: LoadResult) -> str:
    load_share = 100.0 * result.load_cpu_percent / result.load_cpu_capacity
    load_busy = load_share >= SATURATED
    # Requests the server refused by policy, not for want of CPU: a few
    # connections sending fast meet its limit per connection.
    refused = result.errors.get(_RATE_LIMITED, 0)
    sent = result.sent_per_s * result.window_s
    limited = refused > 0 and refused * 100 >= sent
    raise_it = (
        f"the server's rate limit refused {refused:,} requests (start"
        " netim serve with a higher --rate-limit and --rate-burst for a"
        " load test)"
    )
    server = result.server_cpu_percent
    if server is None:
        if load_busy:
            return "the load generator was saturated; the server unseen"
        return "the server's CPU could not be read"
    server_busy = server >= SATURATED
    if load_busy and not server_busy:
        verdict = (
            "the LOAD GENERATOR was the bottleneck: it used "
            f"{load_share:.0f} % of its CPU while the server used "
            f"{server:.0f} %; the server can do more than measured"
        )
    elif server_busy and load_busy:
        verdict = "both the server and the load generator were saturated"
    elif server_busy:
        verdict = "the server was the bottleneck (its core was saturated)"
    else:
        # Below the line, the load itself set the pace: the rate asked
        # for, or in a closed loop the messages each sender may keep in
        # flight; unless the server refused a share of them.
        if limited:
            pace = raise_it
        elif result.scenario in ("login", "idle"):
            pace = "the login rate asked for was the limit"
        elif result.config.get("rate", 0) > 0:
            pace = "the offered rate was the limit"
        else:
            pace = "the window (messages in flight per sender) was the limit"
        return (
            f"neither was saturated (server {server:.0f} %, load "
            f"{load_share:.0f} % of its CPU): {pace}"
        )
    return f"{verdict}; and {raise_it}" if limited else verdict


def _timeline(
    lines: list[dict[str, Any]], config: LoadConfig
) -> list[dict[str, Any]]:
    """Per second of the run: rates and latency percentiles."""
    by_second: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        by_second.setdefault(round(line["t"]), []).append(line)
    timeline = []
    previous: dict[int, dict[str, Any]] = {}
    for second in sorted(by_second):
        group = by_second[second]
        row: dict[str, Any] = {"t": second}
        for key in ("sent", "acks", "delivered", "logins"):
            row[key] = sum(
                line[key] - previous.get(line["worker"], {}).get(key, 0)
                for line in group
            )
        for name in ("ack", "push"):
            histogram = _merge(line.get(name) for line in group)
            summary = LatencySummary.of(histogram)
            row[f"{name}_p50_us"] = summary.p50_us
            row[f"{name}_p99_us"] = summary.p99_us
        for line in group:
            previous[line["worker"]] = line
        row["measured"] = (
            config.warmup <= second <= (config.warmup + config.duration)
        )
        timeline.append(row)
    return timeline
