"""Counters in one anonymous shared memory map, one row per worker.

The map is created by the parent before it forks, so every worker writes its own row and any
worker can sum all rows for ``/stats``. Each counter is declared once, with a one-line doc.
"""

from __future__ import annotations

import mmap
from typing import Any

from pkgedge.stats.live import Ring

#: name → one-line doc. Gauges are marked by a trailing " (gauge)".
COUNTERS: dict[str, str] = {
    "requests": "client requests received",
    "hits": "requests answered from cache without contacting the origin",
    "misses": "requests for objects not in cache (or needing a new fetch)",
    "stale": "requests answered with a stale object (stale-while-revalidate, stale-if-error)",
    "passes": "requests forwarded to the origin without caching",
    "revalidations": "conditional requests sent to the origin for stored objects",
    "not_modified": "revalidations answered 304 by the origin (object refreshed)",
    "collapsed": "requests that joined another request's origin fetch",
    "origin_fetches": "requests sent to the origin",
    "origin_errors": "origin fetches that failed (connect, timeout, 5xx)",
    "bytes_to_clients": "bytes of responses written to clients (heads and bodies)",
    "bytes_from_origin": "body bytes received from the origin",
    "purges": "objects purged",
    "client_errors": "requests answered 4xx by the edge itself",
    "connections": "client connections accepted",
    "connections_refused": "connections closed at once: over a connection cap",
    "denied": "requests refused by the deny list (403)",
    "rate_limited": "requests refused by a rate limit or the penalty box (429)",
    "penalized": "clients put in the penalty box by a behaviour signal",
    "signals": "behaviour signals raised (first crossing per window)",
    "observed": "refusals not enforced because protection is in observe mode",
    "origin_busy": "misses answered stale or 503 because the origin fetch cap was reached",
    "timeouts": "connections ended by a deadline (head, body, slow reader)",
    "rules_errors": "requests answered 503 because a rule failed at run time",
    "restarts": "requests the rules restarted (restart, maybe on another backend)",
    "peer_fetches": "origin fetches asked of the peer that owns the object (--peers)",
    "peer_failures": "peers found unreachable (their objects fetched directly)",
    "memory_objects": "objects in the memory tier (gauge)",
    "memory_bytes": "bytes in the memory tier (gauge)",
    # issue 9: live stats (see pkgedge.stats.live)
    "status_1xx": "responses with a 1xx status",
    "status_2xx": "responses with a 2xx status (the fast path's hits: added once a second)",
    "status_3xx": "responses with a 3xx status",
    "status_4xx": "responses with a 4xx status",
    "status_5xx": "responses with a 5xx status",
    "synthetic": "responses built by the edge itself (refusals, errors)",
    "bytes_from_cache": "bytes written to clients from the cache or another request's fetch"
    " (hits, stale, revalidated, collapsed): what the origin did not send (the fast path's:"
    " added once a second)",
    "origin_latency_us": "sum of origin fetch latencies (request sent to response head), in µs",
}
#: Upper bounds (seconds) of the origin fetch latency histogram's buckets (the last: +Inf).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"),
)  # fmt: skip
#: Column name of each latency bucket (non-cumulative counts; Prometheus gets cumulative).
LATENCY_NAMES: tuple[str, ...] = tuple(f"origin_latency_b{i}" for i in range(len(LATENCY_BUCKETS)))
for _i, _le in enumerate(LATENCY_BUCKETS):
    COUNTERS[LATENCY_NAMES[_i]] = f"origin fetches whose latency is at most {_le} s (bucket)"

_NAMES = list(COUNTERS)
_INDEX = {name: i for i, name in enumerate(_NAMES)}
_LAT0 = _INDEX[LATENCY_NAMES[0]]
_LAT_SUM = _INDEX["origin_latency_us"]
_STATUS0 = _INDEX["status_1xx"]
_SYNTHETIC = frozenset({"refused", "error"})


