"""Shared behaviour signals, the pure part (security/sharedsignals.py): alone they decide as
the local detectors do; what a sync drains; how the cluster's figures are merged into a
decision (the larger figure, never a sum; only within its window; dropped when Redis is down).
The Lua side runs against a real Redis in tests/integration/test_cluster_signals.py."""

from __future__ import annotations

import random

import pytest

from pkgedge.security.sharedsignals import (
    PENDING_MAX,
    SharedBusting,
    SharedEnumeration,
    SharedNotFound,
    SharedRepeats,
    SharedSignals,
    count_key,
    distinct_cap,
    item_hash,
)
from pkgedge.security.signals import (
    CacheBusting,
    CountSettings,
    Enumeration,
    NotFoundRatio,
    RatioSettings,
    RepeatDownloads,
    SignalHit,
)

T0 = 5000.0
WHEEL = "/files/ab/cd/numpy-2.0.0-py3-none-any.whl"


def test_alone_the_shared_twins_decide_as_the_local_detectors() -> None:
    rng = random.Random(10)
    counts = CountSettings(limit=4, window=30.0, max_entries=40)
    ratio = RatioSettings(ratio=0.4, min_requests=5, window=30.0, max_entries=40)
    pairs = [
        (RepeatDownloads(counts), SharedRepeats(counts)),
        (NotFoundRatio(ratio), SharedNotFound(ratio)),
        (Enumeration(counts), SharedEnumeration(counts)),
        (CacheBusting(counts), SharedBusting(counts)),
    ]
    now = T0
    hits = [0, 0, 0, 0]
    for _ in range(4000):
        now += rng.expovariate(20.0)
        client = f"c{rng.randrange(12)}"
        item = f"/simple/p{rng.randrange(9)}/"
        status = rng.choice((200, 200, 404))
        query = rng.choice(("", "", f"x={rng.randrange(7)}"))
        got = [
            (pairs[0][0].observe(client, item, now), pairs[0][1].observe(client, item, now)),
            (pairs[1][0].observe(client, status, now), pairs[1][1].observe(client, status, now)),
            (pairs[2][0].observe(client, item, now), pairs[2][1].observe(client, item, now)),
            (
                pairs[3][0].observe(client, item, query, now),
                pairs[3][1].observe(client, item, query, now),
            ),
        ]
        for i, (plain, shared) in enumerate(got):
            assert plain == shared
            hits[i] += plain is not None
    assert all(hits), hits  # every detector fired (and its twin with it)


def test_counts_drain_first_last_and_counts_per_key() -> None:
    sig = SharedNotFound(RatioSettings(ratio=0.5, min_requests=10, window=300.0))
    sig.observe("a", 404, T0 + 1)
    sig.observe("a", 200, T0 + 3)
    sig.observe("a", 404, T0 + 2)  # a clock that ran back: first/last still bound the events
    sig.observe("b", 200, T0 + 4)
    assert sig.drain() == {"a": [T0 + 1, T0 + 3, 3.0, 2.0], "b": [T0 + 4, T0 + 4, 1.0, 0.0]}
    assert sig.drain() == {}
    rep = SharedRepeats(CountSettings(limit=5, window=60.0))
    rep.observe("a", WHEEL, T0)
    rep.observe("a", WHEEL, T0 + 1)
    assert rep.drain() == {("a", WHEEL): [T0, T0 + 1, 2.0, 0.0]}


def test_distinct_drain_holds_only_items_new_to_the_local_window() -> None:
    sig = SharedEnumeration(CountSettings(limit=10, window=600.0))
    sig.observe("a", "/simple/x/", T0)
    sig.observe("a", "/simple/x/", T0 + 1)  # seen already: nothing more to tell
    sig.observe("a", "/simple/y/", T0 + 2)
    assert sig.drain() == {"a": {"/simple/x/": T0, "/simple/y/": T0 + 2}}
    sig.observe("a", "/simple/x/", T0 + 3)
    assert sig.drain() == {}
    bust = SharedBusting(CountSettings(limit=10, window=600.0))
    bust.observe("a", "/simple/x/", "", T0)  # no query: not an item
    bust.observe("a", "/simple/x/", "v=1", T0)
    assert bust.drain() == {"a": {"/simple/x/?v=1": T0}}


def test_pending_is_bounded() -> None:
    sig = SharedRepeats(CountSettings(limit=5, window=60.0))
    for i in range(PENDING_MAX + 10):
        sig.observe("a", f"/f{i}.whl", T0)
    assert len(sig.drain()) == PENDING_MAX


def test_the_cluster_count_makes_a_hit_the_local_one_would_not() -> None:
    sig = SharedRepeats(CountSettings(limit=5, window=60.0))
    key = ("a", WHEEL)
    for t in range(3):
        assert sig.observe("a", WHEEL, T0 + t) is None
    # the record holds this node's 3 and 4 from other nodes, all within 10 s
    sig.settle({key: (7.0, 0.0, T0 - 5)}, T0 + 3)
    hit = sig.observe("a", WHEEL, T0 + 4)
    # the larger figure (7), not local + cluster (4 + 7): the 7 holds this node's 3 already
    assert hit == SignalHit("ci-loop-without-cache", "a", 7, 5, True)
    again = sig.observe("a", WHEEL, T0 + 5)
    assert again is not None and not again.first  # the figure's hit was counted once
    # another sync of the same record keeps that; the local count passes it later
    sig.settle({key: (8.0, 0.0, T0 - 5)}, T0 + 5)
    later = sig.observe("a", WHEEL, T0 + 6)
    assert later is not None and not later.first and later.value == 8


