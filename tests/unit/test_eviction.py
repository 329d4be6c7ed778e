"""Eviction policies: one conformance suite for S3FIFO and LRU, then S3-FIFO's own behaviour."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgedge.cache.eviction import LRU, S3FIFO

Factory = Callable[..., Any]
POLICIES = pytest.mark.parametrize("policy", [S3FIFO, LRU], ids=["s3fifo", "lru"])


def recorder() -> tuple[list[tuple[str, str]], Callable[[str, str], None]]:
    calls: list[tuple[str, str]] = []
    return calls, lambda k, v: calls.append((k, v))


# -- conformance: both policies -------------------------------------------------------------


@POLICIES
def test_empty(policy: Factory) -> None:
    cache = policy(100)
    assert len(cache) == 0
    assert cache.bytes_used == 0
    assert cache.capacity == 100
    assert "a" not in cache
    assert cache.get("a") is None
    assert (cache.hits, cache.misses) == (0, 1)
    assert repr(cache).startswith(f"<{policy.__name__} capacity=100 used=0 items=0")


@POLICIES
def test_put_get_counts_hits_and_misses(policy: Factory) -> None:
    cache = policy(100)
    assert cache.put("a", "A", 10) is True
    assert "a" in cache  # __contains__ is not a lookup
    assert cache.get("a") == "A"
    assert cache.get("a") == "A"
    assert cache.get("b") is None
    assert (cache.hits, cache.misses) == (2, 1)
    assert (len(cache), cache.bytes_used) == (1, 10)
    assert "hit_ratio=0.67" in repr(cache)


@POLICIES
def test_replace_updates_value_and_size(policy: Factory) -> None:
    calls, on_evict = recorder()
    cache = policy(100, on_evict)
    cache.put("a", "A1", 10)
    cache.put("b", "B", 20)
    assert cache.put("a", "A2", 30) is True
    assert cache.get("a") == "A2"
    assert (len(cache), cache.bytes_used) == (2, 50)
    cache.put("a", "A3", 5)
    assert (len(cache), cache.bytes_used) == (2, 25)
    assert calls == []  # a replaced value is not an eviction


@POLICIES
def test_replace_that_needs_room_evicts_others_not_itself(policy: Factory) -> None:
    calls, on_evict = recorder()
    cache = policy(100, on_evict)
    for k in "abcde":
        cache.put(k, k.upper(), 20)
    assert cache.put("c", "C2", 100) is True
    assert cache.get("c") == "C2"
    assert (len(cache), cache.bytes_used) == (1, 100)
    assert sorted(calls) == [("a", "A"), ("b", "B"), ("d", "D"), ("e", "E")]


@POLICIES
def test_remove(policy: Factory) -> None:
    calls, on_evict = recorder()
    cache = policy(100, on_evict)
    cache.put("a", "A", 10)
    cache.put("b", "B", 20)
    assert cache.remove("a") is True
    assert cache.remove("a") is False
    assert cache.remove("zz") is False
    assert "a" not in cache
    assert (len(cache), cache.bytes_used) == (1, 20)
    assert calls == []


@POLICIES
def test_clear_keeps_counters_and_does_not_call_on_evict(policy: Factory) -> None:
    calls, on_evict = recorder()
    cache = policy(100, on_evict)
    for k in "abc":
        cache.put(k, k, 10)
    cache.get("a")
    cache.clear()
    assert (len(cache), cache.bytes_used) == (0, 0)
    assert "a" not in cache
    assert (cache.hits, cache.misses) == (1, 0)
    assert calls == []
    assert cache.put("a", "A", 100) is True


@POLICIES
def test_oversized_put_is_rejected(policy: Factory) -> None:
    calls, on_evict = recorder()
    cache = policy(100, on_evict)
    cache.put("a", "A", 10)
    assert cache.put("big", "X", 101) is False
    assert "big" not in cache
    assert (len(cache), cache.bytes_used) == (1, 10)
    # Replacing with an oversized value drops the old one rather than keep it stale.
    assert cache.put("a", "A2", 101) is False
    assert "a" not in cache
    assert (len(cache), cache.bytes_used) == (0, 0)
    assert calls == []
    assert cache.put("exact", "E", 100) is True


@POLICIES
def test_zero_capacity_and_zero_size(policy: Factory) -> None:
    cache = policy(0)
    assert cache.put("a", "A", 1) is False
    assert cache.put("z", "Z", 0) is True
    assert cache.get("z") == "Z"


@POLICIES
def test_invalid_arguments(policy: Factory) -> None:
    with pytest.raises(ValueError, match="capacity"):
        policy(-1)
    with pytest.raises(ValueError, match="size"):
        policy(10).put("a", "A", -1)


@POLICIES
def test_on_evict_sees_a_consistent_cache(policy: Factory) -> None:
    seen: list[tuple[str, bool, int]] = []
    cache: Any = None

    def on_evict(key: str, value: str) -> None:
        seen.append((key, key in cache, cache.bytes_used))
        cache.get("b")  # re-entrant calls are allowed

    cache = policy(30, on_evict)
    for k in "abcd":
        cache.put(k, k, 10)
    assert seen and all(not present and used <= 30 for _, present, used in seen)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "put", "get", "get", "remove"]),
        st.integers(0, 40),  # key
        st.integers(0, 70),  # size: sometimes above capacity
    ),
    max_size=300,
)


@POLICIES
@settings(max_examples=150, deadline=None, database=None)
@given(ops=_ops)
def test_model(policy: Factory, ops: list[tuple[str, int, int]]) -> None:
    """After every operation: capacity holds, bytes add up, on_evict reports exactly the
    entries that vanished for lack of room, and cached values are the latest ones."""
    evicted: list[tuple[int, str]] = []
    cache = policy(64, lambda k, v: evicted.append((k, v)))
    model: dict[int, tuple[str, int]] = {}  # what is cached: key -> (value, size)
    for step, (op, key, size) in enumerate(ops):
        evicted.clear()
        value = f"{key}@{step}"
        if op == "put":
            stored = cache.put(key, value, size)
            assert stored == (size <= 64)
            model.pop(key, None)
            if stored:
                model[key] = (value, size)
        elif op == "get":
            got = cache.get(key)
            assert got == (model[key][0] if key in model else None)
        else:
            assert cache.remove(key) == (key in model)
            model.pop(key, None)
        gone = {k for k in model if k not in cache}
        assert sorted(evicted) == sorted((k, model[k][0]) for k in gone)
        for k in gone:
            del model[k]
        assert len(cache) == len(model)
        assert cache.bytes_used == sum(s for _, s in model.values())
        assert cache.bytes_used <= cache.capacity


# -- S3-FIFO --------------------------------------------------------------------------------


def get_or_put(cache: Any, key: str, size: int = 10) -> bool:
    if cache.get(key) is not None:
        return True
    cache.put(key, key, size)
    return False


def test_one_hit_wonder_scan_keeps_working_set_in_s3fifo_not_lru() -> None:
    # 100 slots of 10 bytes; a working set of 80 keys read a few times, then a crawler
    # fetches 1000 distinct keys exactly once.
    working_set = [f"w{i}" for i in range(80)]
    for policy, survivors in ((S3FIFO, 80), (LRU, 0)):
        cache: Any = policy(1000)
        for _ in range(3):
            for key in working_set:
                get_or_put(cache, key)
        for i in range(1000):
            get_or_put(cache, f"scan{i}")
        hits = sum(get_or_put(cache, key) for key in working_set)
        assert hits == survivors, (policy.__name__, cache)


def test_scan_interleaved_with_working_set_traffic_from_a_cold_start() -> None:
    # Every third request reads one of 60 hot keys, the others are one-time crawler fetches:
    # 180 distinct keys between two reads of a hot key, for 100 slots. Hot keys miss in small
    # at first; the ghost must remember them although main is still empty, so that their
    # next miss puts them in main.
    working_set = [f"w{i}" for i in range(60)]
    ratios = {}
    for policy in (S3FIFO, LRU):
        cache: Any = policy(1000)
        hits = lookups = 0
        for i in range(6000):
            if i % 3:
                get_or_put(cache, f"scan{i}")
                continue
            hit = get_or_put(cache, working_set[(i // 3) % len(working_set)])
            if i >= 1000:  # after warm-up
                hits += hit
                lookups += 1
        ratios[policy.__name__] = hits / lookups
    assert ratios == {"S3FIFO": 1.0, "LRU": 0.0}


def test_one_hit_wonders_go_to_ghost_and_a_return_goes_to_main() -> None:
    cache: S3FIFO[str, str] = S3FIFO(100)  # 10 slots of 10 bytes, small target = 1 slot
    cache.put("hot", "hot", 10)
    cache.get("hot")
    for k in "abcdefghi":
        cache.put(k, k, 10)
    assert len(cache) == 10 and not cache._main
    cache.put("j", "j", 10)  # room: "hot" was read in small -> main; "a" was not -> ghost
    assert list(cache._main) == ["hot"]
    assert list(cache._ghost) == ["a"]
    assert "a" not in cache
    assert cache._main["hot"].freq == 0  # promotion spends the hit
    cache.put("a", "a", 10)
    assert "a" in cache._main
    assert "a" not in cache._small and "a" not in cache._ghost
    assert "small=" in repr(cache) and "main=2" in repr(cache)


def test_freq_is_capped_at_three_and_hits_do_not_reorder() -> None:
    cache: S3FIFO[str, str] = S3FIFO(1000)
    for k in "abc":
        cache.put(k, k, 10)
    for _ in range(10):
        cache.get("a")
    cache.get("b")
    assert cache._entries["a"].freq == 3
    assert cache._entries["b"].freq == 1
    assert cache._entries["c"].freq == 0
    assert list(cache._small) == ["a", "b", "c"]


def test_main_gives_read_entries_a_second_chance_per_hit() -> None:
    cache: S3FIFO[str, str] = S3FIFO(100)  # 10 slots of 10 bytes
    for k in "abcdefghij":
        cache.put(k, k, 10)
        cache.get(k)
    cache.put("x", "x", 10)  # all ten promoted to main with freq 0, then "a" is evicted
    assert list(cache._main) == list("bcdefghij")
    for _ in range(5):
        cache.get("b")  # freq 3
    cache.get("e")  # freq 1
    cache.put("big", "big", 90)  # "x" leaves small, then main must give up 80 bytes
    # Lap 1: "b" 3->2 and "e" 1->0 reinserted at the tail, c d f g h i j evicted;
    # lap 2: "b" 2->1, "e" evicted.
    assert list(cache._main) == ["b"]
    assert cache._main["b"].freq == 1
    assert "x" in cache._ghost


def test_ghost_is_bounded_by_what_main_holds() -> None:
    cache: S3FIFO[int, int] = S3FIFO(1000)
    for i in range(20):
        cache.put(i, i, 10)
        cache.get(i)
    for i in range(20, 5000):
        cache.put(i, i, 10)
        assert len(cache._ghost) <= max(len(cache._main), len(cache) * 9 // 10)
    assert len(cache._ghost) >= 80
    for key in list(cache._main) + list(cache._small):
        cache.remove(key)
    assert not cache._ghost
    cache.put(1, 1, 10)
    cache.clear()
    assert not cache._ghost
