"""The terminal view of ``pkgedge stats``: tables (rich) made from ``/stats/live``'s JSON."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from pkgedge.stats.report import PROTECTION

_ROWS: tuple[tuple[str, str], ...] = (
    ("requests", "requests"),
    ("hits", "hits"),
    ("misses", "misses"),
    ("passes", "passes"),
    ("stale", "stale"),
    ("synthetic", "synthetic"),
    ("collapsed", "collapsed"),
    ("status_2xx", "2xx"),
    ("status_3xx", "3xx"),
    ("status_4xx", "4xx"),
    ("status_5xx", "5xx"),
    ("bytes_to_clients", "bytes to clients"),
    ("bytes_from_origin", "bytes from origin"),
    ("bytes_from_cache", "bytes from cache"),
    ("origin_fetches", "origin fetches"),
    ("origin_errors", "origin errors"),
    ("purges", "purges"),
)
_BARS = " ▁▂▃▄▅▆▇█"


def human(n: float, unit: str = "") -> str:
    for prefix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000 or prefix == "T":
            text = f"{n:.0f}" if prefix == "" else f"{n:.1f}"
            return f"{text} {prefix}{unit}".strip()
        n /= 1000
    return str(n)  # pragma: no cover


def spark(values: Sequence[int], width: int = 60) -> str:
    values = list(values)[-width:]
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(_BARS[min(8, round(v / top * 8))] for v in values)


def _fmt(name: str, v: float) -> str:
    return human(v, "B") if name.startswith("bytes") else human(v)


def render(data: Mapping[str, Any]) -> Group:
    series: Mapping[str, list[int]] = data["series"]
    counts = Table(title=f"pkgedge edge: {data['workers']} worker(s)", title_justify="left")
    counts.add_column("")
    for col in ("last s", "last min", "10 min", "since start"):
        counts.add_column(col, justify="right")
    for name, label in _ROWS:
        v = series[name]
        counts.add_row(
            label,
            _fmt(name, v[-2] if len(v) > 1 else 0),
            _fmt(name, sum(v[-61:-1])),
            _fmt(name, sum(v)),
            _fmt(name, data["since_start"][name]),
        )
    totals = data["totals"]
    ratio = totals["hits"] / totals["requests"] if totals["requests"] else 0.0
    lat = data["latency_window_ms"]

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f} ms"

    more = Table(show_header=False, box=None)
    more.add_column()
    more.add_column()
    more.add_row("req/s (10 min)", spark(series["requests"]))
    more.add_row("hit ratio (10 min)", f"{ratio:.1%}")
    more.add_row(
        "origin latency (10 min)",
        f"p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  ({lat['count']})",
    )
    s = data["savings_since_start"]
    more.add_row(
        "saved since start",
        f"{human(s['origin_requests_avoided'])} origin requests, "
        f"{human(s['origin_bytes_avoided'], 'B')}, {s['egress_saved']:.4f} egress, "
        f"{human(s['energy_saved_joules'], 'J')}",
    )
    refused = ", ".join(
        f"{PROTECTION[n]}: {data['since_start'][n]}" for n in PROTECTION if data["since_start"][n]
    )
    more.add_row("protection since start", refused or "nothing refused")
    return Group(counts, more)


def show(fetch: Callable[[], Mapping[str, Any]], *, watch: bool, interval: float = 1.0) -> None:
    """Print the view once, or keep it live (``watch``) until interrupted."""
    console = Console()
    if not watch:
        console.print(render(fetch()))
        return
    import time

    from rich.live import Live

    with Live(render(fetch()), console=console, refresh_per_second=4, screen=False) as live:
        while True:
            time.sleep(interval)
            live.update(render(fetch()))


def downloads_table(data: Mapping[str, Any]) -> None:
    """Print ``/stats/downloads/NAME``'s answer: per day (a bar each), then totals per
    category when split."""
    console = Console()
    title = f"{data['package']}: {data['total']} download(s) in {data['days']} day(s)"
    days = Table(title=title, title_justify="left")
    days.add_column("date")
    days.add_column("downloads", justify="right")
    days.add_column("")
    top = max((d["downloads"] for d in data["per_day"]), default=0)
    for d in data["per_day"]:
        bar = "█" * max(1, round(d["downloads"] / top * 40)) if top else ""
        days.add_row(d["date"], str(d["downloads"]), bar)
    console.print(days)
    if data.get("by"):
        split = Table(title=f"by {data['by']}", title_justify="left")
        split.add_column(data["by"])
        split.add_column("downloads", justify="right")
        for category, n in data["totals"].items():
            split.add_row(category or "(not said)", str(n))
        console.print(split)
