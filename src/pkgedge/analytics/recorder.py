"""One worker's download recorder, flushed once a second.

Per request the hooks (:mod:`pkgedge.analytics.hooks`) check three things
(:func:`~pkgedge.analytics.record.is_download`) and, for a download, append one tuple to a
list. Once a second (the worker's tick) the tuples become records: the JSON-lines log
(:class:`~pkgedge.analytics.log.DownloadLog`) and counts per key added to the aggregates
(:class:`~pkgedge.analytics.db.Downloads`) in a thread, so the event loop never waits for
the database. Counts a failed write did not store are kept and tried again at the next
flush; nothing is lost while the worker runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pkgedge.analytics import record
from pkgedge.analytics.keys import Key, check_url, default_url, key_of
from pkgedge.analytics.log import DownloadLog
from pkgedge.config import EdgeSettings
from pkgedge.stats.counters import Counters

if TYPE_CHECKING:
    from pkgedge.analytics.db import Downloads


def db_url(settings: EdgeSettings) -> str:
    url = settings.stats_database or default_url(settings.cache_dir)
    check_url(url)
    return url


def downloads_of(settings: EdgeSettings) -> Downloads:
    from pkgedge.analytics.db import Downloads  # SQLAlchemy: imported when first needed

    return Downloads(db_url(settings))


def log_path(settings: EdgeSettings) -> Path | None:
    if settings.downloads_log == "off":
        return None
    return Path(settings.downloads_log or Path(settings.cache_dir) / "stats" / "downloads.jsonl")


#: (JSON of a record without its closing brace, time and client; the record; key per day)
_Static = tuple[str, dict[str, Any], dict[int, Key]]


class Recorder:
    def __init__(self, settings: EdgeSettings, counters: Counters) -> None:
        self.settings = settings
        self.counters = counters
        self._db: Downloads | None = None
        path = log_path(settings)
        self.log = DownloadLog(path, settings.downloads_log_max) if path else None
        self.hasher = record.ClientHasher(Path(settings.cache_dir) / "stats" / "secret")
        self._seen: list[tuple[float, str, str, str]] = []
        self._pending: Counter[Key] = Counter()
        self._statics: dict[tuple[str, str], _Static | None] = {}
        self._writing = False
        self.recorded = 0

    @property
    def db(self) -> Downloads:
        """The aggregates (made on first use: SQLAlchemy is imported then)."""
        if self._db is None:
            self._db = downloads_of(self.settings)
        return self._db

    def saw(self, target: str, user_agent: str, client: str) -> None:
        """A download was answered (the hooks checked :func:`record.is_download`)."""
        self._seen.append((time.time(), target, user_agent, client))

    def _take(self) -> list[str]:
        """The JSON lines of the downloads seen since the last call; their counts are added
        to ``_pending``. What never changes for a (target, User-Agent) pair is worked out
        once (:meth:`_static`), so a download costs a hash, a day and a string."""
        seen, self._seen = self._seen, []
        lines = []
        pending = self._pending
        for ts, target, ua, client in seen:
            static = self._static(target, ua)
            if static is None:
                continue
            prefix, rec, keys = static
            day = int(ts // 86400)
            key = keys.get(day)
            if key is None:
                key = keys[day] = key_of(rec, record.day_of(ts))
            pending[key] += 1
            lines.append(f'{prefix},"time":{ts:.3f},"client":"{self.hasher(client, ts)}"}}')
        self.recorded += len(lines)
        return lines

    def _static(self, target: str, ua: str) -> _Static | None:
        """What never changes for a (target, User-Agent) pair: the record's JSON without time
        and client, the record, its aggregate key per day; None when the target is no
        distribution file. Remembered for 4096 pairs."""
        pair = (target, ua)
        if pair in self._statics:
            return self._statics[pair]
        rec = record.make(0.0, target, ua, "")
        value: _Static | None = None
        if rec is not None:
            del rec["time"], rec["client"]
            value = (json.dumps(rec, separators=(",", ":"))[:-1], rec, {})
        if len(self._statics) >= 4096:
            self._statics.clear()
        self._statics[pair] = value
        return value

    def flush(self) -> None:
        """Log the downloads seen since the last flush and start adding them to the database
        (in a thread; the next flush retries what failed)."""
        if not self._seen and not self._pending:
            return
        lines = self._take()
        if self.log is not None and lines:
            try:
                self.log.write_lines(lines)
            except OSError as exc:
                print(f"pkgedge: download log not written: {exc}", file=sys.stderr)
        if self._writing or not self._pending:
            return
        batch, self._pending = self._pending, Counter()
        self._writing = True
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._add, batch))
        task.add_done_callback(lambda t: self._done(t, batch))

    def _add(self, batch: Counter[Key]) -> None:
        self.db.add(batch)

    def _done(self, task: asyncio.Task[None], batch: Counter[Key]) -> None:
        self._writing = False
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            self._pending.update(batch)  # tried again at the next flush
            if exc is not None:
                print(f"pkgedge: download counts not stored yet: {exc}", file=sys.stderr)

    def close(self) -> None:
        """The last flush, synchronous (the worker is stopping)."""
        lines = self._take()
        if self.log is not None and lines:
            self.log.write_lines(lines)
        if self._pending:
            self.db.add(self._pending)
            self._pending = Counter()
        if self.log is not None:
            self.log.close()
        if self._db is not None:
            self._db.close()
