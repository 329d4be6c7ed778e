"""What ``/stats/live``, the event stream and the dashboard show: the live window merged over
the workers, with latency percentiles and savings, and the rollups of the last hours/days."""

from __future__ import annotations

import time
from typing import Any

from pkgedge.stats.counters import COUNTERS, LATENCY_BUCKETS, LATENCY_NAMES, Counters
from pkgedge.stats.live import quantile, window
from pkgedge.stats.rollup import Rollups
from pkgedge.stats.savings import ASSUMPTIONS, SavingsModel, savings

#: The series the live view reports per second (gauges and histogram buckets apart).
SERIES: tuple[str, ...] = (
    "requests",
    "hits",
    "misses",
    "passes",
    "stale",
    "synthetic",
    "collapsed",
    "status_1xx",
    "status_2xx",
    "status_3xx",
    "status_4xx",
    "status_5xx",
    "bytes_to_clients",
    "bytes_from_origin",
    "bytes_from_cache",
    "origin_fetches",
    "origin_errors",
    "revalidations",
    "purges",
)
#: Protection's refusals and actions, by reason.
PROTECTION: dict[str, str] = {
    "denied": "deny list (403)",
    "rate_limited": "rate limit or penalty box (429)",
    "penalized": "put in the penalty box",
    "signals": "behaviour signals",
    "observed": "refusals observed, not enforced",
    "connections_refused": "over a connection cap",
    "origin_busy": "origin fetch cap reached",
    "timeouts": "deadlines (head, body, slow reader)",
}
GAUGES = [n for n, doc in COUNTERS.items() if doc.endswith("(gauge)")]
_PCTS = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def _pcts(buckets: list[int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, q in _PCTS:
        v = quantile(buckets, LATENCY_BUCKETS, q)
        out[key] = None if v is None else round(v * 1000, 3)  # ms
    return out


def live(counters: Counters, model: SavingsModel, seconds: int = 600) -> dict[str, Any]:
    """The last ``seconds`` seconds, one value per second per series (oldest first)."""
    now = time.time()
    names = counters.names()
    live_rows = [counters.row_view(r).tolist() for r in range(counters.rows)]
    per_second = window(counters.ring, live_rows, now, seconds)
    col = {n: i for i, n in enumerate(names)}
    wanted = (*SERIES, *PROTECTION)
    series = {n: [sec[col[n]] for sec in per_second] for n in wanted}
    lat_cols = [col[n] for n in LATENCY_NAMES]
    latency_series: dict[str, list[float | None]] = {k: [] for k, _ in _PCTS}
    window_buckets = [0] * len(lat_cols)
    for sec in per_second:
        b = [sec[i] for i in lat_cols]
        for k, v in _pcts(b).items():
            latency_series[k].append(v)
        window_buckets = [a + x for a, x in zip(window_buckets, b, strict=True)]
    totals = {n: sum(v) for n, v in series.items()}
    cumulative = {n: sum(r[col[n]] for r in live_rows) for n in names}
    return {
        "now": int(now),
        "seconds": len(per_second),
        "workers": counters.rows,
        "series": series,
        "latency_ms": latency_series,
        "totals": totals,
        "latency_window_ms": {**_pcts(window_buckets), "count": sum(window_buckets)},
        "savings": savings(totals, model),
        "since_start": {n: cumulative[n] for n in (*SERIES, *PROTECTION)},
        "savings_since_start": savings(cumulative, model),
        "gauges": {n: cumulative[n] for n in GAUGES},
        "requests_per_worker": [r[col["requests"]] for r in live_rows],
        "protection_reasons": PROTECTION,
        "assumptions": {**ASSUMPTIONS, "model": model.__dict__},
    }


def tick(counters: Counters, model: SavingsModel) -> dict[str, Any]:
    """One event of the stream: the last complete second, the current one, and the last
    minute's totals, latency and savings."""
    full = live(counters, model, 61)
    last = {n: v[-2] for n, v in full["series"].items()}
    minute = {n: sum(v[:-1]) for n, v in full["series"].items()}
    return {
        "now": full["now"] - 1,
        "second": last,
        "latency_ms": {k: v[-2] for k, v in full["latency_ms"].items()},
        "minute": minute,
        "savings_minute": savings(minute, model),
        "since_start": full["since_start"],
        "savings_since_start": full["savings_since_start"],
        "gauges": full["gauges"],
    }


def history(rollups: Rollups, resolution: str, hours: float, model: SavingsModel) -> dict[str, Any]:
    """Rollups of the last ``hours`` at ``resolution`` (minute/hour), with savings per period."""
    rows = rollups.read(resolution, time.time() - hours * 3600)
    periods = []
    for ts, counts in rows:
        periods.append({"ts": ts, "counts": counts, "savings": savings(counts, model)})
    total: dict[str, int] = {}
    for _, counts in rows:
        for n, v in counts.items():
            total[n] = total.get(n, 0) + v
    return {
        "resolution": resolution,
        "periods": periods,
        "totals": total,
        "savings": savings(total, model),
    }


def per_day(rollups: Rollups, days: int, model: SavingsModel) -> list[dict[str, Any]]:
    """Savings per UTC day from the hourly rollups."""
    out: dict[str, dict[str, int]] = {}
    for ts, counts in rollups.read("hour", time.time() - days * 86400):
        day = time.strftime("%Y-%m-%d", time.gmtime(ts))
        acc = out.setdefault(day, {})
        for n, v in counts.items():
            acc[n] = acc.get(n, 0) + v
    return [{"date": d, **savings(c, model)} for d, c in sorted(out.items())]
