"""Rendered simple pages, by (project, serial, media type).

Any change to a project bumps its serial, so an entry is never stale: a new serial is a new
key. Pages are kept in memory (bounded, oldest dropped first) and on disk (one file per
project and media type, the newest serial only), so a restarted origin, or the edge's refill
right after a purge, reads a stored page instead of loading thousands of rows. Requests that
miss together wait for one render (single flight).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

from pkgedge.index import simple
from pkgedge.index.model import ProjectRow

Key = tuple[str, int, str]
Page = tuple[bytes, str]  # body, ETag


def _slug(media: str) -> str:
    """A media type as a file-name part without dots (``application-vnd-pypi-...``)."""
    return re.sub(r"[^a-z0-9]+", "-", media.lower()).strip("-")


class PageStore:
    def __init__(
        self, root: Path, render: Callable[[ProjectRow, str], bytes], *, memory_pages: int = 256
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.render = render
        self.memory_pages = memory_pages
        self._memory: dict[Key, Page] = {}
        self._locks: dict[Key, threading.Lock] = {}
        self._guard = threading.Lock()
        self.renders = 0

    def __repr__(self) -> str:
        return f"<PageStore {self.root} in_memory={len(self._memory)} renders={self.renders}>"

    def get(self, project: ProjectRow, media: str) -> Page:
        key = (project.project, project.last_serial, media)
        hit = self._memory.get(key)
        if hit is not None:
            return hit
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._memory.get(key) or self._load(key)
            if hit is None:
                body = self.render(project, media)
                self.renders += 1
                hit = (body, simple.etag_for(body))
                self._save(key, hit)
            if len(self._memory) >= self.memory_pages:
                self._memory.pop(next(iter(self._memory)))
            self._memory[key] = hit
        with self._guard:
            self._locks.pop(key, None)
        return hit

    def _path(self, key: Key) -> Path:
        name, serial, media = key
        return self.root / f"{name}.{serial}.{_slug(media)}"

    def _load(self, key: Key) -> Page | None:
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        etag, sep, body = data.partition(b"\n")
        return (body, etag.decode()) if sep else None

    def _save(self, key: Key, page: Page) -> None:
        """The ETag line, then the body, atomically; older serials of the page removed."""
        path = self._path(key)
        try:
            tmp = path.with_name(f"{path.name}.{threading.get_ident()}.tmp")
            tmp.write_bytes(page[1].encode() + b"\n" + page[0])
            tmp.replace(path)
            name, serial, media = key
            for old in self.root.glob(f"{name}.*.{_slug(media)}"):
                parts = old.name.split(".")
                if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < serial:
                    old.unlink(missing_ok=True)
        except OSError:
            pass  # an optimisation only: rendering again is always correct
