"""The JSON-lines download log, shared by the workers, rotated by size.

Every worker appends (``O_APPEND``: each batch lands whole) and, under a lock file, rotates
the log when it reached ``max_bytes``: ``downloads.jsonl`` → ``.1`` → ``.2`` ... up to
``keep`` old files. A worker whose file was rotated by another reopens the new one (it
compares inodes before each write). Writes happen about once a second, never per request.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class DownloadLog:
    def __init__(self, path: str | Path, max_bytes: int, keep: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._fd = -1

    def _open(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        self.write_lines([json.dumps(r, separators=(",", ":")) for r in records])

    def write_lines(self, lines: list[str]) -> None:
        """Append JSON lines (without their newlines), rotating first when due."""
        data = ("\n".join(lines) + "\n").encode() if lines else b""
        if not data:
            return
        lock = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                st = None
            if self._fd < 0 or st is None or os.fstat(self._fd).st_ino != st.st_ino:
                self._open()
                st = os.stat(self.path)
            if st.st_size and st.st_size + len(data) > self.max_bytes:
                self._rotate()
                self._open()
            os.write(self._fd, data)
        finally:
            os.close(lock)  # releases the lock

    def _rotate(self) -> None:
        for i in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def files(self) -> list[Path]:
        """The log and its rotated files, oldest first."""
        old = sorted(
            self.path.parent.glob(self.path.name + ".*[0-9]"),
            key=lambda p: -int(p.suffix[1:]),
        )
        return [*old, self.path] if self.path.exists() else old

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
