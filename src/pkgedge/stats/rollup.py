"""Rollups of the counters per minute (kept 48 hours) and per hour (kept 90 days), on disk.

One SQLite file, ``CACHE_DIR/stats/rollups.sqlite3`` (WAL), two narrow tables
``minute(ts, name, value)`` and ``hour(ts, name, value)``. One writer at a time: worker 0
once a minute, and the parent once after every worker has stopped (so the last counts of a
run are not lost); any worker reads. A write adds the counters' growth since the last write
(``Ring.written``, in shared memory) to the minute and hour it belongs to
(``ON CONFLICT DO UPDATE SET value = value + excluded.value``), so a restart, which starts
the counters again from zero, adds to what is stored and never replaces it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from pkgedge.sqlite import use_wal
from pkgedge.stats.counters import COUNTERS, Counters

MINUTE_KEEP = 48 * 3600
HOUR_KEEP = 90 * 86400
RESOLUTIONS = {"minute": 60, "hour": 3600}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS minute (ts INTEGER NOT NULL, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (ts, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hour (ts INTEGER NOT NULL, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (ts, name)) WITHOUT ROWID;
"""
#: Counters rolled up: all but gauges.
ROLLED = [n for n, doc in COUNTERS.items() if not doc.endswith("(gauge)")]


def rollup_path(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / "stats" / "rollups.sqlite3"


class Rollups:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10.0)
        use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    def add(self, ts: float, counts: Mapping[str, int]) -> None:
        """Add ``counts`` to the minute and the hour holding ``ts``; drop what is too old."""
        minute, hour = int(ts) // 60 * 60, int(ts) // 3600 * 3600
        rows = [(n, v) for n, v in counts.items() if v]
        db = self._connect()
        try:
            with db:
                for table, key in (("minute", minute), ("hour", hour)):
                    db.executemany(
                        f"INSERT INTO {table} (ts, name, value) VALUES (?, ?, ?) "
                        "ON CONFLICT (ts, name) DO UPDATE SET value = value + excluded.value",
                        [(key, n, v) for n, v in rows],
                    )
                now = int(time.time())
                db.execute("DELETE FROM minute WHERE ts < ?", (now - MINUTE_KEEP,))
                db.execute("DELETE FROM hour WHERE ts < ?", (now - HOUR_KEEP,))
        finally:
            db.close()

    def read(
        self, resolution: str, since: float, names: Iterable[str] | None = None
    ) -> list[tuple[int, dict[str, int]]]:
        """``[(ts, {name: value})]`` from ``since`` on, oldest first (periods with no counts
        are absent)."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
        if not self.path.exists():
            return []
        wanted = set(names) if names is not None else None
        db = self._connect()
        try:
            cur = db.execute(
                f"SELECT ts, name, value FROM {resolution} WHERE ts >= ? ORDER BY ts",
                (int(since),),
            )
            out: dict[int, dict[str, int]] = {}
            for ts, name, value in cur:
                if wanted is None or name in wanted:
                    out.setdefault(ts, {})[name] = value
        finally:
            db.close()
        return sorted(out.items())


def flush(counters: Counters, rollups: Rollups, ts: float) -> dict[str, int]:
    """Store the counters' growth since the last flush at ``ts``; returns what was added."""
    names = counters.names()
    totals = [sum(counters.row_view(r)[i] for r in range(counters.rows)) for i in range(len(names))]
    written = counters.ring.written()
    delta = {n: totals[i] - written[i] for i, n in enumerate(names) if n in _ROLLED_SET}
    delta = {n: v for n, v in delta.items() if v > 0}
    if delta:
        rollups.add(ts, delta)
    counters.ring.set_written(totals)
    return delta


_ROLLED_SET = frozenset(ROLLED)