class Counters:
    """A table of int64 counters: ``rows`` workers x ``len(COUNTERS)`` columns."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._map = mmap.mmap(-1, 8 * len(_NAMES) * rows)
        self._all = memoryview(self._map).cast("q")
        self.row = 0
        #: per-second samples of every row, for the live view (sampled by each worker's tick)
        self.ring = Ring(rows, len(_NAMES))

    def bind(self, row: int) -> None:
        """Use ``row`` for this process's increments (call in the worker after fork)."""
        self.row = row

    def add(self, name: str, n: int = 1) -> None:
        self._all[self.row * len(_NAMES) + _INDEX[name]] += n

    def set(self, name: str, value: int) -> None:
        self._all[self.row * len(_NAMES) + _INDEX[name]] = value

    def index(self, name: str) -> int:
        """Absolute slot of ``name`` in this row, for hot paths that bump it directly."""
        return self.row * len(_NAMES) + _INDEX[name]

    @property
    def slots(self) -> Any:
        return self._all

    @staticmethod
    def names() -> list[str]:
        """Column names, in the order of a row (and of a ring sample)."""
        return list(_NAMES)

    def row_view(self, row: int) -> memoryview:
        width = len(_NAMES)
        return self._all[row * width : (row + 1) * width]

    def sample(self, second: int) -> None:
        """Record this worker's row as it stands at the end of ``second`` (once a second)."""
        self.ring.put(self.row, second, self.row_view(self.row))

    def observe_latency(self, seconds: float) -> None:
        """One origin fetch took ``seconds`` from request to response head."""
        base = self.row * len(_NAMES)
        i = 0
        while seconds > LATENCY_BUCKETS[i]:
            i += 1
        self._all[base + _LAT0 + i] += 1
        self._all[base + _LAT_SUM] += int(seconds * 1e6)

    def response(self, status: int, cache_status: str, sent: int) -> None:
        """Count a response of the pipeline's log phase: its status class (1xx..5xx),
        whether the edge built it itself (a refusal or an error), and its bytes when they came
        from the cache or another request's fetch (Cache-Status hit, fwd=stale, collapsed)."""
        base = self.row * len(_NAMES)
        k = status // 100
        if 1 <= k <= 5:
            self._all[base + _STATUS0 + k - 1] += 1
        if cache_status in _SYNTHETIC:
            self._all[base + _INDEX["synthetic"]] += 1
        elif "; hit" in cache_status or "fwd=stale" in cache_status or "collapsed" in cache_status:
            self._all[base + _INDEX["bytes_from_cache"]] += sent

    def snapshot(self) -> dict[str, int]:
        width = len(_NAMES)
        return {
            name: sum(self._all[r * width + i] for r in range(self.rows))
            for i, name in enumerate(_NAMES)
        }

    def clear_row(self, row: int) -> None:
        """Reset a dead worker's gauges (its counters stay: they are history)."""
        width = len(_NAMES)
        for name, doc in COUNTERS.items():
            if doc.endswith("(gauge)"):
                self._all[row * width + _INDEX[name]] = 0

    def __repr__(self) -> str:
        snap = self.snapshot()
        return f"<Counters rows={self.rows} requests={snap['requests']} hits={snap['hits']}>"


def prometheus(values: dict[str, int], extra: dict[str, int] | None = None) -> str:
    lines = []
    values = dict(values)
    buckets = [values.pop(n, 0) for n in LATENCY_NAMES]
    total_us = values.pop("origin_latency_us", 0)
    for name, value in {**values, **(extra or {})}.items():
        doc = COUNTERS.get(name, name.replace("_", " ") + " (gauge)")
        kind = "gauge" if doc.endswith("(gauge)") else "counter"
        metric = f"pkgedge_{name}" + ("_total" if kind == "counter" else "")
        lines.append(f"# HELP {metric} {doc}")
        lines.append(f"# TYPE {metric} {kind}")
        lines.append(f"{metric} {value}")
    metric = "pkgedge_origin_fetch_seconds"
    lines.append(f"# HELP {metric} origin fetch latency: request sent to response head")
    lines.append(f"# TYPE {metric} histogram")
    running = 0
    for le, n in zip(LATENCY_BUCKETS, buckets, strict=True):
        running += n
        lines.append(f'{metric}_bucket{{le="{"+Inf" if le == float("inf") else le}"}} {running}')
    lines.append(f"{metric}_sum {total_us / 1e6}")
    lines.append(f"{metric}_count {running}")
    return "\n".join(lines) + "\n"
