"""How many requests a connection may make: a token bucket per
connection under one policy for the server."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimiter", "RatePolicy"]


class RatePolicy:
    """``rate`` requests a second, bursts up to ``burst``: one per server,
    shared by every connection's ``RateLimiter``."""

    __slots__ = ("burst", "clock", "rate")

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock


class RateLimiter:
    """A token bucket under a ``RatePolicy``. One per connection, two
    floats and the shared policy, no timer."""

    __slots__ = ("_last", "_policy", "_tokens")

    def __init__(self, policy: RatePolicy) -> None:
        self._policy = policy
        self._tokens = float(policy.burst)
        self._last = policy.clock()

    def allow(self) -> bool:
        policy = self._policy
        now = policy.clock()
        tokens = min(
            policy.burst, self._tokens + (now - self._last) * policy.rate
        )
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
