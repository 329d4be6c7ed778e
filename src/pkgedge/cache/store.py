"""The disk tier: an LMDB index shared by every worker, and one file per body.

Every worker process opens the same memory-mapped LMDB environment, so an object stored by
one worker is a hit in all others, and a purge committed by one is seen by all the moment its
transaction commits. Bodies are files named by a random object id; an object becomes visible
only when its body file is complete (renamed from ``tmp/``) and its record is committed, so a
killed worker never leaves a partial object that is served.

Databases in the environment:

``obj``   cache key → :class:`Entry` bytes, or a Vary marker for a primary key
``skey``  surrogate key → cache key (duplicates allowed)
``busy``  cache key → (pid, objid, started): a fill in progress (request collapsing)
``fifo``  insertion sequence → (cache key, objid): eviction order (CLOCK / second chance)
``acc``   objid → b"": accessed since it was last considered for eviction
``meta``  counters (bytes, objects, sequence)
"""

from __future__ import annotations

import fcntl
import marshal
import mmap
import os
import shutil
import struct
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lmdb

from pkgedge.cache.entry import Entry
from pkgedge.cache.keys import secondary_key, vary_names
from pkgedge.errors import StoreError

_VARY = b"V"  # first byte of a Vary marker record (Entry records start with marshal's b")")
_Q = struct.Struct(">Q")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DiskStore:
    """Index + body files. Open it in each process after ``fork`` (LMDB handles don't survive
    a fork)."""

    def __init__(
        self, root: str | os.PathLike[str], capacity: int, map_size: int = 1 << 32
    ) -> None:
        self.root = Path(root)
        self.capacity = capacity
        self.map_size = map_size
        self.objects_dir = self.root / "objects"
        self.tmp_dir = self.root / "tmp"
        self._env: Any = None
        self._accessed: set[str] = set()

    # -- lifecycle -----------------------------------------------------------------------
    def prepare(self) -> None:
        """Create directories and clear leftovers of a previous run (call before workers)."""
        try:
            self.objects_dir.mkdir(parents=True, exist_ok=True)
            if self.tmp_dir.exists():
                shutil.rmtree(self.tmp_dir)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use cache dir {self.root}: {exc.strerror}") from None
        self.open()
        with self._env.begin(write=True) as txn:
            txn.drop(self._db("busy"), delete=False)
        self.close()

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
        except lmdb.Error as exc:
            raise StoreError(f"cannot open cache index in {self.root}: {exc}") from None
        self._dbs = {
            name: self._env.open_db(name.encode(), dupsort=(name == "skey"))
            for name in ("obj", "skey", "busy", "fifo", "acc", "meta")
        }
        gen_path = self.root / "generation"
        self._gen_fd = os.open(gen_path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._gen_fd).st_size < 8:
            os.ftruncate(self._gen_fd, 8)
        self._gen_map = mmap.mmap(self._gen_fd, 8)
        #: Bumped after every committed change to objects, in every process. A worker may
        #: keep entries it looked up while the generation it read before the look-up is
        #: still current (read the generation first, then look up).
        self.generation = memoryview(self._gen_map).cast("q")

    def _bump(self) -> None:
        fcntl.flock(self._gen_fd, fcntl.LOCK_EX)
        try:
            self.generation[0] += 1
        finally:
            fcntl.flock(self._gen_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._env is not None:
            self._env.sync(True)
            self._env.close()
            self._env = None
            self.generation.release()
            self._gen_map.close()
            os.close(self._gen_fd)

    def _db(self, name: str) -> Any:
        return self._dbs[name]

    def __repr__(self) -> str:
        objects, used = self.usage()
        return f"<DiskStore {self.root} objects={objects} bytes={used} capacity={self.capacity}>"

    # -- paths ---------------------------------------------------------------------------
    def body_path(self, objid: str) -> Path:
        return self.objects_dir / objid[:2] / objid

    def tmp_path(self, objid: str) -> Path:
        return self.tmp_dir / objid

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

    def variant_key(
        self, key: bytes, vary_header: str | None, req: Mapping[str, str], path: str
    ) -> bytes:
        names = vary_names(vary_header)
        return secondary_key(key, names, req, path) if names else key

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
            if raw is not None:
                pid, other, started = marshal.loads(raw)
                if pid != os.getpid() and _pid_alive(pid) and now - started < stale_after:
                    return pid, other
                if pid == os.getpid() and now - started < stale_after:
                    return pid, other
            txn.put(key, marshal.dumps((os.getpid(), objid, now)))
        return None

    def busy(self, key: bytes) -> tuple[int, str] | None:
        with self._env.begin(db=self._dbs["busy"]) as txn:
            raw = txn.get(key)
        if raw is None:
            return None
        pid, objid, _ = marshal.loads(raw)
        if not _pid_alive(pid):
            return None
        return pid, objid

    def unclaim(self, key: bytes, objid: str) -> None:
        with self._env.begin(write=True, db=self._dbs["busy"]) as txn:
            raw = txn.get(key)
            if raw is not None and marshal.loads(raw)[1] == objid:
                txn.delete(key)

    # -- writes --------------------------------------------------------------------------
    def commit(
        self, primary: bytes, key: bytes, entry: Entry, vary: tuple[str, ...], tmp: Path | None
    ) -> None:
        """Make ``entry`` visible under ``key``; its body moves from ``tmp`` into place."""
        dest = self.body_path(entry.objid)
        if tmp is not None:
            dest.parent.mkdir(exist_ok=True)
            os.replace(tmp, dest)
        evicted: list[str] = []
        with self._env.begin(write=True) as txn:
            obj = self._dbs["obj"]
            if vary:
                txn.put(primary, _VARY + marshal.dumps(list(vary)), db=obj)
            elif primary != key:
                txn.delete(primary, db=obj)
            old = txn.get(key, db=obj)
            if old is not None and old[:1] != _VARY:
                old_entry = Entry.from_bytes(old)
                if old_entry.objid != entry.objid:
                    self._account(txn, -1, -old_entry.size)
                    evicted.append(old_entry.objid)
            if old is None or old[:1] == _VARY or Entry.from_bytes(old).objid != entry.objid:
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
        self._unlink(evicted)

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
        budget = 10_000
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

    def _unlink(self, objids: Iterable[str]) -> None:
        for objid in objids:
            for suffix in ("", ".gz", ".br"):
                try:
                    os.unlink(str(self.body_path(objid)) + suffix)
                except FileNotFoundError:
                    pass

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

    def purge_keys(self, cache_keys: Iterable[bytes], *, soft: bool = False) -> int:
        dropped: list[str] = []
        with self._env.begin(write=True) as txn:
            count = sum(self._drop_or_soften(txn, k, soft, dropped) for k in cache_keys)
        self._bump()
        self._unlink(dropped)
        return count

    def purge_surrogate(self, skeys: Iterable[str], *, soft: bool = False) -> int:
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
        self._unlink(dropped)
        return count

    def purge_all(self, *, soft: bool = False) -> int:
        try:
            return self._purge_all(soft)
        finally:
            self._bump()

    def _purge_all(self, soft: bool) -> int:
        with self._env.begin(write=True) as txn:
            objects, _ = 0, 0
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
        for sub in self.objects_dir.iterdir():
            shutil.rmtree(sub, ignore_errors=True)
        return objects

    # -- file hosts ------------------------------------------------------------------------
    def allow_host(self, origin: str) -> None:
        """Remember a file host seen in the upstream's pages (the ``/+f/`` route serves it)."""
        with self._env.begin(write=True, db=self._dbs["meta"]) as txn:
            txn.put(b"host:" + origin.encode(), b"1")

    def host_allowed(self, origin: str) -> bool:
        with self._env.begin(db=self._dbs["meta"]) as txn:
            return txn.get(b"host:" + origin.encode()) is not None
