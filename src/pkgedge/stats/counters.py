"""Counters in one anonymous shared memory map, one row per worker.

The map is created by the parent before it forks, so every worker writes its own row and any
worker can sum all rows for ``/stats``. Each counter is declared once, with a one-line doc.
"""

from __future__ import annotations

import mmap
from typing import Any

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
    "memory_objects": "objects in the memory tier (gauge)",
    "memory_bytes": "bytes in the memory tier (gauge)",
}
_NAMES = list(COUNTERS)
_INDEX = {name: i for i, name in enumerate(_NAMES)}


class Counters:
    """A table of int64 counters: ``rows`` workers x ``len(COUNTERS)`` columns."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._map = mmap.mmap(-1, 8 * len(_NAMES) * rows)
        self._all = memoryview(self._map).cast("q")
        self.row = 0

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
    for name, value in {**values, **(extra or {})}.items():
        doc = COUNTERS.get(name, name.replace("_", " ") + " (gauge)")
        kind = "gauge" if doc.endswith("(gauge)") else "counter"
        metric = f"pkgedge_{name}" + ("_total" if kind == "counter" else "")
        lines.append(f"# HELP {metric} {doc}")
        lines.append(f"# TYPE {metric} {kind}")
        lines.append(f"{metric} {value}")
    return "\n".join(lines) + "\n"
