"""The disk tier's index: one LMDB environment shared by every worker process.

Every worker memory-maps the same environment, so an object committed by one worker is a hit
in all others, and a purge committed by one is seen by all the moment its transaction
commits. The index knows objects by id; their bodies are :class:`~pkgedge.cache.bodies.BodyFiles`.
Methods that drop objects return the ids whose body files the caller removes.

Databases in the environment:

``obj``   cache key → :class:`Entry` bytes, or a Vary marker for a primary key
``skey``  surrogate key → cache key (duplicates allowed)
``busy``  cache key → (pid, objid, started): a fill in progress (request collapsing)
``fifo``  insertion sequence → (cache key, objid): eviction order (CLOCK / second chance)
``acc``   objid → b"": accessed since it was last considered for eviction
``meta``  counters (bytes, objects, sequence) and allowed file hosts
"""

from __future__ import annotations

import fcntl
import marshal
import mmap
import os
import struct
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lmdb

from pkgedge.cache.entry import Entry
from pkgedge.cache.keys import secondary_key
from pkgedge.errors import StoreError

_VARY = b"V"  # first byte of a Vary marker record (Entry records start with marshal's b")")
_Q = struct.Struct(">Q")
#: Most fifo records one commit looks at while evicting (bounds a commit's time).
EVICT_BUDGET = 10_000


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_holder(
    record: tuple[int, str, float] | None, now: float, stale_after: float
) -> tuple[int, str] | None:
    """Who holds a claim recorded as (pid, objid, started): None if nobody (no record, a
    dead owner, or older than ``stale_after`` seconds)."""
    if record is None:
        return None
    pid, objid, started = record
    if now - started >= stale_after:
        return None
    if pid != os.getpid() and not pid_alive(pid):
        return None
    return pid, objid