def test_a_cluster_record_counts_only_within_its_window() -> None:
    sig = SharedRepeats(CountSettings(limit=5, window=60.0))
    sig.settle({("a", WHEEL): (50.0, 0.0, T0)}, T0)
    assert sig.observe("a", WHEEL, T0 + 59) is not None
    other = SharedRepeats(CountSettings(limit=5, window=60.0))
    other.settle({("a", WHEEL): (50.0, 0.0, T0)}, T0)
    # 60 s after the record began its window is over: only the local count (1) is used
    assert other.observe("a", WHEEL, T0 + 60) is None
    other.settle({}, T0 + 61)
    assert other.remote == {}  # and it was dropped at the next sync


def test_not_found_uses_the_cluster_pair_and_never_mixes_figures() -> None:
    sig = SharedNotFound(RatioSettings(ratio=0.5, min_requests=10, window=300.0))
    for _ in range(4):
        assert sig.observe("a", 200, T0) is None
    # others saw 5 misses in 9 requests: with this node's 4 (synced) → 5/9 under min_requests
    sig.settle({"a": (9.0, 5.0, T0)}, T0)
    assert sig.observe("a", 200, T0 + 1) is None  # 9 requests: below min_requests
    sig.settle({"a": (12.0, 7.0, T0)}, T0 + 1)
    hit = sig.observe("a", 200, T0 + 2)  # locally 0 misses in 6: the cluster's 7/12
    assert hit == SignalHit("high-404-ratio", "a", 7 / 12, 0.5, True)
    # a record at the ratio (6/12) is not over: no hit, whatever the local 200s
    sig.settle({"a": (12.0, 6.0, T0)}, T0 + 2)
    assert sig.observe("a", 200, T0 + 3) is None


def test_the_cluster_distinct_count_makes_a_hit() -> None:
    sig = SharedBusting(CountSettings(limit=50, window=600.0))
    for i in range(20):
        assert sig.observe("a", "/simple/x/", f"v={i}", T0) is None
    sig.settle({"a": (45.0, T0 - 100)}, T0)
    assert sig.observe("a", "/simple/x/", "v=20", T0 + 1) is None  # max(21, 45) <= 50
    sig.settle({"a": (51.0, T0 - 100)}, T0 + 1)
    hit = sig.observe("a", "/simple/x/", "v=0", T0 + 2)  # even an item seen before here
    assert hit == SignalHit("cache-busting", "a", 51, 50, True)
    assert sig.observe("b", "/simple/x/", "v=0", T0 + 2) is None  # per client
    # once its oldest item is a window old, the figure no longer counts
    assert sig.observe("a", "/simple/x/", "v=99", T0 + 500) is None


def test_enumeration_uses_the_cluster_count() -> None:
    sig = SharedEnumeration(CountSettings(limit=3, window=600.0))
    assert sig.observe("a", "/simple/x/", T0) is None
    sig.settle({"a": (4.0, T0)}, T0)
    hit = sig.observe("a", "/simple/x/", T0 + 1)
    assert hit is not None and hit.first and hit.value == 4


def test_forget_leaves_local_counts_only() -> None:
    shared = SharedSignals(
        CountSettings(limit=5, window=60.0),
        RatioSettings(),
        CountSettings(limit=3, window=600.0),
        CountSettings(limit=3, window=600.0),
    )
    shared.busting.settle({"a": (40.0, T0)}, T0)
    shared.repeats.settle({("a", WHEEL): (40.0, 0.0, T0)}, T0)
    shared.forget()
    assert shared.busting.observe("a", "/simple/x/", "v=1", T0 + 1) is None
    assert shared.repeats.observe("a", WHEEL, T0 + 1) is None


def test_remote_figures_are_bounded() -> None:
    sig = SharedBusting(CountSettings(limit=3, window=600.0, max_entries=10))
    sig.settle({f"c{i}": (1.0, T0) for i in range(25)}, T0)
    assert len(sig.remote) == 10 and "c24" in sig.remote and "c0" not in sig.remote


def test_hashes_and_keys_are_the_same_in_every_process() -> None:
    # fixed values: every node must name an item the same way (hash() is salted per process)
    assert item_hash("/simple/x/?v=1") == bytes.fromhex("6a4adcbb9cb2809c")
    assert len(item_hash("")) == 8
    assert count_key("1.2.3.4") == "1.2.3.4"
    assert count_key(("1.2.3.4", WHEEL)) == "1.2.3.4 " + item_hash(WHEEL).hex()
    assert distinct_cap(50) == 116


@pytest.mark.parametrize("limit", [0, 1, 1000])
def test_distinct_cap_is_above_the_limit(limit: int) -> None:
    assert distinct_cap(limit) > limit
