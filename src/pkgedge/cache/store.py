"""The cache store the edge uses: an index of entries plus the body files they name.

:class:`Store` is what the edge, the admin API and the workers call. :class:`IndexedStore`
implements it by composing an :class:`Index` (records, collapsing claims, purges, eviction,
the generation counter) with :class:`~pkgedge.cache.bodies.BodyFiles`: an object becomes
visible only when its body file is complete (renamed from ``tmp/``) and then its record is
committed, so a killed worker never leaves a partial object that is served; bodies of
dropped objects are removed after the index forgot them.

Two stores: :class:`DiskStore` (the LMDB index in ``cache/index.py``, shared by every worker
process) and :class:`~pkgedge.cache.memstore.MemoryStore` (the index in dicts, one process).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from pkgedge.cache.bodies import BodyFiles
from pkgedge.cache.entry import Entry
from pkgedge.cache.index import LmdbIndex
from pkgedge.cache.keys import secondary_key, vary_names


class Store(Protocol):
    """The cache store as its callers see it (edge pipeline, fills, delivery, admin, workers)."""

    files: BodyFiles
    capacity: int

    @property
    def generation(self) -> Sequence[int]:
        """``generation[0]`` changes after every commit, update or purge (in every process
        sharing the store)."""
        ...

    def prepare(self) -> None: ...
    def open(self) -> None: ...
    def close(self) -> None: ...
    def lookup(
        self, key: bytes, req: Mapping[str, str], path: str
    ) -> tuple[bytes, Entry | None]: ...
    def variant_key(
        self, key: bytes, vary_header: str | None, req: Mapping[str, str], path: str
    ) -> bytes: ...
    def touch(self, objid: str) -> None: ...
    def flush_accesses(self) -> None: ...
    def usage(self) -> tuple[int, int]: ...
    def claim(
        self, key: bytes, objid: str, *, stale_after: float = 120.0
    ) -> tuple[int, str] | None: ...
    def busy(self, key: bytes) -> tuple[int, str] | None: ...
    def unclaim(self, key: bytes, objid: str) -> None: ...
    def commit(
        self, primary: bytes, key: bytes, entry: Entry, vary: tuple[str, ...], tmp: Path | None
    ) -> None: ...
    def update(self, key: bytes, entry: Entry) -> None: ...
    def purge_keys(self, cache_keys: Iterable[bytes], *, soft: bool = False) -> int: ...
    def purge_surrogate(self, skeys: Iterable[str], *, soft: bool = False) -> int: ...
    def purge_all(self, *, soft: bool = False) -> int: ...
    def allow_host(self, origin: str) -> None: ...
    def host_allowed(self, origin: str) -> bool: ...
    def body_path(self, objid: str) -> Path: ...
    def tmp_path(self, objid: str) -> Path: ...


class Index(Protocol):
    """The records half of a store (``cache/index.py``, ``cache/memstore.py``). Methods that
    drop objects return their ids; the store removes their bodies."""

    capacity: int

    @property
    def generation(self) -> Sequence[int]: ...
    def lookup(
        self, key: bytes, req: Mapping[str, str], path: str
    ) -> tuple[bytes, Entry | None]: ...
    def touch(self, objid: str) -> None: ...
    def flush_accesses(self) -> None: ...
    def usage(self) -> tuple[int, int]: ...
    def claim(
        self, key: bytes, objid: str, *, stale_after: float = 120.0
    ) -> tuple[int, str] | None: ...
    def busy(self, key: bytes) -> tuple[int, str] | None: ...
    def unclaim(self, key: bytes, objid: str) -> None: ...
    def commit(
        self, primary: bytes, key: bytes, entry: Entry, vary: tuple[str, ...]
    ) -> list[str]: ...
    def update(self, key: bytes, entry: Entry) -> None: ...
    def purge_keys(self, cache_keys: Iterable[bytes], *, soft: bool) -> tuple[int, list[str]]: ...
    def purge_surrogate(self, skeys: Iterable[str], *, soft: bool) -> tuple[int, list[str]]: ...
    def purge_all(self, *, soft: bool) -> int: ...
    def allow_host(self, origin: str) -> None: ...
    def host_allowed(self, origin: str) -> bool: ...


class IndexedStore:
    """A :class:`Store` made of an index and the body files (subclasses choose the index)."""

    index: Index
    files: BodyFiles

    @property
    def capacity(self) -> int:
        return self.index.capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        self.index.capacity = value

    @property
    def generation(self) -> Sequence[int]:
        return self.index.generation

    # -- paths ---------------------------------------------------------------------------
    def body_path(self, objid: str) -> Path:
        return self.files.body_path(objid)

    def tmp_path(self, objid: str) -> Path:
        return self.files.tmp_path(objid)

    # -- reads ---------------------------------------------------------------------------
    def lookup(self, key: bytes, req: Mapping[str, str], path: str) -> tuple[bytes, Entry | None]:
        """Return (the variant key used, the entry or None)."""
        return self.index.lookup(key, req, path)

    def variant_key(
        self, key: bytes, vary_header: str | None, req: Mapping[str, str], path: str
    ) -> bytes:
        names = vary_names(vary_header)
        return secondary_key(key, names, req, path) if names else key

    def touch(self, objid: str) -> None:
        """Note an access (it gives the object a second chance at eviction once flushed)."""
        self.index.touch(objid)

    def flush_accesses(self) -> None:
        self.index.flush_accesses()

    def usage(self) -> tuple[int, int]:
        """(objects, bytes) stored."""
        return self.index.usage()

    # -- fills (request collapsing) ------------------------------------------------------
    def claim(
        self, key: bytes, objid: str, *, stale_after: float = 120.0
    ) -> tuple[int, str] | None:
        """Register a fill for ``key``; return None if claimed, else the owner's (pid, objid)."""
        return self.index.claim(key, objid, stale_after=stale_after)

    def busy(self, key: bytes) -> tuple[int, str] | None:
        return self.index.busy(key)

    def unclaim(self, key: bytes, objid: str) -> None:
        self.index.unclaim(key, objid)

    # -- writes --------------------------------------------------------------------------
    def commit(
        self, primary: bytes, key: bytes, entry: Entry, vary: tuple[str, ...], tmp: Path | None
    ) -> None:
        """Make ``entry`` visible under ``key``; its body moves from ``tmp`` into place."""
        if tmp is not None:
            self.files.install(entry.objid, tmp)
        self._remove(self.index.commit(primary, key, entry, vary))

    def update(self, key: bytes, entry: Entry) -> None:
        """Rewrite an entry's metadata in place (after a 304 revalidation)."""
        self.index.update(key, entry)

    def _remove(self, objids: Iterable[str]) -> None:
        for objid in objids:
            self.files.unlink(objid)

    # -- purge ---------------------------------------------------------------------------
    def purge_keys(self, cache_keys: Iterable[bytes], *, soft: bool = False) -> int:
        count, dropped = self.index.purge_keys(cache_keys, soft=soft)
        self._remove(dropped)
        return count

    def purge_surrogate(self, skeys: Iterable[str], *, soft: bool = False) -> int:
        count, dropped = self.index.purge_surrogate(skeys, soft=soft)
        self._remove(dropped)
        return count

    def purge_all(self, *, soft: bool = False) -> int:
        count = self.index.purge_all(soft=soft)
        if not soft:
            self.files.clear()
        return count

    # -- file hosts ----------------------------------------------------------------------
    def allow_host(self, origin: str) -> None:
        """Remember a file host seen in the upstream's pages (the ``/+f/`` route serves it)."""
        self.index.allow_host(origin)

    def host_allowed(self, origin: str) -> bool:
        return self.index.host_allowed(origin)

    def __repr__(self) -> str:
        objects, used = self.usage()
        return (
            f"<{type(self).__name__} {self.files.root} objects={objects} bytes={used} "
            f"capacity={self.capacity}>"
        )


class DiskStore(IndexedStore):
    """LMDB index + body files under one cache directory, shared by every worker. Open it
    in each process after ``fork`` (LMDB handles don't survive a fork)."""

    def __init__(
        self, root: str | os.PathLike[str], capacity: int, map_size: int = 1 << 32
    ) -> None:
        self.root = Path(root)
        self.map_size = map_size
        self.files = BodyFiles(self.root)
        self.objects_dir = self.files.objects_dir
        self.tmp_dir = self.files.tmp_dir
        self.index = self._lmdb = LmdbIndex(self.root, capacity, map_size)

    def prepare(self) -> None:
        """Create directories and clear leftovers of a previous run (call before workers)."""
        self.files.prepare()
        self._lmdb.open()
        try:
            self._lmdb.clear_busy()
        finally:
            self._lmdb.close()

    def open(self) -> None:
        self._lmdb.open()

    def close(self) -> None:
        self._lmdb.close()
