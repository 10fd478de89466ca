"""What one load process counts and times, and how it reports it.

Latencies go into HDR histograms (``hdrh``): fixed memory, percentiles
to three significant digits from 1 us to 10 minutes, and an encoded form
that crosses a pipe in a few hundred bytes and merges exactly in the
runner. Each second of the run gets its own pair of histograms (send ->
ack, send -> push), so the runner can draw percentiles over time and add
up the measured window.

Only messages *sent* inside the measured window are timed: the warm-up's
messages, and the drain's, would blur the steady state.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Final

from hdrh.histogram import HdrHistogram

__all__ = ["LATENCY_RANGE_US", "Recorder", "new_histogram"]

# 1 us .. 10 min, 3 significant digits: about 30 KB per histogram.
LATENCY_RANGE_US: Final = (1, 600_000_000, 3)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(*LATENCY_RANGE_US)


class Recorder:
    """Counters and histograms of one load process (one loop thread)."""

    def __init__(self, sample: int = 1) -> None:
        self.sample = sample
        # Timing starts at the window; before it nothing is recorded.
        self.window_start_ns = 1 << 62
        self.window_end_ns = 1 << 62
        self.sent = 0
        self.acks = 0
        self.delivered = 0
        self.disconnects = 0
        self.in_flight_lost = 0
        self.errors: Counter[str] = Counter()
        # Per conversation: the highest acked seq, and how many acks.
        self.last_acked: dict[str, int] = {}
        self.acked_counts: Counter[str] = Counter()
        self.ack_histogram = new_histogram()
        self.push_histogram = new_histogram()
        self.login_histogram = new_histogram()
        self.logins = 0

    def acked(self, conversation: str, seq: int, sent_ns: int) -> None:
        self.acks += 1
        if seq > self.last_acked.get(conversation, 0):
            self.last_acked[conversation] = seq
        self.acked_counts[conversation] += 1
        if self.window_start_ns <= sent_ns < self.window_end_ns:
            self.ack_histogram.record_value(_us_since(sent_ns))

    def pushed(self, sent_ns: int) -> None:
        """A push arrived of a message sent at ``sent_ns``."""
        if self.window_start_ns <= sent_ns < self.window_end_ns:
            self.push_histogram.record_value(_us_since(sent_ns))

    def logged_in(self, started_ns: int) -> None:
        """A login begun at ``started_ns`` is through (its backlog too);
        timed, like the messages, only if it began in the window."""
        self.logins += 1
        if self.window_start_ns <= started_ns < self.window_end_ns:
            self.login_histogram.record_value(_us_since(started_ns))

    def error(self, what: str) -> None:
        self.errors[what] += 1

    def take_interval(self) -> dict[str, Any]:
        """The counters so far and the histograms of the interval just
        ended (encoded), starting new ones: one report line."""
        line = {
            "sent": self.sent,
            "acks": self.acks,
            "delivered": self.delivered,
            "logins": self.logins,
            "disconnects": self.disconnects,
            "errors": sum(self.errors.values()),
            "ack": _take(self, "ack_histogram"),
            "push": _take(self, "push_histogram"),
            "login": _take(self, "login_histogram"),
        }
        return line


def _take(recorder: Recorder, name: str) -> str | None:
    histogram: HdrHistogram = getattr(recorder, name)
    if histogram.get_total_count() == 0:
        return None
    setattr(recorder, name, new_histogram())
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def _us_since(sent_ns: int) -> int:
    return max((time.monotonic_ns() - sent_ns) // 1000, 1)
