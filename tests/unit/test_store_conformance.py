"""The Store contract, run against every implementation (LMDB DiskStore, MemoryStore)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pkgedge.cache.entry import Entry
from pkgedge.cache.memstore import MemoryStore
from pkgedge.cache.store import DiskStore, Store

CAPACITY = 10_000


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


@pytest.fixture(params=["disk", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "disk":
        s = DiskStore(tmp_path / "cache", capacity=CAPACITY)
    else:
        s = MemoryStore(tmp_path / "cache", capacity=CAPACITY)
    s.prepare()
    s.open()
    yield s
    s.close()


def put(
    store: Store,
    key: bytes,
    objid: str,
    body: bytes,
    keys: list[str] | None = None,
    vary: tuple[str, ...] = (),
    vkey: bytes | None = None,
) -> Entry:
    fd, tmp = store.files.open_tmp(objid)
    try:
        os.write(fd, body)
    finally:
        os.close(fd)
    e = _entry(objid, len(body), keys)
    store.commit(key, vkey or key, e, vary, tmp)
    return e


def found(store: Store, key: bytes, req: dict[str, str] | None = None) -> Entry | None:
    return store.lookup(key, req or {}, key.decode())[1]


def with_copies(store: Store, objid: str) -> list[Path]:
    """Make the gzip and br copies of a stored body; return all three paths."""
    for coding in ("gzip", "br"):
        assert store.files.read_encoded(objid, coding, lambda b, c: c.encode() + b) is not None
    return [store.body_path(objid), *(store.files.encoded_path(objid, c) for c in ("gzip", "br"))]


# -- commit and lookup ---------------------------------------------------------------------
def test_commit_makes_object_visible_with_body(store: Store) -> None:
    assert found(store, b"/a") is None
    put(store, b"/a", "aa01", b"hello", keys=["k1"])
    key, e = store.lookup(b"/a", {}, "/a")
    assert key == b"/a"
    assert e is not None and (e.objid, e.size, e.keys) == ("aa01", 5, ["k1"])
    assert store.body_path("aa01").read_bytes() == b"hello"
    assert store.files.read("aa01", 5) == b"hello"
    assert not store.tmp_path("aa01").exists()
    assert store.usage() == (1, 5)


def test_replacing_an_object_accounts_and_removes_old_body_and_copies(store: Store) -> None:
    put(store, b"/a", "aa01", b"hello")
    old_files = with_copies(store, "aa01")
    put(store, b"/a", "aa02", b"hi")
    assert store.usage() == (1, 2)
    assert found(store, b"/a").objid == "aa02"  # type: ignore[union-attr]
    assert not any(p.exists() for p in old_files)


def test_a_looked_up_entry_is_a_copy(store: Store) -> None:
    put(store, b"/a", "aa01", b"hello")
    e = found(store, b"/a")
    assert e is not None
    e.status = 404
    assert found(store, b"/a").status == 200  # type: ignore[union-attr]


# -- Vary ----------------------------------------------------------------------------------
def test_vary_marker_leads_lookups_to_the_variant(store: Store) -> None:
    req_json = {"accept": "application/vnd.pypi.simple.v1+json"}
    req_html = {"accept": "text/html"}
    path = "/simple/foo/"
    primary = path.encode()
    assert store.variant_key(primary, None, req_json, path) == primary
    kj = store.variant_key(primary, "Accept", req_json, path)
    kh = store.variant_key(primary, "Accept", req_html, path)
    assert len({kj, kh, primary}) == 3
    put(store, primary, "aa01", b"{}", vary=("accept",), vkey=kj)
    assert store.lookup(primary, req_html, path) == (kh, None)  # the marker names the variant
    put(store, primary, "aa02", b"<html>", vary=("accept",), vkey=kh)
    assert store.lookup(primary, req_json, path)[1].objid == "aa01"  # type: ignore[union-attr]
    assert store.lookup(primary, req_html, path)[1].objid == "aa02"  # type: ignore[union-attr]
    assert store.usage() == (2, 8)


def test_an_object_that_starts_to_vary_is_replaced_by_its_variants(store: Store) -> None:
    put(store, b"/simple/foo/", "aa01", b"plain")
    req = {"accept": "text/html"}
    vkey = store.variant_key(b"/simple/foo/", "Accept", req, "/simple/foo/")
    put(store, b"/simple/foo/", "aa02", b"<html>", vary=("accept",), vkey=vkey)
    assert store.lookup(b"/simple/foo/", req, "/simple/foo/")[1].objid == "aa02"  # type: ignore[union-attr]
    assert store.usage() == (1, 6)
    assert not store.body_path("aa01").exists()


def test_variants_are_purged_together_soft_and_hard(store: Store) -> None:
    path = "/simple/foo/"
    primary = path.encode()
    reqs = [{"accept": "application/vnd.pypi.simple.v1+json"}, {"accept": "text/html"}]
    for n, req in enumerate(reqs):
        vkey = store.variant_key(primary, "Accept", req, path)
        put(store, primary, f"aa0{n}", b"x" * (n + 1), vary=("accept",), vkey=vkey)
    put(store, b"/simple/foobar/", "bb01", b"other")  # shares the prefix, not the key
    assert store.purge_keys([primary], soft=True) == 2
    assert all(store.lookup(primary, r, path)[1].soft_purged for r in reqs)  # type: ignore[union-attr]
    assert store.purge_keys([primary]) == 2
    assert all(store.lookup(primary, r, path)[1] is None for r in reqs)
    assert not store.body_path("aa00").exists() and not store.body_path("aa01").exists()
    assert found(store, b"/simple/foobar/") is not None
    assert store.usage() == (1, 5)


# -- revalidation --------------------------------------------------------------------------
def test_update_rewrites_metadata_of_the_same_object_only(store: Store) -> None:
    put(store, b"/a", "aa01", b"hello")
    store.purge_keys([b"/a"], soft=True)
    e = found(store, b"/a")
    assert e is not None and e.soft_purged
    e.soft_purged, e.lifetime, e.headers = False, 300.0, [("etag", '"v2"')]
    store.update(b"/a", e)
    e2 = found(store, b"/a")
    assert e2 is not None and not e2.soft_purged
    assert (e2.lifetime, e2.headers) == (300.0, [("etag", '"v2"')])
    other = _entry("zz99", 5)
    store.update(b"/a", other)  # a different object: the record stays
    store.update(b"/missing", other)  # nothing there: nothing created
    assert found(store, b"/a").objid == "aa01"  # type: ignore[union-attr]
    assert found(store, b"/missing") is None
    assert store.usage() == (1, 5)


# -- collapsing ----------------------------------------------------------------------------
def test_claim_busy_unclaim(store: Store) -> None:
    me = os.getpid()
    assert store.busy(b"/a") is None
    assert store.claim(b"/a", "x1") is None
    assert store.claim(b"/a", "x2") == (me, "x1")  # already being filled
    assert store.busy(b"/a") == (me, "x1")
    store.unclaim(b"/a", "x2")  # not the holder: no effect
    assert store.busy(b"/a") == (me, "x1")
    store.unclaim(b"/a", "x1")
    assert store.busy(b"/a") is None
    assert store.claim(b"/a", "x3") is None


def test_a_stale_claim_is_taken_over(store: Store) -> None:
    assert store.claim(b"/a", "x1") is None
    assert store.claim(b"/a", "x2", stale_after=0.0) is None
    assert store.busy(b"/a") == (os.getpid(), "x2")


def test_commit_ends_the_claim_of_its_key(store: Store) -> None:
    assert store.claim(b"/a", "aa01") is None
    assert store.claim(b"/b", "bb01") is None
    put(store, b"/a", "aa01", b"x")
    assert store.busy(b"/a") is None
    assert store.busy(b"/b") == (os.getpid(), "bb01")


# -- purge ---------------------------------------------------------------------------------
def test_purge_by_key_soft_keeps_the_body_hard_removes_it_with_copies(store: Store) -> None:
    put(store, b"/a", "aa01", b"hello")
    paths = with_copies(store, "aa01")
    assert store.purge_keys([b"/a", b"/unknown"], soft=True) == 1
    e = found(store, b"/a")
    assert e is not None and e.soft_purged and e.ttl(1000.0) < 0
    assert all(p.exists() for p in paths) and store.usage() == (1, 5)
    assert store.purge_keys([b"/a"]) == 1
    assert found(store, b"/a") is None
    assert not any(p.exists() for p in paths)
    assert store.usage() == (0, 0)
    assert store.purge_keys([b"/a"]) == 0


def test_purge_by_surrogate_key_hard_and_soft(store: Store) -> None:
    put(store, b"/simple/foo/", "aa01", b"x", keys=["project/foo", "all-projects"])
    put(store, b"/simple/bar/", "aa02", b"y", keys=["project/bar", "all-projects"])
    put(store, b"/other", "aa03", b"z")
    assert store.purge_surrogate(["project/foo"], soft=True) == 1
    assert found(store, b"/simple/foo/").soft_purged  # type: ignore[union-attr]
    assert not found(store, b"/simple/bar/").soft_purged  # type: ignore[union-attr]
    assert store.purge_surrogate(["all-projects"]) == 2
    assert found(store, b"/simple/foo/") is None and found(store, b"/simple/bar/") is None
    assert not store.body_path("aa01").exists() and not store.body_path("aa02").exists()
    assert found(store, b"/other") is not None
    assert store.usage() == (1, 1)
    assert store.purge_surrogate(["unknown", "all-projects"]) == 0


def test_purge_all_soft_then_hard(store: Store) -> None:
    put(store, b"/a", "aa01", b"x")
    put(store, b"/b", "bb01", b"yy")
    paths = with_copies(store, "aa01")
    assert store.purge_all(soft=True) == 2
    assert found(store, b"/a").soft_purged and found(store, b"/b").soft_purged  # type: ignore[union-attr]
    assert store.usage() == (2, 3)
    assert store.purge_all() == 2
    assert found(store, b"/a") is None and found(store, b"/b") is None
    assert not any(p.exists() for p in paths) and not store.body_path("bb01").exists()
    assert store.usage() == (0, 0)
    put(store, b"/c", "cc01", b"after")  # the store works on after a purge of everything
    assert found(store, b"/c") is not None and store.usage() == (1, 5)


def test_generation_changes_after_every_change(store: Store) -> None:
    gen = store.generation
    seen = [gen[0]]

    def changed() -> bool:
        seen.append(gen[0])
        return seen[-1] != seen[-2]

    e = put(store, b"/a", "aa01", b"x", keys=["k"])
    assert changed()
    store.update(b"/a", e)
    assert changed()
    store.purge_keys([b"/a"], soft=True)
    assert changed()
    store.purge_surrogate(["k"], soft=True)
    assert changed()
    store.purge_all(soft=True)
    assert changed()
    store.purge_all()
    assert changed()
    found(store, b"/a")
    store.claim(b"/b", "x")
    store.allow_host("https://files.test")
    assert not changed()  # reads, claims and hosts change no object


# -- eviction ------------------------------------------------------------------------------
def test_eviction_keeps_within_capacity_and_removes_bodies(store: Store) -> None:
    for n in range(5):
        put(store, f"/o{n}".encode(), f"o{n:03d}", bytes(3000))
        assert store.usage()[1] <= store.capacity
    assert [found(store, f"/o{n}".encode()) is not None for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert not store.body_path("o000").exists() and not store.body_path("o001").exists()
    assert store.usage() == (3, 9000)


def test_eviction_gives_accessed_objects_one_second_chance(store: Store) -> None:
    put(store, b"/hot", "ho01", b"h" * 3000)
    put(store, b"/c1", "c101", b"c" * 3000)
    store.touch("ho01")
    store.flush_accesses()
    put(store, b"/c2", "c201", b"c" * 3000)
    put(store, b"/c3", "c301", b"c" * 3000)  # over capacity: evict one
    assert found(store, b"/hot") is not None  # accessed: second chance
    assert found(store, b"/c1") is None  # oldest unaccessed: evicted
    assert not store.body_path("c101").exists()
    put(store, b"/c4", "c401", b"c" * 3000)  # /hot was queued again behind /c3
    put(store, b"/c5", "c501", b"c" * 3000)
    assert found(store, b"/c2") is None and found(store, b"/c3") is None
    assert found(store, b"/hot") is not None
    put(store, b"/c6", "c601", b"c" * 3000)  # not touched since: its chance is used up
    assert found(store, b"/hot") is None
    assert not store.body_path("ho01").exists()
    assert store.usage() == (3, 9000)


def test_an_object_larger_than_the_capacity_does_not_stay(store: Store) -> None:
    put(store, b"/small", "sm01", b"s")
    put(store, b"/big", "bg01", bytes(CAPACITY + 1))
    assert found(store, b"/big") is None and found(store, b"/small") is None
    assert store.usage() == (0, 0)


# -- file hosts and paths ------------------------------------------------------------------
def test_file_hosts_are_remembered(store: Store) -> None:
    assert not store.host_allowed("https://files.test")
    store.allow_host("https://files.test")
    assert store.host_allowed("https://files.test")
    assert not store.host_allowed("https://other.test")


def test_paths_refuse_what_is_not_an_object_id(store: Store) -> None:
    assert store.body_path("ab12").parent.name == "ab"
    for bad in ("", "../x", "a/b", "x.y"):
        with pytest.raises(ValueError, match="not an object id"):
            store.body_path(bad)
        with pytest.raises(ValueError, match="not an object id"):
            store.tmp_path(bad)


def test_repr_names_the_store_and_its_usage(store: Store) -> None:
    put(store, b"/a", "aa01", b"hello")
    text = repr(store)
    assert type(store).__name__ in text and "objects=1 bytes=5" in text
