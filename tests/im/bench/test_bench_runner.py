"""The runner's verdict on what limited a run, and what it times."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from im.bench.device import error_key
from im.bench.recorder import Recorder
from im.bench.runner import _bottleneck
from im.protocol import ErrorCode


def result(
    server: float | None,
    load: float,
    rate: float = 0.0,
    scenario="p2p",
    errors: dict[str, int] | None = None,
) -> object:
    return SimpleNamespace(
        scenario=scenario,
        sent_per_s=1000.0,
        window_s=10.0,
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


def test_requests_the_rate_limit_refused_are_the_limit_named() -> None:
    # Few connections sending fast meet the server's limit per
    # connection; the window is not what held them back.
    refused = {error_key(ErrorCode.RATE_LIMITED): 7728}
    verdict = _bottleneck(result(70, 40, errors=refused))  # type: ignore[arg-type]
    assert "the server's rate limit refused 7,728 requests" in verdict
    assert "--rate-limit" in verdict and "the window" not in verdict
    busy = _bottleneck(result(99, 40, errors=refused))  # type: ignore[arg-type]
    assert busy.startswith("the server was the bottleneck")
    assert "rate limit refused 7,728" in busy
    # A handful (under 1 % of the 10,000 sent) is not what set the pace.
    few = _bottleneck(result(70, 40, errors={refused.popitem()[0]: 50}))  # type: ignore[arg-type]
    assert "rate limit" not in few and "the window" in few


def test_error_codes_are_reported_by_name() -> None:
    assert error_key(3001) == "ERROR RATE_LIMITED"
    assert error_key(65000) == "ERROR 65000"  # one this client does not know


def test_only_logins_begun_in_the_window_are_timed() -> None:
    recorder = Recorder()
    now = time.monotonic_ns()
    recorder.window_start_ns, recorder.window_end_ns = now, now + 10**9
    recorder.logged_in(now - 1)  # warm-up: counted, not timed
    recorder.logged_in(now + 1)
    assert recorder.logins == 2
    assert recorder.login_histogram.get_total_count() == 1
