"""The edge's calls into ``store.files`` (fills' head sidecars, small and encoded reads),
on a MemoryStore: no worker processes needed."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from pkgedge.cache.entry import Entry
from pkgedge.cache.memory import MemoryTier
from pkgedge.cache.memstore import MemoryStore
from pkgedge.config import build_edge_settings
from pkgedge.edge.deliver import Delivery
from pkgedge.edge.fastpath import HotHits
from pkgedge.edge.fill import RemoteFill, State
from pkgedge.stats.counters import Counters


@pytest.fixture
def store(tmp_path: Path) -> MemoryStore:
    s = MemoryStore(tmp_path / "cache", capacity=1 << 20)
    s.prepare()
    s.open()
    return s


def follow(store: MemoryStore, objid: str) -> RemoteFill:
    assert store.claim(b"/k", objid) is None
    return RemoteFill(store, b"/k", objid)


def test_a_remote_fill_follows_the_head_and_the_temp_file(store: MemoryStore) -> None:
    fill = follow(store, "ab12")
    fill.refresh()
    assert fill.state is State.PENDING  # no head yet, the claim is live
    store.files.publish_head("ab12", ("obj", 200, [("etag", '"1"')], 5, 2.0, 1000.0))
    fd, _ = store.files.open_tmp("ab12")
    os.write(fd, b"abc")
    fill.refresh()
    assert fill.state is State.STREAMING
    assert (fill.status, fill.headers, fill.length) == (200, [("etag", '"1"')], 5)
    assert (fill.initial_age, fill.response_time, fill.written) == (2.0, 1000.0, 3)
    os.write(fd, b"de")
    os.close(fd)
    fill.refresh()
    assert fill.state is State.DONE and fill.written == 5


def test_a_remote_fill_that_became_a_pass_or_ended_is_gone(store: MemoryStore) -> None:
    fill = follow(store, "ab12")
    store.files.publish_head("ab12", ("pass", 403, [], None, 0.0, 0.0))
    fill.refresh()
    assert fill.state is State.GONE
    fill = RemoteFill(store, b"/k", "cd34")
    store.files.publish_head("cd34", ("obj", 200, [], 5))  # a malformed record: ignored
    fill.refresh()
    assert fill.state is State.PENDING
    store.unclaim(b"/k", "ab12")
    fill.refresh()
    assert fill.state is State.GONE  # no head and nobody fills the key


def responder(store: MemoryStore) -> Delivery:
    settings = build_edge_settings(
        {"cache_dir": str(store.root)},
        environ={},
        resolve_upstream=lambda: "http://index.test/simple",
    )
    return Delivery(settings, store, MemoryTier(1 << 20), Counters(1), HotHits([0]))


def test_read_small_reads_bodies_of_the_recorded_size_only(store: MemoryStore) -> None:
    out = responder(store)
    fd, tmp = store.files.open_tmp("ab12")
    os.write(fd, b"x" * 2000)
    os.close(fd)
    entry = Entry("ab12", 200, [], response_time=0.0, initial_age=0.0, lifetime=60.0, size=2000)
    store.commit(b"/a", b"/a", entry, (), tmp)
    wrong = Entry("ab12", 200, [], response_time=0.0, initial_age=0.0, lifetime=60.0, size=1)
    assert out.read_small(wrong, None) is None
    assert bytes(out.read_small(entry, None) or b"") == b"x" * 2000
    body = out.read_small(entry, "gzip")
    assert body is not None and gzip.decompress(body) == b"x" * 2000
    assert store.files.encoded_path("ab12", "gzip").read_bytes() == bytes(body)
    missing = Entry("ef56", 200, [], response_time=0.0, initial_age=0.0, lifetime=60.0, size=1)
    assert out.read_small(missing, "br") is None
