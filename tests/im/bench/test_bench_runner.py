"""The runner's verdict on what limited a run, and what it times."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from im.bench.recorder import Recorder
from im.bench.runner import _bottleneck


def result(
    server: float | None,
    load: float,
    rate: float = 0.0,
    scenario="p2p",
    errors: dict[str, int] | None = None,
) -> object:
    return SimpleNamespace(
        scenario=scenario,
        server_cpu_percent=server,
        load_cpu_percent=load,
        load_cpu_capacity=100.0,
        config={"rate": rate},
        errors=errors or {},
    )


@pytest.mark.parametrize(
    ("server", "load", "rate", "verdict"),
    [
        (99, 50, 0, "the server was the bottleneck"),
        (60, 95, 0, "the LOAD GENERATOR was the bottleneck"),
        (95, 95, 0, "both the server and the load generator"),
        (70, 40, 0, "the window (messages in flight per sender) was"),
        (70, 87, 2000, "(server 70 %, load 87 % of its CPU): the offered"),
        (None, 95, 0, "the load generator was saturated; the server"),
    ],
)
def test_the_verdict_names_the_limit(server, load, rate, verdict) -> None:
    assert verdict in _bottleneck(result(server, load, rate))  # type: ignore[arg-type]


@pytest.mark.parametrize("scenario", ["login", "idle"])
def test_logins_have_no_window(scenario) -> None:
    verdict = _bottleneck(result(20, 30, scenario=scenario))  # type: ignore[arg-type]
    assert verdict.endswith("the login rate asked for was the limit")


def test_sends_the_rate_limit_refused_are_named_first() -> None:
    # Few connections sending fast meet the server's limit per
    # connection; the window is not what held them back.
    refused = {"ERROR RATE_LIMITED": 7728, "ERROR SLOW_CONSUMER": 1}
    verdict = _bottleneck(result(70, 40, errors=refused))  # type: ignore[arg-type]
    assert verdict.startswith("the server's rate limit refused 7,728")
    assert "--rate-limit" in verdict
    assert _bottleneck(result(70, 40)).startswith("neither was saturated")  # type: ignore[arg-type]


def test_only_logins_begun_in_the_window_are_timed() -> None:
    recorder = Recorder()
    now = time.monotonic_ns()
    recorder.window_start_ns, recorder.window_end_ns = now, now + 10**9
    recorder.logged_in(now - 1)  # warm-up: counted, not timed
    recorder.logged_in(now + 1)
    assert recorder.logins == 2
    assert recorder.login_histogram.get_total_count() == 1
