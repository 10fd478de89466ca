"""``netim``: the one command of the IM server.

    netim serve [--port 7700] [--store sqlite|memory] [--database netim.db]
    netim token USER [--device D] [--ttl SECONDS]
    netim chat --user alice
    netim bench p2p|group|login|idle|mixed [--duration 10 ...]

Settings come from flags, then ``NETIM_*`` environment variables, then
an optional TOML file (``--config``), then defaults; see ``im.config``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from im.config import ConfigError, Settings, load_settings
from im.infrastructure.tokens import (
    DEFAULT_TTL,
    issue_token,
    load_or_create_secret,
    read_secret,
)

__all__ = ["main", "resolve_secret"]

# Flags of ``serve``, each a Settings field; None when not given, so that
# the environment and the config file are not hidden by flag defaults.
_SERVE_FLAGS: dict[str, tuple[type, str]] = {
    "host": (str, "address to listen on (0.0.0.0: all)"),
    "port": (int, "TCP port (0: any free one)"),
    "store": (str, "sqlite (durable) or memory (NOT DURABLE)"),
    "database": (Path, "SQLite database file"),
    "sqlite_synchronous": (str, "FULL (survives power loss) or NORMAL"),
    "secret": (str, "token secret as hex (default: read --secret-file)"),
    "secret_file": (Path, "file holding the token secret (made if absent)"),
    "heartbeat_interval": (int, "seconds between client pings"),
    "idle_timeout": (int, "seconds of silence before a close"),
    "login_timeout": (float, "seconds a connection has to log in"),
    "duplicate_login": (str, "kick-old or refuse-new"),
    "rate_limit": (float, "requests per second per connection"),
    "rate_burst": (int, "requests allowed in a burst"),
    "slow_consumer_timeout": (float, "seconds unwritable before a kick"),
    "drain_timeout": (float, "seconds shutdown lets output drain"),
    "log_level": (str, "DEBUG, INFO, WARNING or ERROR"),
}


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="TOML file of settings (see im.config)"
    )


def _settings(args: argparse.Namespace, names: list[str]) -> Settings:
    flags = {name: getattr(args, name, None) for name in names}
    return load_settings(flags, args.config)


def resolve_secret(settings: Settings, *, create: bool = True) -> bytes:
    """The token secret: ``secret`` if set, else the secret file's,
    made if missing unless ``create`` is false (then FileNotFoundError:
    a client must sign with the server's secret, not a new one)."""
    if settings.secret:
        return bytes.fromhex(settings.secret)
    if not create:
        return read_secret(settings.secret_file)
    return load_or_create_secret(settings.secret_file)


# -- serve --------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from im.infrastructure import StoreOpenError
    from im.server import ImServer

    settings = _settings(args, list(_SERVE_FLAGS))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        server = ImServer(settings)
    except StoreOpenError as exc:
        # Another server on the same file, or a file that is not ours:
        # the message says which, and a traceback would add nothing.
        print(f"netim: cannot open the store: {exc}", file=sys.stderr)
        return 1
    try:
        host, port = server.listen()
    except OSError as exc:
        print(
            f"netim: cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror}",
            file=sys.stderr,
        )
        server.stores.close()
        return 1
    logging.getLogger("im.server").info(
        "netim serving on %s:%d; store: %s",
        host,
        port,
        server.stores.description,
    )
    # Scripts and tests wait for this exact line on stdout.
    print(f"listening on {host}:{port}", flush=True)
    server.run()
    return 0


# -- token --------------------------------------------------------------------


def _token(args: argparse.Namespace) -> int:
    settings = _settings(args, ["secret", "secret_file"])
    try:
        token = issue_token(
            resolve_secret(settings), args.user, args.device, args.ttl
        )
    except ValueError as exc:
        print(f"netim token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


# -- the parser ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netim", description="netim instant-messaging server"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    defaults = Settings()
    for name, (kind, text) in _SERVE_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        # The flag's own default stays None (see _SERVE_FLAGS); the help
        # shows what applies when nothing else sets it.
        default = getattr(defaults, name)
        shown = f"{text} (default: {default})" if default != "" else text
        serve.add_argument(flag, dest=name, type=kind, help=shown)
    _add_config_flag(serve)
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="issue a login token")
    token.add_argument("user")
    token.add_argument("--device", help="bind the token to one device id")
    token.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TTL,
        help="seconds it is valid (default: %(default)s)",
    )
    token.add_argument("--secret", help="secret as hex")
    token.add_argument("--secret-file", dest="secret_file", type=Path)
    _add_config_flag(token)
    token.set_defaults(run=_token)

    bench = commands.add_parser("bench", help="load-test a server")
    from im.bench import cli as bench_cli

    bench_cli.add_arguments(bench)
    bench.set_defaults(run=bench_cli.run)

    chat = commands.add_parser("chat", help="interactive chat client")
    from im.client import chat as chat_client

    chat_client.add_arguments(chat)
    chat.set_defaults(run=chat_client.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Any = args.run
    try:
        return int(run(args))
    except ConfigError as exc:
        print(f"netim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
