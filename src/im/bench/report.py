"""A load result for people: a table, Markdown, JSON and a chart."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .runner import LatencySummary, LoadResult

__all__ = ["print_result", "save_chart", "save_json", "to_markdown"]


def _ms(us: float) -> str:
    return f"{us / 1000:,.2f}"


def _latency_rows(result: LoadResult) -> list[tuple[str, LatencySummary]]:
    rows = [
        ("send -> server ack", result.ack),
        ("send -> recipient push", result.push),
        ("probe: send -> push", result.probe),
        ("connect -> logged in", result.login),
    ]
    return [(name, s) for name, s in rows if s.count]


def _facts(result: LoadResult) -> list[tuple[str, str]]:
    facts = [
        ("scenario", _describe(result)),
        ("load", f"{result.workers} processes, {result.devices:,} devices"),
        ("measured", f"{result.window_s:g} s"),
    ]
    rates = [
        ("sent", result.sent_per_s),
        ("acked", result.acked_per_s),
        ("delivered", result.delivered_per_s),
        ("logins", result.logins_per_s),
    ]
    facts += [
        (f"{name} / s", f"{value:,.0f}") for name, value in rates if value
    ]
    if result.server_cpu_percent is not None:
        facts.append(("server CPU", f"{result.server_cpu_percent:.0f} %"))
    if result.server_rss_max_mib is not None:
        facts.append(
            ("server RSS max", f"{result.server_rss_max_mib:,.1f} MiB")
        )
    if result.rss_per_connection_bytes is not None:
        facts.append(
            (
                "server RSS / connection",
                f"{result.rss_per_connection_bytes:,.0f} bytes",
            )
        )
    facts.append(
        (
            "load generator CPU",
            f"{result.load_cpu_percent:.0f} % of "
            f"{result.load_cpu_capacity:.0f} %",
        )
    )
    integrity = result.integrity
    verdict = "OK" if integrity.get("ok") else "FAILED"
    if not integrity.get("settled", True):
        # The counts below are then an upper bound on what was lost.
        verdict += (
            " (the drain ran out with answers still coming: what is"
            " missing may be late, not lost; try a longer --drain)"
        )
    facts.append(
        (
            "integrity",
            f"{verdict}: {integrity.get('acknowledged', 0):,} acked, "
            f"{integrity.get('missing', 0):,} missing, "
            f"{integrity.get('duplicates', 0):,} duplicated, "
            f"{integrity.get('out_of_order', 0):,} out of order",
        )
    )
    if result.errors:
        top = sorted(result.errors.items(), key=lambda kv: -kv[1])[:5]
        facts.append(("errors", "; ".join(f"{k}: {v:,}" for k, v in top)))
    if result.disconnects:
        facts.append(("disconnects", f"{result.disconnects:,}"))
    facts.append(("bottleneck", result.bottleneck))
    return facts


def _describe(result: LoadResult) -> str:
    c = result.config
    loop = (
        f"open loop, {c['rate']:,.0f} msg/s"
        if c["rate"]
        else (f"closed loop, window {c['window']}")
    )
    if result.scenario == "p2p":
        return f"p2p, {c['pairs']} pairs, {loop}, {c['size']} B"
    if result.scenario == "group":
        return (
            f"group fan-out, {c['groups']} x {c['group_size']} members, "
            f"{c['senders']} sender(s) each, {loop}, {c['size']} B"
        )
    if result.scenario == "login":
        return f"login storm, {c['login_rate']:,.0f} / s"
    if result.scenario == "idle":
        return f"idle, {c['connections']:,} connections"
    return (
        f"mixed: {c['pairs']} pairs, {c['groups']} x {c['group_size']} "
        f"groups, logins at {c['login_rate']:,.0f} / s, {loop}"
    )


def print_result(result: LoadResult, console: Console | None = None) -> None:
    console = console or Console()
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold")
    facts.add_column()
    for name, value in _facts(result):
        facts.add_row(name, value)
    console.print(facts)
    latencies = _latency_rows(result)
    if latencies:
        table = Table(title="latency, ms")
        table.add_column("")
        for column in ("count", "p50", "p90", "p99", "p99.9", "max"):
            table.add_column(column, justify="right")
        for name, s in latencies:
            table.add_row(
                name, f"{s.count:,}", _ms(s.p50_us), _ms(s.p90_us),
                _ms(s.p99_us), _ms(s.p999_us), _ms(s.max_us),
            )  # fmt: skip
        console.print(table)
    for example in result.integrity.get("examples", []):
        console.print(f"[red]integrity:[/red] {example}")


def to_markdown(result: LoadResult) -> str:
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in _facts(result)]
    latencies = _latency_rows(result)
    if latencies:
        lines += [
            "",
            "| latency, ms | count | p50 | p90 | p99 | p99.9 | max |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, s in latencies:
            lines.append(
                f"| {name} | {s.count:,} | {_ms(s.p50_us)} | "
                f"{_ms(s.p90_us)} | {_ms(s.p99_us)} | {_ms(s.p999_us)} | "
                f"{_ms(s.max_us)} |"
            )
    return "\n".join(lines) + "\n"


def save_json(result: LoadResult, path: Path) -> None:
    path.write_text(json.dumps(result.as_dict(), indent=1) + "\n")


def save_chart(result: LoadResult, path: Path) -> None:
    """Throughput and latency percentiles over the run, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    timeline: list[dict[str, Any]] = result.timeline
    seconds = [row["t"] for row in timeline]
    figure, (rates, latency) = pyplot.subplots(
        2, 1, sharex=True, figsize=(9, 6)
    )
    for key, label in (("delivered", "delivered"), ("acks", "acked")):
        rates.plot(seconds, [row[key] for row in timeline], label=label)
    rates.set_ylabel("per second")
    rates.legend()
    rates.set_title(_describe(result))
    for key, label in (
        ("ack_p50_us", "ack p50"),
        ("ack_p99_us", "ack p99"),
        ("push_p50_us", "push p50"),
        ("push_p99_us", "push p99"),
    ):
        # A second with no timed message (the warm-up) is a gap, not 0.
        values = [row[key] / 1000 or math.nan for row in timeline]
        latency.plot(seconds, values, label=label)
    latency.set_ylabel("ms")
    latency.set_xlabel("seconds since start (warm-up included)")
    latency.legend()
    warmup = result.config["warmup"]
    for axis in (rates, latency):
        axis.axvspan(0, warmup, color="grey", alpha=0.15)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
