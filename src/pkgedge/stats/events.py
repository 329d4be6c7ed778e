"""Operator events the dashboard lists: purges and configuration activations (an edge start
with its settings, and whatever activates a new configuration later).

One JSON-lines file, ``stats/events.jsonl``, appended by whichever worker handled the event
(``O_APPEND``: one line lands whole); it is cut to its last :data:`KEEP` lines when it grows
past twice that. Reading takes the tail.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

KEEP = 1000


class EventLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), "kind": kind, **fields}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > KEEP * 2 * 200:  # about twice KEEP lines of 200 bytes: keep the tail
            lines = self.path.read_text(errors="replace").splitlines()[-KEEP:]
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text("\n".join(lines) + "\n")
            os.replace(tmp, self.path)

    def recent(self, n: int = 20, kind: str | None = None) -> list[dict[str, Any]]:
        """The last ``n`` events (of ``kind``), newest first."""
        try:
            lines = self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in reversed(lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (kind is None or event.get("kind") == kind):
                out.append(event)
                if len(out) >= n:
                    break
        return out
