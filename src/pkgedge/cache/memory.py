"""The memory tier, shared by every worker through the kernel's page cache.

Bodies are not copied into each worker's heap: a worker maps the disk tier's body file (and
its encoded copies) read-only with ``mmap(MAP_SHARED)``, so the pages it reads are the page
cache's pages — one copy in memory for all workers. A body written by the worker that fetched
it is in the page cache already, so it is a memory hit in every other worker from its first
request there, and it stays one copy however many workers serve it. Each worker keeps an
S3-FIFO over the mappings it holds (``capacity`` bytes mapped); a mapping dropped from it is
unmapped once no write still uses it. Body files are immutable (named by object id), so a
mapping never needs invalidating: the index decides what is live.
"""

from __future__ import annotations

import mmap
import os

from pkgedge.cache.eviction import S3FIFO


class MemoryTier:
    """Mapped bodies by key (object id, plus the coding for an encoded copy)."""

    def __init__(self, capacity: int) -> None:
        self._maps: S3FIFO[str, memoryview] = S3FIFO(max(1, capacity))
        self.mapped = 0  # files mapped by this worker (a first access here)

    def __repr__(self) -> str:
        return f"<MemoryTier {self._maps!r} mapped={self.mapped}>"

    def __len__(self) -> int:
        return len(self._maps)

    @property
    def bytes_used(self) -> int:
        return self._maps.bytes_used

    def get(self, key: str) -> memoryview | None:
        return self._maps.get(key)

    def map(self, key: str, path: str | os.PathLike[str], size: int | None) -> memoryview | None:
        """Map a body file and keep it under ``key``; None if it is missing or (when ``size``
        is given) not exactly that long."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            actual = os.fstat(fd).st_size
            if size is not None and actual != size:
                return None
            view = (
                memoryview(mmap.mmap(fd, actual, prot=mmap.PROT_READ))
                if actual
                else memoryview(b"")
            )
        finally:
            os.close(fd)
        self.mapped += 1
        self._maps.put(key, view, max(1, actual))
        return view

    def clear(self) -> None:
        self._maps.clear()
