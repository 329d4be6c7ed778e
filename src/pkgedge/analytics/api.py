"""Answers shaped like the public download-statistics service's JSON API, from the aggregates.

``recent``: ``{"data": {"last_day", "last_week", "last_month"}, "package", "type":
"recent_downloads"}`` (windows ending today, UTC, today included: 1, 7 and 30 days).
``overall``: per day, ``with_mirrors`` and ``without_mirrors`` (``mirrors=true|false`` keeps
one). ``python_major`` / ``python_minor``: per day and version (``"3"``, ``"3.12"``, ``"null"``
when the client did not say; ``version=`` filters). ``system``: per day and OS (``Darwin``,
``Linux``, ``Windows``, ``other``, ``null``; ``os=`` filters). Each ``data`` list is sorted by
date then category, as the service does.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pkgedge.analytics.db import Downloads

KINDS = ("recent", "overall", "python_major", "python_minor", "system")
BY = ("installer", "version", "python", "system", "file_type", "ci")
_SYSTEMS = {"Linux", "Darwin", "Windows"}


def day_minus(days: int, now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime((now or time.time()) - days * 86400))


def _listing(counts: Counter[tuple[str, str]], kind: str, package: str) -> dict[str, Any]:
    data = [{"category": c, "date": d, "downloads": n} for (d, c), n in sorted(counts.items()) if n]
    return {"data": data, "package": package, "type": f"{kind}_downloads"}


def answer(db: Downloads, package: str, kind: str, params: dict[str, str]) -> dict[str, Any]:
    """The ``kind`` answer for ``package`` (a normalised name); ``params``: the query."""
    if kind == "recent":
        rows = db.query(package, day_minus(29))
        today = day_minus(0)
        week = day_minus(6)
        return {
            "data": {
                "last_day": sum(r["downloads"] for r in rows if r["day"] == today),
                "last_week": sum(r["downloads"] for r in rows if r["day"] >= week),
                "last_month": sum(r["downloads"] for r in rows),
            },
            "package": package,
            "type": "recent_downloads",
        }
    since = day_minus(180)
    counts: Counter[tuple[str, str]] = Counter()
    if kind == "overall":
        mirrors = params.get("mirrors")
        for r in db.query(package, since, ("mirror",)):
            counts[(r["day"], "with_mirrors")] += r["downloads"]
            if not r["mirror"]:
                counts[(r["day"], "without_mirrors")] += r["downloads"]
        if mirrors in ("true", "false"):
            keep = "with_mirrors" if mirrors == "true" else "without_mirrors"
            counts = Counter({k: v for k, v in counts.items() if k[1] == keep})
        return _listing(counts, kind, package)
    if kind in ("python_major", "python_minor"):
        for r in db.query(package, since, ("python",)):
            py = r["python"]
            cat = (py.split(".")[0] if kind == "python_major" else py) if py else "null"
            counts[(r["day"], cat)] += r["downloads"]
        if want := params.get("version"):
            counts = Counter({k: v for k, v in counts.items() if k[1] == want})
        return _listing(counts, kind, package)
    if kind == "system":
        for r in db.query(package, since, ("system",)):
            s = r["system"]
            cat = s if s in _SYSTEMS else ("other" if s else "null")
            counts[(r["day"], cat)] += r["downloads"]
        if want := params.get("os"):
            counts = Counter({k: v for k, v in counts.items() if k[1].lower() == want.lower()})
        return _listing(counts, kind, package)
    raise ValueError(f"no such statistic: {kind} (one of {', '.join(KINDS)})")


def by(db: Downloads, package: str, days: int, column: str | None) -> dict[str, Any]:
    """Downloads of ``package`` per day over ``days`` days, split by ``column`` (or not):
    what ``pkgedge stats downloads`` prints and the dashboard charts."""
    if column is not None and column not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    cols = (column,) if column else ()
    rows = db.query(package, day_minus(days - 1), cols)
    totals: Counter[str] = Counter()
    per_day: Counter[str] = Counter()
    for r in rows:
        per_day[r["day"]] += r["downloads"]
        if column:
            totals[str(r[column])] += r["downloads"]
    return {
        "package": package,
        "days": days,
        "by": column,
        "total": sum(per_day.values()),
        "per_day": [{"date": d, "downloads": n} for d, n in sorted(per_day.items())],
        "rows": [{**r, "date": r.pop("day")} for r in rows],
        "totals": dict(totals.most_common()),
    }
