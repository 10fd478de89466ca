"""``netim bench`` against a real server: each scenario, briefly.

The runs are tiny (a second or so); they check that the load generator
drives a server for real and that its integrity check and figures come
out of it, not how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from im_process import SECRET, ImServer, child_env

BRIEF = ["--duration", "1", "--warmup", "0.3", "--drain", "3"]


@pytest.fixture
def server(tmp_path: Path):
    server = ImServer(tmp_path, ["--store", "memory"])
    yield server.start()
    server.close()


def bench(server: ImServer, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "result.json"
    command = [
        sys.executable, "-m", "im.cli", "bench", *args,
        "--port", str(server.port), "--secret", SECRET.hex(),
        "--no-progress", "--json", str(out), *BRIEF,
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_env(), timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["integrity"]["ok"], result["integrity"]
    assert "bottleneck" in done.stdout
    return result


def test_p2p_every_message_acked_and_delivered_once(server, tmp_path):
    chart = tmp_path / "chart.png"
    result = bench(
        server, tmp_path, "p2p", "--pairs", "3", "--chart", str(chart)
    )
    assert result["acked_per_s"] > 0
    assert result["push"]["count"] > 0
    assert result["integrity"]["acknowledged"] > 0
    assert result["server_cpu_percent"] is not None
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_group_fan_out_reaches_every_member(server, tmp_path):
    result = bench(
        server, tmp_path, "group", "--groups", "2", "--group-size", "5",
        "--rate", "200",
    )  # fmt: skip
    # Each message reaches the four members that did not send it.
    assert result["delivered_per_s"] == pytest.approx(
        4 * result["acked_per_s"], rel=0.2
    )


def test_login_storm_and_idle_connections(server, tmp_path):
    logins = bench(server, tmp_path, "login", "--login-rate", "50")
    assert logins["login"]["count"] >= 30
    idle = bench(server, tmp_path, "idle", "--connections", "50")
    assert idle["devices"] == 50
    assert idle["rss_per_connection_bytes"] is not None


def test_a_remote_target_is_refused(server, tmp_path):
    command = [
        sys.executable, "-m", "im.cli", "bench", "p2p",
        "--host", "192.0.2.1", "--secret", SECRET.hex(),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert done.returncode == 2
    assert "loopback" in done.stderr


def test_a_wrong_secret_fails_at_once_and_says_why(server, tmp_path):
    # Every login is refused; the run must not wait out its setup time.
    command = [
        sys.executable, "-m", "im.cli", "bench", "p2p", "--pairs", "2",
        "--port", str(server.port), "--secret", "00ff", "--no-progress",
        *BRIEF,
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert done.returncode != 0
    assert "refused the login" in done.stdout + done.stderr
    assert "--secret" in done.stdout + done.stderr


def test_no_secret_file_fails_and_makes_none(server, tmp_path):
    # Run where no server ever ran: a secret made up here could only
    # get every login refused, so none is made.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [
        sys.executable, "-m", "im.cli", "bench", "p2p", "--pairs", "2",
        "--port", str(server.port), "--no-progress", *BRIEF,
    ]  # fmt: skip
    env = {k: v for k, v in child_env().items() if not k.startswith("NETIM_")}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=60,
        cwd=elsewhere,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no secret: netim.secret does not exist" in done.stderr
    assert "--secret" in done.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_secret_file_that_is_not_hex_is_named(tmp_path):
    bad = tmp_path / "bad.secret"
    bad.write_text("not hex\n")
    command = [
        sys.executable, "-m", "im.cli", "bench", "p2p", "--pairs", "2",
        "--secret-file", str(bad), "--no-progress", *BRIEF,
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, env=child_env(), timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"secret file {bad}: non-hexadecimal" in done.stderr
