"""What a load run does: the scenario and its numbers, checked once.

Every run is bounded: in time (``duration`` at most an hour), in the
connections it opens and in the messages it may keep in flight; and it
targets loopback addresses only, so that a typo cannot turn the load
generator on somebody else's machine.
"""

from __future__ import annotations

import ipaddress
import math
import os
import secrets
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "MAX_CONNECTIONS_PER_WORKER",
    "SCENARIOS",
    "LoadConfig",
    "LoadConfigError",
    "WorkerPlan",
    "plan_workers",
]

SCENARIOS: Final = ("p2p", "group", "login", "idle", "mixed")

# Each load process holds its connections under the machine's open-file
# limit of 20,000 per process, with room for the process's own files.
MAX_CONNECTIONS_PER_WORKER: Final = 18_000
# Local ports one source address offers a destination (the kernel's
# default ephemeral range is 32768-60999); past it, connecting from the
# same 127.0.0.x fails with EADDRNOTAVAIL. Each worker takes its own.
PORTS_PER_SOURCE: Final = 28_000
MAX_DURATION: Final = 3600.0
MAX_CONNECTIONS: Final = 200_000
# A sender with this many messages still unacknowledged stops sending
# until acks come back: an open-loop run against a server that cannot
# keep up measures that, instead of growing without bound.
DEFAULT_MAX_IN_FLIGHT: Final = 1000


class LoadConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class LoadConfig:
    scenario: str = "p2p"
    host: str = "127.0.0.1"
    port: int = 7700
    # The server's token secret: the load logs in like any client.
    secret: bytes = b""
    # p2p: pairs of users sending to each other.
    pairs: int = 100
    # group: groups of ``group_size`` members, ``senders`` of whom send.
    groups: int = 10
    group_size: int = 100
    senders: int = 1
    # 0: closed loop (each sender keeps ``window`` messages in flight);
    # otherwise the total messages per second offered (open loop).
    rate: float = 0.0
    window: int = 1
    size: int = 64
    duration: float = 10.0
    warmup: float = 2.0
    # After the run, how long at most to wait for the last acks and
    # pushes. A drain ends as soon as nothing is in flight or arriving,
    # so only a server still answering (a flood's backlog) uses it up.
    drain: float = 30.0
    # login: connects-and-logins per second, for ``duration``.
    # Also the pace at which every scenario opens its connections.
    login_rate: float = 1000.0
    # idle: connections held, pinging at the announced interval.
    connections: int = 1000
    # Latency of one push in ``sample`` is recorded (1: every one).
    sample: int = 1
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    # A pair sending 20 messages a second whose latency is reported on
    # its own: what one ordinary user sees while the load runs.
    probe: bool = False
    workers: int = 0  # 0: as many as the connections need
    # Users are named after the run, so that each run's conversations
    # start at seq 1 even on a server that keeps earlier runs.
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))

    def __post_init__(self) -> None:
        _check(self)

    @property
    def connection_count(self) -> int:
        """Connections the scenario holds at once (login: at most)."""
        probe = 2 if self.probe else 0
        if self.scenario == "p2p":
            return 2 * self.pairs + probe
        if self.scenario == "group":
            return self.groups * self.group_size + probe
        if self.scenario == "idle":
            return self.connections + probe
        if self.scenario == "login":
            return min(self.max_in_flight, self._login_total) + probe
        # mixed: the p2p pairs, the groups and a login stream at once.
        return (
            2 * self.pairs
            + self.groups * self.group_size
            + min(self.max_in_flight, self._login_total)
            + probe
        )

    @property
    def _login_total(self) -> int:
        # Logins go on through the warm-up and the measured window.
        return math.ceil(self.login_rate * (self.warmup + self.duration))


