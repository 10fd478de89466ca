"""``netim bench SCENARIO``: run a load against a netim server.

    netim bench p2p --pairs 500 --duration 30
    netim bench group --groups 10 --group-size 100 --rate 2000
    netim bench login --login-rate 2000 --duration 10
    netim bench idle --connections 15000 --duration 60
    netim bench mixed --pairs 200 --groups 5 --login-rate 200

The secret is the server's, taken as ``netim serve`` takes it (``--secret``
or the secret file; the same flags, environment and config file), but
never made when the file is missing. The server's process is found by
its port for CPU and memory figures, or named with ``--server-pid``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from im.config import load_settings

from .config import SCENARIOS, LoadConfig, LoadConfigError

__all__ = ["add_arguments", "run"]

# Flags of the load, each a LoadConfig field.
_FLAGS: dict[str, tuple[type, str]] = {
    "pairs": (int, "p2p: pairs of users messaging each other"),
    "groups": (int, "group: how many groups"),
    "group_size": (int, "group: members per group"),
    "senders": (int, "group: members of each group that send"),
    "rate": (float, "messages/s offered in all (0: closed loop)"),
    "window": (int, "closed loop: messages in flight per sender"),
    "size": (int, "message content in bytes"),
    "duration": (float, "seconds measured"),
    "warmup": (float, "seconds before measuring"),
    "drain": (
        float,
        "at most this many seconds to wait for the last acks and pushes"
        f" (default: {LoadConfig.drain:g}; a drain ends as soon as"
        " nothing more comes)",
    ),
    "login_rate": (float, "connects and logins per second"),
    "connections": (int, "idle: connections held"),
    "sample": (int, "time one push in N (fan-out at high rates)"),
    "max_in_flight": (int, "unacked messages per sender before it waits"),
    "workers": (int, "load processes (0: as the connections need)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7700)
    for name, (kind, text) in _FLAGS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, type=kind, help=text)
    parser.add_argument(
        "--probe",
        action="store_true",
        help="add a pair at 10 msg/s each whose latency is shown apart",
    )
    parser.add_argument("--secret", help="the server's secret, as hex")
    parser.add_argument("--secret-file", dest="secret_file", type=Path)
    parser.add_argument("--config", type=Path, help="the server's TOML")
    parser.add_argument("--server-pid", type=int, help="server process id")
    parser.add_argument(
        "--cpus", help="pin the load processes to these CPUs (1 or 0,1)"
    )
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--markdown", type=Path, help="and as Markdown")
    parser.add_argument("--chart", type=Path, help="and a PNG chart")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar"
    )


def _secret(args: argparse.Namespace) -> bytes:
    """The server's secret, read, never made: a load signs its tokens
    with what the server checks them against, and a new random secret
    (``netim serve`` makes one when its file is missing) would only get
    every login refused."""
    from im.cli import resolve_secret

    settings = load_settings(
        {"secret": args.secret, "secret_file": args.secret_file},
        args.config,
    )
    path = settings.secret_file
    try:
        return resolve_secret(settings, create=False)
    except FileNotFoundError:
        raise LoadConfigError(
            f"no secret: {path} does not exist (run from the directory"
            " where the server runs, whose secret file it is, or pass"
            " --secret or --secret-file)"
        ) from None
    except (OSError, ValueError) as exc:  # unreadable, or not hex
        raise LoadConfigError(f"secret file {path}: {exc}") from None


def config_from(args: argparse.Namespace) -> LoadConfig:
    values: dict[str, Any] = {
        name: getattr(args, name)
        for name in _FLAGS
        if getattr(args, name) is not None
    }
    return LoadConfig(
        scenario=args.scenario,
        host=args.host,
        port=args.port,
        secret=_secret(args),
        probe=args.probe,
        **values,
    )


def parse_cpus(text: str | None) -> set[int] | None:
    if not text:
        return None
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def run(args: argparse.Namespace) -> int:
    from .report import print_result, save_chart, save_json, to_markdown
    from .runner import RunError, run_load

    try:
        config = config_from(args)
        cpus = parse_cpus(args.cpus)
    except (LoadConfigError, ValueError) as exc:
        print(f"netim bench: {exc}", file=sys.stderr)
        return 2
    if args.chart and importlib.util.find_spec("matplotlib") is None:
        print(
            "netim bench: --chart needs matplotlib: "
            "pip install -e '.[bench]' in the checkout (or pip install "
            "matplotlib)",
            file=sys.stderr,
        )
        return 2
    try:
        result = _with_progress(config, args, cpus, run_load)
    except (RunError, OSError) as exc:
        print(f"netim bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netim bench: interrupted", file=sys.stderr)
        return 130
    print_result(result)
    if args.json:
        save_json(result, args.json)
    if args.markdown:
        args.markdown.write_text(to_markdown(result))
    if args.chart:
        save_chart(result, args.chart)
    return 0 if result.integrity.get("ok") else 3


def _with_progress(
    config: LoadConfig,
    args: argparse.Namespace,
    cpus: set[int] | None,
    run_load: Any,
) -> Any:
    if args.no_progress or not sys.stderr.isatty():
        return run_load(config, server_pid=args.server_pid, cpus=cpus)
    from rich.progress import BarColumn, Progress, TimeElapsedColumn

    columns = (
        "{task.description}",
        BarColumn(),
        TimeElapsedColumn(),
        "{task.fields[rates]}",
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(config.scenario, total=1.0, rates="setting up")

        def progress(done: float, totals: dict[str, float]) -> None:
            rates = ", ".join(
                f"{key} {value:,.0f}"
                for key, value in totals.items()
                if value and key != "errors"
            )
            if totals.get("errors"):
                rates += f", errors {totals['errors']:,.0f}"
            bar.update(task, completed=done, rates=rates)

        return run_load(
            config, server_pid=args.server_pid, cpus=cpus, progress=progress
        )
