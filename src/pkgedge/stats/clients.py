"""Who the heaviest clients are and what the protection did to them, across the workers.

Each worker tallies, per client address, requests, refusals (429/403 built by the edge) and
the last thing the protection noted about it (``req.note``: the rate limit, penalty or
signal, and why), in a dict (one look-up and two increments per request, from the hooks of
:mod:`pkgedge.analytics.hooks`). The
tally covers the current and the previous period of :data:`PERIOD` seconds. Every few
seconds a worker writes its top :data:`TOP` clients to ``stats/clients-<row>.json``
(replaced atomically); :func:`merged` adds up every worker's file. The dict is emptied when
it holds :data:`MAX_CLIENTS` addresses (a flood of distinct addresses costs memory, not
correctness of the top: the heavy ones come back at once).

These are addresses, for the operator's eyes on the admin listener only; nothing here is
written to the download records.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

PERIOD = 600.0
TOP = 50
MAX_CLIENTS = 50_000


class ClientTally:
    def __init__(self, directory: str | Path, row: int) -> None:
        self.path = Path(directory) / f"clients-{row}.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        #: address → [requests, refused, bytes, last note, its time]; the hot path bumps
        #: the first and third in place (see pkgedge.analytics.hooks); the dict object stays
        #: the same for the tally's life (bound methods of it are kept)
        self.table: dict[str, list[Any]] = {}
        self._before: dict[str, list[Any]] = {}
        self._started = time.time()
        self._written = 0.0

    def new(self, client: str) -> list[Any]:
        """The tally row of a client not seen in this period (a hot path's slow branch)."""
        if len(self.table) >= MAX_CLIENTS:
            self.table.clear()
        c = self.table[client] = [0, 0, 0, "", 0.0]
        return c

    @staticmethod
    def noted(c: list[Any], note: str, refused: bool) -> None:
        if refused:
            c[1] += 1
        if note:
            c[3] = note
            c[4] = time.time()

    def top(self) -> list[dict[str, Any]]:
        merged: dict[str, list[Any]] = {}
        for table in (self._before, self.table):
            for addr, (n, refused, nbytes, note, at) in table.items():
                m = merged.setdefault(addr, [0, 0, 0, "", 0.0])
                m[0] += n
                m[1] += refused
                m[2] += nbytes
                if note and at >= m[4]:
                    m[3], m[4] = note, at
        ranked = sorted(merged.items(), key=lambda kv: (-kv[1][0], kv[0]))[:TOP]
        return [
            {"client": a, "requests": n, "refused": r, "bytes": b, "note": note, "note_at": at}
            for a, (n, r, b, note, at) in ranked
        ]

    def flush(self, now: float, every: float = 2.0) -> None:
        """Write the top clients (at most every ``every`` seconds); start a new period."""
        if now - self._started >= PERIOD:
            self._before = dict(self.table)
            self.table.clear()
            self._started = now
        if now - self._written < every:
            return
        self._written = now
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"time": now, "clients": self.top()}))
        os.replace(tmp, self.path)


def merged(directory: str | Path, limit: int = 20) -> list[dict[str, Any]]:
    """Every worker's top clients added up (files older than a minute are left out: a
    worker that stopped)."""
    out: dict[str, dict[str, Any]] = {}
    now = time.time()
    for path in sorted(Path(directory).glob("clients-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if now - float(data.get("time", 0)) > 60:
            continue
        for c in data.get("clients", []):
            m = out.setdefault(
                c["client"],
                {"client": c["client"], "requests": 0, "refused": 0, "bytes": 0, "note": ""},
            )
            m["requests"] += c["requests"]
            m["refused"] += c["refused"]
            m["bytes"] += c["bytes"]
            if c["note"] and c.get("note_at", 0) >= m.get("note_at", 0):
                m["note"], m["note_at"] = c["note"], c["note_at"]
    ranked = sorted(out.values(), key=lambda c: (-c["requests"], c["client"]))
    return ranked[:limit]
