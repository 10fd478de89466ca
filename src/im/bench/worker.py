"""A load process: its own reactor loop, its share of the devices.

The runner starts one process per ``WorkerPlan`` and talks to it over a
pipe, which the loop watches like any socket:

    worker -> runner   ("ready", setup facts)  every device logged in,
                                               groups made
                       ("stats", line)         once a second
                       ("mark", name, line)    at the window's start/end
                       ("final", report)       after the drain
                       ("failed", text)        setup went wrong
    runner -> worker   ("go", t0)              start at monotonic t0
                       ("stop",)               end now (Ctrl-C)

A worker ends by itself: after its final report; when the pipe closes
(the runner died); or at a deadline well past the run's planned end.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Final

from im.framing import frame_decoder
from im.infrastructure.tokens import issue_token
from im.protocol import CreateGroup
from reactor import Bootstrap, EventLoop, SocketChannel

from .config import WorkerPlan
from .device import LoadDevice
from .recorder import Recorder

__all__ = ["worker_main"]

# Open-loop sends are spread over ticks this long: short enough to look
# like a steady stream to the server, long enough to batch the writes.
TICK: Final = 0.005
REPORT_EVERY: Final = 1.0
# Setup (connect, log in, make groups) must finish within this.
SETUP_TIMEOUT: Final = 120.0
# The probe: a pair sending this many messages a second, each.
PROBE_RATE: Final = 10.0
# Past the planned end by this much, a worker gives up on the drain.
_SAFETY_MARGIN: Final = 60.0
_READABLE: Final = select.EPOLLIN | select.EPOLLRDHUP


def worker_main(plan: WorkerPlan, pipe: Connection) -> None:
    """Entry point of the load process (``multiprocessing`` target)."""
    Worker(plan, pipe).run()


class _Sender:
    """A device that sends, and where to."""

    __slots__ = ("device", "group", "to")

    def __init__(self, device: LoadDevice, to: str, group: bool) -> None:
        self.device = device
        self.to = to
        self.group = group

    def send(self, size: int) -> None:
        if self.group:
            self.device.send_to_group(self.to, size)
        else:
            self.device.send_to_user(self.to, size)


class _PipeWatch:
    """The runner's pipe on the loop: commands in, EOF ends the run."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def _handle_events(self, events: int) -> None:
        pipe = self.worker.pipe
        try:
            while pipe.poll():
                self.worker.command(pipe.recv())
        except (EOFError, OSError):
            self.worker.abandon("the runner went away")


