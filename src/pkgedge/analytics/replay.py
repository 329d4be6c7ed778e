"""Rebuild the aggregates from logs: the edge's access log or its download log (JSON lines).

The same rules as the live recorder decide what a download is; the days the logs cover are
replaced as a whole, so replaying the same logs again gives the same rows (idempotent). Give
every log file of a day (a rotated set) in one replay, or the day will hold only part of it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pkgedge.analytics import record
from pkgedge.analytics.keys import Key, key_of

if TYPE_CHECKING:
    from pkgedge.analytics.db import Downloads


@dataclass
class Replayed:
    lines: int = 0
    downloads: int = 0
    skipped: int = 0  # lines that were not JSON objects of either log
    days: list[str] = field(default_factory=list)


def count(lines: Iterable[str], out: Replayed) -> Counter[Key]:
    counts: Counter[Key] = Counter()
    for line in lines:
        if not line.strip():
            continue
        out.lines += 1
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError
            if "project" in data and "file_type" in data:  # a download record
                counts[key_of(data, record.day_of(float(data["time"])))] += 1
                out.downloads += 1
                continue
            ts, path = float(data["time"]), str(data["path"])
            if not record.is_download(str(data["method"]), int(data["status"]), path):
                continue
            rec = record.make(ts, path, str(data.get("user_agent", "")), "")
        except (ValueError, KeyError, TypeError):
            out.skipped += 1
            continue
        if rec is not None:
            counts[key_of(rec, record.day_of(ts))] += 1
            out.downloads += 1
    return counts


def replay(db: Downloads, files: Iterable[str | Path]) -> Replayed:
    out = Replayed()
    counts: Counter[Key] = Counter()
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as fh:
            counts.update(count(fh, out))
    out.days = db.replace_days(counts)
    return out
