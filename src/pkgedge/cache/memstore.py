"""A store for one process: the index in dicts, the bodies in files under a directory.

Same :class:`~pkgedge.cache.store.Store` contract as the disk tier (the conformance tests
run against both), for pipeline unit tests and isolated edges with a cache of their own.
Claims collapse fills within this process only; ``generation`` is a one-element list.
Records are kept as :class:`Entry` bytes, so a caller changing an entry it looked up changes
nothing stored until it calls :meth:`update`, as with the disk tier.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

from pkgedge.cache.bodies import BodyFiles
from pkgedge.cache.entry import Entry
from pkgedge.cache.index import EVICT_BUDGET, claim_holder, pid_alive
from pkgedge.cache.keys import secondary_key
from pkgedge.cache.store import IndexedStore

#: A record: Entry bytes, or the Vary header names of a primary key.
_Record = bytes | tuple[str, ...]


class MemoryIndex:
    """The index of :class:`MemoryStore`: the disk index's databases as dicts and a deque."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.generation = [0]
        self._obj: dict[bytes, _Record] = {}
        self._skey: dict[str, dict[bytes, None]] = {}  # ordered sets
        self._busy: dict[bytes, tuple[int, str, float]] = {}
        self._fifo: deque[tuple[bytes, str]] = deque()  # insertion order (CLOCK)
        self._acc: set[str] = set()
        self._accessed: set[str] = set()
        self._objects = 0
        self._bytes = 0
        self._hosts: set[str] = set()

    def _bump(self) -> None:
        self.generation[0] += 1

    def _entry(self, key: bytes) -> Entry | None:
        rec = self._obj.get(key)
        return Entry.from_bytes(rec) if isinstance(rec, bytes) else None

    def _account(self, objects: int, size: int) -> None:
        self._objects = max(0, self._objects + objects)
        self._bytes = max(0, self._bytes + size)

    # -- reads ---------------------------------------------------------------------------
    def lookup(self, key: bytes, req: Mapping[str, str], path: str) -> tuple[bytes, Entry | None]:
        rec = self._obj.get(key)
        if isinstance(rec, tuple):
            key = secondary_key(key, rec, req, path)
        return key, self._entry(key)

    def touch(self, objid: str) -> None:
        self._accessed.add(objid)

    def flush_accesses(self) -> None:
        self._acc |= self._accessed
        self._accessed = set()

    def usage(self) -> tuple[int, int]:
        return self._objects, self._bytes

    # -- fills ---------------------------------------------------------------------------
    def claim(
        self, key: bytes, objid: str, *, stale_after: float = 120.0
    ) -> tuple[int, str] | None:
        now = time.time()
        owner = claim_holder(self._busy.get(key), now, stale_after)
        if owner is not None:
            return owner
        self._busy[key] = (os.getpid(), objid, now)
        return None

    def busy(self, key: bytes) -> tuple[int, str] | None:
        rec = self._busy.get(key)
        if rec is None or not pid_alive(rec[0]):
            return None
        return rec[0], rec[1]

    def unclaim(self, key: bytes, objid: str) -> None:
        rec = self._busy.get(key)
        if rec is not None and rec[1] == objid:
            del self._busy[key]

    # -- writes --------------------------------------------------------------------------
    def commit(self, primary: bytes, key: bytes, entry: Entry, vary: tuple[str, ...]) -> list[str]:
        evicted: list[str] = []
        if vary:
            prev = self._entry(primary) if primary != key else None
            if prev is not None:  # it varies now: drop the object
                self._account(-1, -prev.size)
                evicted.append(prev.objid)
            self._obj[primary] = tuple(vary)
        elif primary != key:
            self._obj.pop(primary, None)
        old = self._entry(key)
        if old is None or old.objid != entry.objid:
            if old is not None:
                self._account(-1, -old.size)
                evicted.append(old.objid)
            self._account(1, entry.size)
            self._fifo.append((key, entry.objid))
        self._obj[key] = entry.to_bytes()
        for k in entry.keys:
            self._skey.setdefault(k, {})[key] = None
        evicted.extend(self._evict())
        self._busy.pop(key, None)
        self._bump()
        return evicted

    def update(self, key: bytes, entry: Entry) -> None:
        old = self._entry(key)
        if old is not None and old.objid == entry.objid:
            self._obj[key] = entry.to_bytes()
        self._bump()

    def _evict(self) -> list[str]:
        """CLOCK over insertion order: accessed objects get a second chance."""
        evicted: list[str] = []
        budget = EVICT_BUDGET
        while self._bytes > self.capacity and budget > 0 and self._fifo:
            budget -= 1
            key, objid = self._fifo.popleft()
            entry = self._entry(key)
            if entry is None or entry.objid != objid:
                continue
            if objid in self._acc:
                self._acc.discard(objid)
                self._fifo.append((key, objid))
                continue
            del self._obj[key]
            self._account(-1, -entry.size)
            evicted.append(objid)
        return evicted

    # -- purge ---------------------------------------------------------------------------
    def _drop_or_soften(self, key: bytes, soft: bool, dropped: list[str]) -> int:
        rec = self._obj.get(key)
        if rec is None:
            return 0
        if isinstance(rec, tuple):
            prefix = key + b"\x00"
            variants = sorted(k for k in self._obj if k.startswith(prefix))
            count = sum(self._drop_or_soften(k, soft, dropped) for k in variants)
            if not soft:
                del self._obj[key]
            return count
        entry = Entry.from_bytes(rec)
        if soft:
            entry.soft_purged = True
            self._obj[key] = entry.to_bytes()
        else:
            del self._obj[key]
            self._account(-1, -entry.size)
            dropped.append(entry.objid)
        return 1

    def purge_keys(self, cache_keys: Iterable[bytes], *, soft: bool) -> tuple[int, list[str]]:
        dropped: list[str] = []
        count = sum(self._drop_or_soften(k, soft, dropped) for k in cache_keys)
        self._bump()
        return count, dropped

    def purge_surrogate(self, skeys: Iterable[str], *, soft: bool) -> tuple[int, list[str]]:
        dropped: list[str] = []
        count = 0
        for sk in skeys:
            targets = list(self._skey.get(sk, ()))
            count += sum(self._drop_or_soften(t, soft, dropped) for t in targets)
            if not soft:
                self._skey.pop(sk, None)
        self._bump()
        return count, dropped

    def purge_all(self, *, soft: bool) -> int:
        try:
            if soft:
                keys = [k for k, rec in self._obj.items() if isinstance(rec, bytes)]
                for k in keys:
                    self._drop_or_soften(k, True, [])
                return len(keys)
            objects = self._objects
            self._obj.clear()
            self._skey.clear()
            self._fifo.clear()
            self._acc.clear()
            self._objects = self._bytes = 0
            return objects
        finally:
            self._bump()

    # -- file hosts ----------------------------------------------------------------------
    def allow_host(self, origin: str) -> None:
        self._hosts.add(origin)

    def host_allowed(self, origin: str) -> bool:
        return origin in self._hosts


class MemoryStore(IndexedStore):
    """An in-process index with body files under ``root`` (a directory of its own)."""

    def __init__(self, root: str | os.PathLike[str], capacity: int) -> None:
        self.root = Path(root)
        self.files = BodyFiles(self.root)
        self.index = MemoryIndex(capacity)

    def prepare(self) -> None:
        """Create the directories and clear leftover temp files."""
        self.files.prepare()

    def open(self) -> None:
        self.files.make_dirs()

    def close(self) -> None:
        self.flush_accesses()
