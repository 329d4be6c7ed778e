"""The disk tier: index + body files, purge, eviction, fills, restarts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pkgedge.cache.entry import Entry
from pkgedge.cache.store import DiskStore


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


def put(
    store: DiskStore,
    key: bytes,
    objid: str,
    body: bytes,
    keys: list[str] | None = None,
    vary: tuple[str, ...] = (),
    vkey: bytes | None = None,
) -> Entry:
    tmp = store.tmp_path(objid)
    tmp.write_bytes(body)
    e = _entry(objid, len(body), keys)
    store.commit(key, vkey or key, e, vary, tmp)
    return e


def test_commit_makes_object_visible_with_body(store: DiskStore) -> None:
    put(store, b"/a", "aa01", b"hello")
    _key, e = store.lookup(b"/a", {}, "/a")
    assert e is not None and e.objid == "aa01" and e.size == 5
    assert store.body_path("aa01").read_bytes() == b"hello"
    assert not store.tmp_path("aa01").exists()
    assert store.usage() == (1, 5)


def test_replacing_an_object_accounts_and_removes_old_body(store: DiskStore) -> None:
    put(store, b"/a", "aa01", b"hello")
    put(store, b"/a", "aa02", b"hi")
    assert store.usage() == (1, 2)
    assert not store.body_path("aa01").exists()


def test_vary_variants_are_separate_and_purged_together(store: DiskStore) -> None:
    req_json = {"accept": "application/vnd.pypi.simple.v1+json"}
    req_html = {"accept": "text/html"}
    path = "/simple/foo/"
    kj = store.variant_key(path.encode(), "Accept", req_json, path)
    kh = store.variant_key(path.encode(), "Accept", req_html, path)
    assert kj != kh
    put(store, path.encode(), "aa01", b"{}", vary=("accept",), vkey=kj)
    put(store, path.encode(), "aa02", b"<html>", vary=("accept",), vkey=kh)
    assert store.lookup(path.encode(), req_json, path)[1].objid == "aa01"  # type: ignore[union-attr]
    assert store.lookup(path.encode(), req_html, path)[1].objid == "aa02"  # type: ignore[union-attr]
    assert store.purge_keys([path.encode()]) == 2
    assert store.lookup(path.encode(), req_json, path)[1] is None
    assert store.usage() == (0, 0)


def test_purge_by_surrogate_key_hard_and_soft(store: DiskStore) -> None:
    put(store, b"/simple/foo/", "aa01", b"x", keys=["project/foo", "all-projects"])
    put(store, b"/simple/bar/", "aa02", b"y", keys=["project/bar", "all-projects"])
    assert store.purge_surrogate(["project/foo"], soft=True) == 1
    e = store.lookup(b"/simple/foo/", {}, "/simple/foo/")[1]
    assert e is not None and e.soft_purged and e.ttl(1000.0) < 0
    assert store.purge_surrogate(["all-projects"]) == 2
    assert store.lookup(b"/simple/bar/", {}, "/simple/bar/")[1] is None
    assert store.purge_surrogate(["unknown"]) == 0


def test_purge_all(store: DiskStore) -> None:
    put(store, b"/a", "aa01", b"x")
    put(store, b"/b", "bb01", b"y")
    assert store.purge_all() == 2
    assert store.lookup(b"/a", {}, "/a")[1] is None
    assert store.usage() == (0, 0)


def test_eviction_keeps_within_capacity_and_gives_accessed_objects_a_second_chance(
    store: DiskStore,
) -> None:
    put(store, b"/hot", "ho01", b"h" * 3000)
    put(store, b"/c1", "c101", b"c" * 3000)
    store.touch("ho01")
    store.flush_accesses()
    put(store, b"/c2", "c201", b"c" * 3000)
    put(store, b"/c3", "c301", b"c" * 3000)  # over capacity: evict one
    _objects, used = store.usage()
    assert used <= store.capacity
    assert store.lookup(b"/hot", {}, "/hot")[1] is not None  # accessed: second chance
    assert store.lookup(b"/c1", {}, "/c1")[1] is None  # oldest unaccessed: evicted
    assert not store.body_path("c101").exists()


def test_claims_collapse_fills_and_dead_owners_are_taken_over(store: DiskStore) -> None:
    assert store.claim(b"/a", "x1") is None
    assert store.claim(b"/a", "x2") == (os.getpid(), "x1")  # same process: already busy
    store.unclaim(b"/a", "x2")  # not ours: no effect
    assert store.busy(b"/a") == (os.getpid(), "x1")
    store.unclaim(b"/a", "x1")
    assert store.busy(b"/a") is None
    # a claim by a process that no longer exists is stale
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    import marshal
    import time

    index = store._lmdb
    with index._env.begin(write=True, db=index._dbs["busy"]) as txn:
        txn.put(b"/b", marshal.dumps((pid, "dead", time.time())))
    assert store.busy(b"/b") is None
    assert store.claim(b"/b", "x3") is None


def test_index_survives_reopen_and_prepare_clears_only_leftovers(tmp_path: Path) -> None:
    s = DiskStore(tmp_path / "c", capacity=10_000)
    s.prepare()
    s.open()
    put(s, b"/a", "aa01", b"kept")
    s.tmp_path("half").write_bytes(b"partial")
    s.claim(b"/x", "half")
    s.close()
    s2 = DiskStore(tmp_path / "c", capacity=10_000)
    s2.prepare()
    s2.open()
    e = s2.lookup(b"/a", {}, "/a")[1]
    assert e is not None and s2.body_path(e.objid).read_bytes() == b"kept"
    assert not s2.tmp_path("half").exists()
    assert s2.busy(b"/x") is None


def test_file_hosts_are_remembered(store: DiskStore) -> None:
    assert not store.host_allowed("https://files.test")
    store.allow_host("https://files.test")
    assert store.host_allowed("https://files.test")
