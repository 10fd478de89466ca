"""Load runs are bounded and aimed at this machine only."""

from __future__ import annotations

import pytest

from im.bench.config import LoadConfig, LoadConfigError, plan_workers

SECRET = b"s" * 32


def test_only_loopback_addresses_are_targeted():
    for host in ("10.0.0.1", "example.com", "0.0.0.0"):
        with pytest.raises(LoadConfigError, match="host: must be a loopback"):
            LoadConfig(host=host, secret=SECRET)
    LoadConfig(host="127.0.0.5", secret=SECRET)
    LoadConfig(host="::1", secret=SECRET)


@pytest.mark.parametrize(
    ("field", "value"),
    [("duration", 0), ("duration", 4000), ("size", 8), ("group_size", 1)],
)
def test_a_run_out_of_bounds_is_refused(field, value):
    with pytest.raises(LoadConfigError, match=field):
        LoadConfig(secret=SECRET, **{field: value})


def test_the_secret_is_needed():
    with pytest.raises(LoadConfigError, match="secret"):
        LoadConfig()


def test_workers_hold_whole_pairs_and_groups_under_the_file_limit():
    config = LoadConfig(
        scenario="group", groups=30, group_size=1000, secret=SECRET
    )
    plans = plan_workers(config)
    assert len(plans) >= 2  # 30,000 connections: more than one process
    assert sum(len(p.groups) for p in plans) == 30
    assert all(len(g) == 1000 for p in plans for g in p.groups)
    assert len({p.source for p in plans}) == len(plans)
    assert sum(p.share for p in plans) == pytest.approx(config.rate)


def test_users_are_named_after_the_run():
    a = plan_workers(LoadConfig(pairs=1, secret=SECRET, run_id="r1"))
    assert a[0].pairs == (("r1-p0a", "r1-p0b"),)