class Worker:
    def __init__(self, plan: WorkerPlan, pipe: Connection) -> None:
        self.plan = plan
        self.config = config = plan.config
        self.pipe = pipe
        self.loop = EventLoop()
        self.recorder = Recorder(config.sample)
        self.probe_recorder = Recorder(1)
        self.devices: list[LoadDevice] = []
        self.senders: list[_Sender] = []
        self.probe_senders: list[_Sender] = []
        self.source = None if ":" in config.host else plan.source
        self.running = False
        self.t0 = 0.0
        self._waiting = 0
        self._offered = 0
        self._probe_offered = 0
        self._next_sender = 0
        self._logins_left = plan.logins
        self._logins_open = 0
        self._finished = False
        self._deadline_timer: Any = None
        self._pending_groups: list[list[LoadDevice]] = []
        self._sender_of: dict[int, _Sender] = {}
        self._logins_started = 0
        self._drain_started = 0.0
        self._last_delivered = -1

    # -- the process ----------------------------------------------------------

    def run(self) -> None:
        loop = self.loop
        loop.add_reader(self.pipe.fileno(), _PipeWatch(self), _READABLE)
        loop.call_soon(self._set_up)
        self._deadline_timer = loop.call_later(
            SETUP_TIMEOUT, self._fail, "setup took too long"
        )
        try:
            loop.run()
        finally:
            loop.close()

    def command(self, message: tuple[Any, ...]) -> None:
        if message[0] == "go":
            self._go(float(message[1]))
        elif message[0] == "stop":
            self._end_window()

    def abandon(self, why: str) -> None:
        self.loop.remove(self.pipe.fileno())
        self._close_all()
        self.loop.stop()

    def _report(self, *message: Any) -> None:
        try:
            self.pipe.send(message)
        except (BrokenPipeError, OSError):
            self.abandon("the runner went away")

    def _fail(self, why: str) -> None:
        self._report("failed", f"worker {self.plan.index}: {why}")
        self.abandon(why)

    # -- setup ----------------------------------------------------------------

    def _set_up(self) -> None:
        plan = self.plan
        for a, b in plan.pairs:
            da, db = self._device(a), self._device(b)
            self.senders += [_Sender(da, b, False), _Sender(db, a, False)]
        for members in plan.groups:
            devices = [self._device(user) for user in members]
            self._pending_groups.append(devices)
        for user in plan.idle:
            self._device(user)
        if plan.probe is not None:
            a, b = plan.probe
            pa = self._device(a, self.probe_recorder)
            pb = self._device(b, self.probe_recorder)
            self.probe_senders = [
                _Sender(pa, b, False),
                _Sender(pb, a, False),
            ]
        self._connect_paced(list(self.devices))
        if not self.devices:
            self._all_ready()

    def _device(
        self, user: str, recorder: Recorder | None = None
    ) -> LoadDevice:
        token = issue_token(self.config.secret, user, ttl=86400)
        device = LoadDevice(recorder or self.recorder, user, token)
        device.on_ready = self._device_ready
        device.on_refused = self._refused
        self.devices.append(device)
        self._waiting += 1
        return device

    def _connect_paced(self, devices: list[LoadDevice]) -> None:
        """Open connections at this worker's share of the login rate."""
        per_tick = max(1, int(self._share(self.config.login_rate) * TICK) or 1)
        batch, rest = devices[:per_tick], devices[per_tick:]
        for device in batch:
            self._connect(device)
        if rest:
            self.loop.call_later(TICK, self._connect_paced, rest)

    def _share(self, rate: float) -> float:
        return rate / self.plan.workers

    def _connect(
        self,
        device: LoadDevice,
        on_failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        def initialize(channel: SocketChannel) -> None:
            channel.pipeline.add_last(frame_decoder()).add_last(device)

        def connected(future: Any) -> None:
            error = future.exception()
            if error is None:
                return
            self.recorder.error(f"connect: {type(error).__name__}")
            if on_failed is not None:
                on_failed(error)
            else:
                self._fail(f"cannot connect: {error}")

        Bootstrap(self.loop).initializer(initialize).connect(
            self.config.host, self.config.port, source=self.source
        ).add_listener(connected)

    def _refused(self, device: LoadDevice, reply: Any) -> None:
        # Every setup login uses the same secret: one refused means all
        # will be, and waiting out the setup timeout would only hide why.
        self._fail(
            f"the server refused the login of {device.user}: {reply} "
            "(is --secret / --secret-file the server's?)"
        )

    def _device_ready(self, device: LoadDevice) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            self._make_groups()

    def _make_groups(self) -> None:
        pending = self._pending_groups
        if not pending:
            self._all_ready()
            return
        self._waiting = len(pending)
        for number, devices in enumerate(pending):
            self._make_group(number, devices)

    def _make_group(self, number: int, devices: list[LoadDevice]) -> None:
        owner = devices[0]
        members = [d.user for d in devices[1:]]
        name = f"load-{self.plan.index}-{number}"

        def created(reply: Any) -> None:
            found = LoadDevice.group_id_of(reply)
            if found is None:
                self._fail(f"group not created: {reply}")
                return
            group_id, conversation = found
            for device in devices:
                device.join(conversation)
            for device in devices[: self.config.senders]:
                self.senders.append(_Sender(device, group_id, True))
            self._waiting -= 1
            if self._waiting == 0:
                self._all_ready()

        owner.request(CreateGroup(name, tuple(members)), created)

    def _all_ready(self) -> None:
        self.loop.cancel_timer(self._deadline_timer)
        self._report(
            "ready",
            {
                "worker": self.plan.index,
                "pid": os.getpid(),
                "devices": len(self.devices),
                "senders": len(self.senders),
            },
        )

    # -- the run --------------------------------------------------------------

    def _go(self, t0: float) -> None:
        config = self.config
        self.t0 = t0
        start_ns = int((t0 + config.warmup) * 1e9)
        end_ns = int((t0 + config.warmup + config.duration) * 1e9)
        for recorder in (self.recorder, self.probe_recorder):
            recorder.window_start_ns = start_ns
            recorder.window_end_ns = end_ns
        delay = max(t0 - time.monotonic(), 0.0)
        loop = self.loop
        loop.call_later(delay, self._start)
        loop.call_later(delay + config.warmup, self._mark, "start")
        loop.call_later(
            delay + config.warmup + config.duration, self._end_window
        )
        self._deadline_timer = loop.call_later(
            delay + config.warmup + config.duration + config.drain
            + _SAFETY_MARGIN,
            self._fail,
            "the run did not end in time",
        )  # fmt: skip

    def _start(self) -> None:
        self.running = True
        config = self.config
        self._sender_of = {id(s.device): s for s in self.senders}
        if config.rate > 0:
            self._tick()
        else:
            for sender in self.senders:
                sender.device.on_acked = self._next_closed_loop
                for _ in range(config.window):
                    sender.send(config.size)
            self._flush_all()
        if self.probe_senders:
            self._probe_tick()
        if self._logins_left:
            self._login_tick()
        self.loop.call_later(REPORT_EVERY, self._interval)

    def _next_closed_loop(self, device: LoadDevice, ok: bool) -> None:
        # One message in flight per ack, to the same place. Flushed by
        # the device at the end of the read that brought the ack.
        if not self.running:
            return
        sender = self._sender_of.get(id(device))
        if sender is not None:
            sender.send(self.config.size)

    def _tick(self) -> None:
        if not self.running:
            return
        config = self.config
        elapsed = time.monotonic() - self.t0
        due = int(self.plan.share * elapsed) - self._offered
        senders = self.senders
        if due > 0 and senders:
            limit = config.max_in_flight
            size = config.size
            touched = set()
            count = len(senders)
            index = self._next_sender
            for _ in range(due):
                sender = senders[index]
                index = index + 1 if index + 1 < count else 0
                if len(sender.device.in_flight) >= limit:
                    self.recorder.error("throttled: too many in flight")
                    continue
                sender.send(size)
                touched.add(sender.device)
            self._next_sender = index
            self._offered += due
            for device in touched:
                if device.channel is not None:
                    device.channel.flush()
        self.loop.call_later(TICK, self._tick)

    def _probe_tick(self) -> None:
        if not self.running:
            return
        elapsed = time.monotonic() - self.t0
        due = int(PROBE_RATE * len(self.probe_senders) * elapsed)
        due -= self._probe_offered
        for n in range(max(due, 0)):
            sender = self.probe_senders[n % len(self.probe_senders)]
            sender.send(self.config.size)
            if sender.device.channel is not None:
                sender.device.channel.flush()
        self._probe_offered += max(due, 0)
        self.loop.call_later(0.01, self._probe_tick)

    # -- login storm ----------------------------------------------------------

    def _login_tick(self) -> None:
        if not self.running or self._logins_left <= 0:
            return
        config = self.config
        # By the clock, not by ticks: a late tick (a busy loop) catches up.
        elapsed = time.monotonic() - self.t0
        count = int(self._share(config.login_rate) * elapsed)
        count -= self._logins_started
        self._logins_started += max(count, 0)
        for _ in range(count):
            if self._logins_left <= 0:
                break
            if self._logins_open >= config.max_in_flight:
                self.recorder.error("throttled: too many logins in flight")
                continue
            self._logins_left -= 1
            self._one_login()
        self.loop.call_later(TICK, self._login_tick)

    def _one_login(self) -> None:
        self._logins_open += 1
        user = f"{self.config.run_id}-l{self.plan.index}-{self._logins_left}"
        token = issue_token(self.config.secret, user, ttl=3600)
        device = LoadDevice(self.recorder, user, token, heartbeat=False)
        started = time.monotonic_ns()

        def ready(d: LoadDevice) -> None:
            self.recorder.logged_in(started)
            if d.channel is not None:
                d.leaving = True
                d.channel.close()

        def closed(d: LoadDevice) -> None:
            self._logins_open -= 1

        def failed(error: BaseException) -> None:
            self._logins_open -= 1

        device.on_ready = ready
        device.on_closed = closed
        self._connect(device, on_failed=failed)

    # -- reporting and the end ------------------------------------------------

    def _interval(self) -> None:
        if self._finished:
            return
        self._report("stats", self._line())
        self.loop.call_later(REPORT_EVERY, self._interval)

    def _line(self) -> dict[str, Any]:
        line = self.recorder.take_interval()
        probe = self.probe_recorder.take_interval()
        line["probe"] = probe["push"]
        line["t"] = time.monotonic() - self.t0
        line["worker"] = self.plan.index
        return line

    def _mark(self, name: str) -> None:
        self._report("mark", name, self._line())

    def _end_window(self) -> None:
        if not self.running:
            return
        self._mark("end")
        self.running = False
        self._drain_started = time.monotonic()
        self._last_delivered = -1
        self._drain()

    def _drain(self) -> None:
        # Wait for the answers to what is in flight, and for the pushes
        # that follow them, until nothing has moved for half a second.
        delivered = self.recorder.delivered + self.probe_recorder.delivered
        in_flight = sum(len(d.in_flight) for d in self.devices)
        waited = time.monotonic() - self._drain_started
        settled = in_flight == 0 and delivered == self._last_delivered
        if settled or waited > self.config.drain:
            self._finish(settled)
            return
        self._last_delivered = delivered
        self.loop.call_later(0.5 if in_flight == 0 else 0.1, self._drain)

    def _finish(self, settled: bool) -> None:
        self._finished = True
        views: dict[tuple[str, str], tuple[int, ...]] = {}
        for device in self.devices:
            for conversation, view in device.views.items():
                views[(device.user, conversation)] = view.summary()
        recorder = self.recorder
        last_acked = dict(recorder.last_acked)
        counts = dict(recorder.acked_counts)
        for conversation, seq in self.probe_recorder.last_acked.items():
            last_acked[conversation] = max(
                last_acked.get(conversation, 0), seq
            )
            counts[conversation] = self.probe_recorder.acked_counts[
                conversation
            ]
        errors = recorder.errors + self.probe_recorder.errors
        self._report(
            "final",
            {
                "worker": self.plan.index,
                "line": self._line(),
                "views": views,
                "last_acked": last_acked,
                "acked_counts": counts,
                "errors": dict(errors),
                "in_flight": sum(len(d.in_flight) for d in self.devices),
                "settled": settled,
                "in_flight_lost": recorder.in_flight_lost,
                "disconnects": recorder.disconnects,
            },
        )
        self.loop.cancel_timer(self._deadline_timer)
        self._close_all()
        self.loop.call_later(0.2, self.loop.stop)

    def _flush_all(self) -> None:
        for device in self.devices:
            if device.channel is not None and not device.closed:
                device.channel.flush()

    def _close_all(self) -> None:
        for device in self.devices:
            device.on_closed = None
            device.leaving = True
            if device.channel is not None and not device.closed:
                device.channel.close()
