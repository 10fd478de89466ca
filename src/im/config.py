"""The server's settings, and where they come from.

Four sources, the later overriding the earlier, as operators expect:

1. the defaults below, each with the reason for its value;
2. a TOML file (``--config netim.toml``), keys named as the fields;
3. environment variables ``NETIM_<FIELD>`` (``NETIM_PORT=7701``);
4. command-line flags.

Every value is checked once, here, so that a typo stops the server at
start with a message that names the setting, not at the first login.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Settings", "load_settings"]

ENV_PREFIX = "NETIM_"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7700
    # "sqlite" (durable) or "memory" (NOT DURABLE: for tests and
    # benchmarks; everything is lost when the process ends).
    store: str = "sqlite"
    database: Path = Path("netim.db")
    # "FULL": an acknowledged message survives a power loss. "NORMAL"
    # survives a crash of the process (kill -9), not of the machine.
    sqlite_synchronous: str = "FULL"
    # The HMAC secret for login tokens, as hex. Empty: read (or create)
    # ``secret_file``, so that ``netim token`` on the same machine signs
    # with the same key without anyone copying it.
    secret: str = ""
    secret_file: Path = Path("netim.secret")
    # Clients ping this often; the server closes a connection silent for
    # idle_timeout. Three intervals: one lost ping is not a disconnect.
    heartbeat_interval: int = 30
    idle_timeout: int = 90
    # A connection that has not logged in by then is closed: an open
    # socket that never authenticates only holds a descriptor.
    login_timeout: float = 10.0
    # A second login of the same user and device: "kick-old" ends the
    # older session (a phone that reconnects after a network change),
    # "refuse-new" keeps it and fails the new login.
    duplicate_login: str = "kick-old"
    # Requests per second per connection, and the burst allowed above
    # that. Generous for a person; a runaway client gets RATE_LIMITED.
    rate_limit: float = 1000.0
    rate_burst: int = 2000
    # Output queued for one connection: above high, stop pushing to it
    # (it catches up from the store later); back below low, resume.
    high_watermark: int = 256 * 1024
    low_watermark: int = 64 * 1024
    # A device unwritable for this long, or with this much output queued
    # (replies and pages can pass the high watermark), is disconnected
    # with KICKED SLOW_CONSUMER; its messages wait for its next login.
    slow_consumer_timeout: float = 30.0
    max_pending_output: int = 8 * 1024 * 1024
    # Seconds that shutdown lets pending output drain.
    drain_timeout: float = 5.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _check(self)

    @property
    def durable(self) -> bool:
        return self.store == "sqlite"


def _check(s: Settings) -> None:
    def need(ok: bool, name: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"{name}: {why} (got {getattr(s, name)!r})")

    need(0 <= s.port <= 65535, "port", "must be 0..65535")
    need(s.store in ("sqlite", "memory"), "store", "sqlite or memory")
    need(
        s.sqlite_synchronous in ("FULL", "NORMAL"),
        "sqlite_synchronous",
        "FULL or NORMAL",
    )
    need(s.heartbeat_interval > 0, "heartbeat_interval", "must be > 0")
    need(
        s.idle_timeout > s.heartbeat_interval,
        "idle_timeout",
        "must be longer than heartbeat_interval",
    )
    need(s.login_timeout > 0, "login_timeout", "must be > 0")
    need(
        s.duplicate_login in ("kick-old", "refuse-new"),
        "duplicate_login",
        "kick-old or refuse-new",
    )
    need(s.rate_limit > 0, "rate_limit", "must be > 0")
    need(s.rate_burst >= 1, "rate_burst", "must be >= 1")
    need(
        0 < s.low_watermark < s.high_watermark,
        "low_watermark",
        "must be > 0 and below high_watermark",
    )
    need(
        s.max_pending_output > s.high_watermark,
        "max_pending_output",
        "must be above high_watermark",
    )
    need(s.slow_consumer_timeout > 0, "slow_consumer_timeout", "must be > 0")
    need(s.drain_timeout >= 0, "drain_timeout", "must be >= 0")
    if s.secret:
        try:
            bytes.fromhex(s.secret)
        except ValueError:
            raise ConfigError("secret: must be hex") from None


def _convert(name: str, kind: Any, raw: Any) -> Any:
    """``raw`` (text from the environment, or a TOML value) as the
    field's type."""
    try:
        if kind in ("int", int):
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if kind in ("float", float):
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind in ("Path", Path):
            return Path(raw)
        if isinstance(raw, str):
            return raw
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"{name}: expected {kind}, got {raw!r}")


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the TOML file, then the environment, then flags.

    ``flags`` holds only the flags the user gave (None values are
    skipped), so that a flag's default never hides the environment.
    """
    known = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from None
        for key, raw in data.items():
            name = key.replace("-", "_")
            if name not in known:
                raise ConfigError(f"config file {config_file}: unknown {key}")
            values[name] = _convert(name, known[name], raw)
    env = os.environ if environ is None else environ
    for name, kind in known.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _convert(name, kind, raw)
    for name, raw in (flags or {}).items():
        if raw is not None:
            values[name] = _convert(name, known[name], raw)
    try:
        return dataclasses.replace(Settings(), **values)
    except TypeError as exc:  # pragma: no cover - names were checked
        raise ConfigError(str(exc)) from None