def _check(c: LoadConfig) -> None:
    def need(ok: bool, name: str, why: str) -> None:
        if not ok:
            raise LoadConfigError(f"{name}: {why} (got {getattr(c, name)!r})")

    need(c.scenario in SCENARIOS, "scenario", "one of " + ", ".join(SCENARIOS))
    try:
        loopback = ipaddress.ip_address(c.host).is_loopback
    except ValueError:
        loopback = False
    need(loopback, "host", "must be a loopback address (127.x.x.x or ::1)")
    need(0 < c.port <= 65535, "port", "must be 1..65535")
    need(bool(c.secret), "secret", "the server's token secret is needed")
    need(c.pairs >= 0, "pairs", "must be >= 0")
    need(c.groups >= 0, "groups", "must be >= 0")
    need(2 <= c.group_size <= 2000, "group_size", "must be 2..2000")
    need(1 <= c.senders <= c.group_size, "senders", "must be 1..group_size")
    need(c.rate >= 0, "rate", "must be >= 0 (0: closed loop)")
    need(1 <= c.window <= c.max_in_flight, "window", "1..max_in_flight")
    need(24 <= c.size <= 65536, "size", "must be 24..65536 bytes")
    need(0 < c.duration <= MAX_DURATION, "duration", "must be 0..3600 s")
    need(0 <= c.warmup <= MAX_DURATION, "warmup", "must be 0..3600 s")
    need(0 <= c.drain <= 600, "drain", "must be 0..600 s")
    need(c.login_rate > 0, "login_rate", "must be > 0")
    need(c.connections > 0, "connections", "must be > 0")
    need(c.sample >= 1, "sample", "must be >= 1")
    need(c.max_in_flight >= 1, "max_in_flight", "must be >= 1")
    need(c.workers >= 0, "workers", "must be >= 0 (0: automatic)")
    need(
        c.connection_count <= MAX_CONNECTIONS,
        "scenario",
        f"would hold more than {MAX_CONNECTIONS:,} connections",
    )
    if c.scenario == "p2p":
        need(c.pairs > 0, "pairs", "p2p needs at least one pair")
    if c.scenario == "group":
        need(c.groups > 0, "groups", "group needs at least one group")


@dataclass(frozen=True)
class WorkerPlan:
    """One load process's share of the run."""

    index: int
    workers: int  # how many share the run
    config: LoadConfig
    # 127.0.0.x to connect from: each worker its own local ports.
    source: str
    pairs: tuple[tuple[str, str], ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    idle: tuple[str, ...] = ()
    logins: int = 0  # login storm: connections to open and close
    probe: tuple[str, str] | None = None

    @property
    def share(self) -> float:
        """This worker's part of the offered rate."""
        return self.config.rate * self._senders / max(self._all_senders, 1)

    @property
    def _senders(self) -> int:
        return 2 * len(self.pairs) + self.config.senders * len(self.groups)

    @property
    def _all_senders(self) -> int:
        c = self.config
        pairs = c.pairs if c.scenario in ("p2p", "mixed") else 0
        groups = c.groups if c.scenario in ("group", "mixed") else 0
        return 2 * pairs + c.senders * groups


def plan_workers(config: LoadConfig) -> list[WorkerPlan]:
    """Split the run over load processes: every pair and group whole in
    one process (its members' views and acks meet there), round robin."""
    count = config.workers or max(
        1,
        math.ceil(config.connection_count / MAX_CONNECTIONS_PER_WORKER),
        math.ceil(config.connection_count / PORTS_PER_SOURCE),
    )
    count = min(count, max(os.cpu_count() or 1, 1) * 8)
    run = config.run_id
    scenario = config.scenario
    pairs: list[list[tuple[str, str]]] = [[] for _ in range(count)]
    groups: list[list[tuple[str, ...]]] = [[] for _ in range(count)]
    idle: list[list[str]] = [[] for _ in range(count)]
    if scenario in ("p2p", "mixed"):
        for n in range(config.pairs):
            pair = (f"{run}-p{n}a", f"{run}-p{n}b")
            pairs[n % count].append(pair)
    if scenario in ("group", "mixed"):
        for n in range(config.groups):
            members = tuple(
                f"{run}-g{n}m{m}" for m in range(config.group_size)
            )
            groups[n % count].append(members)
    if scenario == "idle":
        for n in range(config.connections):
            idle[n % count].append(f"{run}-i{n}")
    logins = [0] * count
    if scenario in ("login", "mixed"):
        total = config._login_total
        for n in range(count):
            logins[n] = total // count + (1 if n < total % count else 0)
    # Each run starts at another 127.0.0.x: the ports an earlier run left
    # in TIME_WAIT (a minute, after 15,000 connections) stay out of the way.
    first_source = 2 + int(run, 16) % 200 if _is_hex(run) else 2
    plans = []
    for n in range(count):
        probe = None
        if config.probe and n == 0:
            probe = (f"{run}-probe-a", f"{run}-probe-b")
        plans.append(
            WorkerPlan(
                index=n,
                workers=count,
                config=config,
                source=f"127.0.0.{first_source + n % 50}",
                pairs=tuple(pairs[n]),
                groups=tuple(groups[n]),
                idle=tuple(idle[n]),
                logins=logins[n],
                probe=probe,
            )
        )
    return plans


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True
