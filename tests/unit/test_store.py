"""The disk tier only: what the Store contract (test_store_conformance.py) cannot show with
one process: claims of dead processes, other processes' commits, restarts, bad cache dirs."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pkgedge.cache.entry import Entry
from pkgedge.cache.store import DiskStore
from pkgedge.errors import StoreError


def _entry(objid: str, size: int, keys: list[str] | None = None) -> Entry:
    return Entry(
        objid,
        200,
        [("content-type", "text/html")],
        response_time=1000.0,
        initial_age=0.0,
        lifetime=60.0,
        size=size,
        keys=keys or [],
    )


@pytest.fixture
def store(tmp_path: Path) -> DiskStore:
    s = DiskStore(tmp_path / "cache", capacity=10_000)
    s.prepare()
    s.open()
    return s


def put(store: DiskStore, key: bytes, objid: str, body: bytes) -> Entry:
    tmp = store.tmp_path(objid)
    tmp.write_bytes(body)
    e = _entry(objid, len(body))
    store.commit(key, key, e, (), tmp)
    return e


def test_claims_of_dead_processes_are_taken_over(store: DiskStore) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    index = store._lmdb
    with index._env.begin(write=True, db=index._dbs["busy"]) as txn:
        txn.put(b"/b", marshal.dumps((pid, "dead", time.time())))
    assert store.busy(b"/b") is None
    assert store.claim(b"/b", "x3") is None
    assert store.busy(b"/b") == (os.getpid(), "x3")


_OTHER_WORKER = """
import sys
from pkgedge.cache.entry import Entry
from pkgedge.cache.store import DiskStore
s = DiskStore(sys.argv[1], capacity=10_000)
s.open()
s.tmp_path("ot01").write_bytes(b"from another process")
s.commit(b"/o", b"/o", Entry("ot01", 200, [], response_time=1.0, initial_age=0.0,
                             lifetime=60.0, size=20), (), s.tmp_path("ot01"))
s.purge_keys([b"/mine"])
s.close()
"""


def test_another_process_commits_and_purges_are_seen_at_once(store: DiskStore) -> None:
    put(store, b"/mine", "mi01", b"mine")
    gen = store.generation
    before = gen[0]
    subprocess.run([sys.executable, "-c", _OTHER_WORKER, str(store.root)], check=True, timeout=60)
    assert gen[0] == before + 2  # the shared counter, through this process's mapping
    e = store.lookup(b"/o", {}, "/o")[1]
    assert e is not None and store.files.read(e.objid, e.size) == b"from another process"
    assert store.lookup(b"/mine", {}, "/mine")[1] is None
    assert not store.body_path("mi01").exists()
    assert store.usage() == (1, 20)


def test_index_survives_reopen_and_prepare_clears_only_leftovers(tmp_path: Path) -> None:
    s = DiskStore(tmp_path / "c", capacity=10_000)
    s.prepare()
    s.open()
    put(s, b"/a", "aa01", b"kept")
    s.tmp_path("half").write_bytes(b"partial")
    s.files.publish_head("half", ("obj", 200, [], 7, 0.0, 0.0))
    s.claim(b"/x", "half")
    generation = s.generation[0]
    s.close()
    s2 = DiskStore(tmp_path / "c", capacity=10_000)
    s2.prepare()
    s2.open()
    e = s2.lookup(b"/a", {}, "/a")[1]
    assert e is not None and s2.body_path(e.objid).read_bytes() == b"kept"
    assert not s2.tmp_path("half").exists()
    assert s2.files.read_head("half") is None
    assert s2.busy(b"/x") is None
    assert s2.generation[0] == generation
    assert s2.usage() == (1, 4)


def test_an_unusable_cache_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StoreError, match="cannot use cache dir"):
        DiskStore(blocker / "cache", capacity=1).prepare()
    with pytest.raises(StoreError, match="cannot open cache index"):
        DiskStore(blocker / "cache", capacity=1).open()


def test_generation_is_unavailable_while_closed(tmp_path: Path) -> None:
    s = DiskStore(tmp_path / "c", capacity=1)
    with pytest.raises(StoreError, match="not open"):
        s.generation  # noqa: B018