class Generation:
    """A shared 8-byte counter in a memory-mapped file, bumped under ``flock``."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size < 8:
            os.ftruncate(self._fd, 8)
        self._map = mmap.mmap(self._fd, 8)
        self.view = memoryview(self._map).cast("q")

    def bump(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self.view[0] += 1
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd < 0:
            return  # closed already: never close a number another file may have now
        self.view.release()
        self._map.close()
        os.close(self._fd)
        self._fd = -1


class LmdbIndex:
    """Open it in each process after ``fork`` (LMDB handles don't survive a fork)."""

    def __init__(self, root: Path, capacity: int, map_size: int = 1 << 32) -> None:
        self.root = root
        self.capacity = capacity
        self.map_size = map_size
        self._env: Any = None
        self._dbs: dict[str, Any] = {}
        self._gen: Generation | None = None
        self._accessed: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        try:
            self._env = lmdb.open(
                str(self.root / "index"),
                map_size=self.map_size,
                max_dbs=8,
                subdir=True,
                readahead=False,
                metasync=False,
                sync=False,
                lock=True,
                max_readers=1024,
            )
            self._dbs = {
                name: self._env.open_db(name.encode(), dupsort=(name == "skey"))
                for name in ("obj", "skey", "busy", "fifo", "acc", "meta")
            }
            self._gen = Generation(self.root / "generation")
        except (lmdb.Error, OSError) as exc:
            self.close()
            raise StoreError(f"cannot open cache index in {self.root}: {exc}") from None

    def close(self) -> None:
        if self._env is not None:
            self._env.sync(True)
            self._env.close()
            self._env = None
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    @property
    def generation(self) -> memoryview:
        """Bumped after every committed change to objects, in every process. A worker may
        keep entries it looked up while the generation it read before the look-up is still
        current (read the generation first, then look up)."""
        if self._gen is None:
            raise StoreError(f"cache index in {self.root} is not open")
        return self._gen.view

    def _bump(self) -> None:
        if self._gen is not None:
            self._gen.bump()

    def clear_busy(self) -> None:
        """Forget every fill in progress (at start, before workers run)."""
        with self._env.begin(write=True) as txn:
            txn.drop(self._dbs["busy"], delete=False)

    # -- reads ---------------------------------------------------------------------------
    def lookup(self, key: bytes, req: Mapping[str, str], path: str) -> tuple[bytes, Entry | None]:
        """Return (the variant key used, the entry or None)."""
        with self._env.begin(db=self._dbs["obj"], buffers=False) as txn:
            raw = txn.get(key)
            if raw is not None and raw[:1] == _VARY:
                names = tuple(marshal.loads(raw[1:]))
                key = secondary_key(key, names, req, path)
                raw = txn.get(key)
        if raw is None:
            return key, None
        return key, Entry.from_bytes(raw)

    def touch(self, objid: str) -> None:
        """Note an access; flushed in batches by :meth:`flush_accesses`."""
        self._accessed.add(objid)

    def flush_accesses(self) -> None:
        if not self._accessed:
            return
        acc, self._accessed = self._accessed, set()
        with self._env.begin(write=True, db=self._dbs["acc"]) as txn:
            for objid in acc:
                txn.put(objid.encode(), b"")

    def usage(self) -> tuple[int, int]:
        with self._env.begin(db=self._dbs["meta"]) as txn:
            objects = txn.get(b"objects")
            used = txn.get(b"bytes")
        return (_Q.unpack(objects)[0] if objects else 0, _Q.unpack(used)[0] if used else 0)

    # -- fills (request collapsing across workers) --------------------------------------
    def claim(
        self, key: bytes, objid: str, *, stale_after: float = 120.0
    ) -> tuple[int, str] | None:
        """Register a fill for ``key``; return None if claimed, else the owner's (pid, objid)."""
        now = time.time()
        with self._env.begin(write=True, db=self._dbs["busy"]) as txn:
            raw = txn.get(key)
            owner = claim_holder(marshal.loads(raw) if raw else None, now, stale_after)
            if owner is not None:
                return owner
            txn.put(key, marshal.dumps((os.getpid(), objid, now)))
        return None

    def busy(self, key: bytes) -> tuple[int, str] | None:
        with self._env.begin(db=self._dbs["busy"]) as txn:
            raw = txn.get(key)
        if raw is None:
            return None
        pid, objid, _ = marshal.loads(raw)
        return (pid, objid) if pid_alive(pid) else None

    def unclaim(self, key: bytes, objid: str) -> None:
        with self._env.begin(write=True, db=self._dbs["busy"]) as txn:
            raw = txn.get(key)
            if raw is not None and marshal.loads(raw)[1] == objid:
                txn.delete(key)

    # -- writes --------------------------------------------------------------------------
    def commit(self, primary: bytes, key: bytes, entry: Entry, vary: tuple[str, ...]) -> list[str]:
        """Make ``entry`` visible under ``key``; return the ids of objects it replaced or
        evicted (their bodies are the caller's to remove)."""
        evicted: list[str] = []
        with self._env.begin(write=True) as txn:
            obj = self._dbs["obj"]
            if vary:
                prev = txn.get(primary, db=obj) if primary != key else None
                if prev is not None and prev[:1] != _VARY:  # it varies now: drop the object
                    prev_entry = Entry.from_bytes(prev)
                    self._account(txn, -1, -prev_entry.size)
                    evicted.append(prev_entry.objid)
                txn.put(primary, _VARY + marshal.dumps(list(vary)), db=obj)
            elif primary != key:
                txn.delete(primary, db=obj)
            old = txn.get(key, db=obj)
            old_objid = None if old is None or old[:1] == _VARY else Entry.from_bytes(old).objid
            if old_objid != entry.objid:
                if old_objid is not None:
                    self._account(txn, -1, -Entry.from_bytes(old).size)
                    evicted.append(old_objid)
                self._account(txn, 1, entry.size)
                seq = self._next_seq(txn)
                txn.put(_Q.pack(seq), marshal.dumps((key, entry.objid)), db=self._dbs["fifo"])
            txn.put(key, entry.to_bytes(), db=obj)
            skey = self._dbs["skey"]
            for k in entry.keys:
                txn.put(k.encode(), key, db=skey, dupdata=True)
            evicted.extend(self._evict(txn))
            txn.delete(key, db=self._dbs["busy"])
        self._bump()
        return evicted

    def update(self, key: bytes, entry: Entry) -> None:
        """Rewrite an entry's metadata in place (after a 304 revalidation)."""
        with self._env.begin(write=True, db=self._dbs["obj"]) as txn:
            old = txn.get(key)
            if old is not None and old[:1] != _VARY and Entry.from_bytes(old).objid == entry.objid:
                txn.put(key, entry.to_bytes())
        self._bump()

    def _next_seq(self, txn: Any) -> int:
        meta = self._dbs["meta"]
        raw = txn.get(b"seq", db=meta)
        seq = (_Q.unpack(raw)[0] if raw else 0) + 1
        txn.put(b"seq", _Q.pack(seq), db=meta)
        return seq

    def _account(self, txn: Any, objects: int, size: int) -> None:
        meta = self._dbs["meta"]
        for name, delta in ((b"objects", objects), (b"bytes", size)):
            raw = txn.get(name, db=meta)
            txn.put(name, _Q.pack(max(0, (_Q.unpack(raw)[0] if raw else 0) + delta)), db=meta)

    def _evict(self, txn: Any) -> list[str]:
        """CLOCK over insertion order: accessed objects get a second chance."""
        meta, fifo, acc, obj = (self._dbs[n] for n in ("meta", "fifo", "acc", "obj"))
        raw = txn.get(b"bytes", db=meta)
        used = _Q.unpack(raw)[0] if raw else 0
        evicted: list[str] = []
        budget = EVICT_BUDGET
        cursor = txn.cursor(db=fifo)
        while used > self.capacity and budget > 0 and cursor.first():
            budget -= 1
            _, val = cursor.item()
            key, objid = marshal.loads(val)
            cursor.delete()
            rec = txn.get(key, db=obj)
            if rec is None or rec[:1] == _VARY:
                continue
            entry = Entry.from_bytes(rec)
            if entry.objid != objid:
                continue
            if txn.get(objid.encode(), db=acc) is not None:
                txn.delete(objid.encode(), db=acc)
                txn.put(_Q.pack(self._next_seq(txn)), val, db=fifo)
                continue
            txn.delete(key, db=obj)
            self._account(txn, -1, -entry.size)
            used -= entry.size
            evicted.append(objid)
        return evicted

    # -- purge ---------------------------------------------------------------------------
    def _drop_or_soften(self, txn: Any, key: bytes, soft: bool, dropped: list[str]) -> int:
        obj = self._dbs["obj"]
        raw = txn.get(key, db=obj)
        if raw is None:
            return 0
        if raw[:1] == _VARY:
            count = 0
            cursor = txn.cursor(db=obj)
            prefix = key + b"\x00"
            keys = []
            if cursor.set_range(prefix):
                for k in cursor.iternext(keys=True, values=False):
                    if not bytes(k).startswith(prefix):
                        break
                    keys.append(bytes(k))
            for k in keys:
                count += self._drop_or_soften(txn, k, soft, dropped)
            if not soft:
                txn.delete(key, db=obj)
            return count
        entry = Entry.from_bytes(raw)
        if soft:
            entry.soft_purged = True
            txn.put(key, entry.to_bytes(), db=obj)
        else:
            txn.delete(key, db=obj)
            self._account(txn, -1, -entry.size)
            dropped.append(entry.objid)
        return 1

    def purge_keys(self, cache_keys: Iterable[bytes], *, soft: bool) -> tuple[int, list[str]]:
        """Return (objects purged, ids of the objects dropped)."""
        dropped: list[str] = []
        with self._env.begin(write=True) as txn:
            count = sum(self._drop_or_soften(txn, k, soft, dropped) for k in cache_keys)
        self._bump()
        return count, dropped

    def purge_surrogate(self, skeys: Iterable[str], *, soft: bool) -> tuple[int, list[str]]:
        """Return (objects purged, ids of the objects dropped)."""
        dropped: list[str] = []
        count = 0
        with self._env.begin(write=True) as txn:
            skey = self._dbs["skey"]
            cursor = txn.cursor(db=skey)
            for sk in skeys:
                k = sk.encode()
                targets = []
                if cursor.set_key(k):
                    targets = [bytes(v) for v in cursor.iternext_dup()]
                for t in targets:
                    count += self._drop_or_soften(txn, t, soft, dropped)
                if not soft:
                    txn.delete(k, db=skey)
        self._bump()
        return count, dropped

    def purge_all(self, *, soft: bool) -> int:
        """Soft: mark every object purged. Hard: drop every record (the caller removes all
        bodies). Return the number of objects."""
        try:
            with self._env.begin(write=True) as txn:
                objects = 0
                if soft:
                    obj = self._dbs["obj"]
                    items = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=obj)]
                    for k, v in items:
                        if v[:1] == _VARY:
                            continue
                        e = Entry.from_bytes(v)
                        e.soft_purged = True
                        txn.put(k, e.to_bytes(), db=obj)
                        objects += 1
                    return objects
                raw = txn.get(b"objects", db=self._dbs["meta"])
                objects = _Q.unpack(raw)[0] if raw else 0
                for name in ("obj", "skey", "fifo", "acc"):
                    txn.drop(self._dbs[name], delete=False)
                txn.put(b"objects", _Q.pack(0), db=self._dbs["meta"])
                txn.put(b"bytes", _Q.pack(0), db=self._dbs["meta"])
                return objects
        finally:
            self._bump()

    # -- file hosts ----------------------------------------------------------------------
    def allow_host(self, origin: str) -> None:
        with self._env.begin(write=True, db=self._dbs["meta"]) as txn:
            txn.put(b"host:" + origin.encode(), b"1")

    def host_allowed(self, origin: str) -> bool:
        with self._env.begin(db=self._dbs["meta"]) as txn:
            return txn.get(b"host:" + origin.encode()) is not None
