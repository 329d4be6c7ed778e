"""Token buckets, eviction, the penalty box. Time is a plain float (no sleeps)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pkgedge.errors import ConfigError
from pkgedge.security.ratelimit import (
    BucketSpec,
    MemoryStore,
    Penalty,
    PenaltyBox,
    RateLimiter,
    Store,
    refill,
    take_tokens,
)

T0 = 1000.0


def limiter(rate: float = 1.0, burst: float = 5.0) -> RateLimiter:
    return RateLimiter({"client": BucketSpec(rate, burst)})


def test_burst_then_limited() -> None:
    rl = limiter(rate=1.0, burst=5.0)
    for i in range(5):
        d = rl.take("a", 1, T0, "client")
        assert d.allowed and d.reason == "allowed"
        assert d.remaining == pytest.approx(4 - i)
        assert d.retry_after == 0.0
    d = rl.take("a", 1, T0, "client")
    assert not d.allowed
    assert d.reason == "limited"
    assert d.spec == "client"
    assert d.retry_after == pytest.approx(1.0)
    assert d.remaining == 0.0


def test_refill_rate_and_cap() -> None:
    rl = limiter(rate=2.0, burst=4.0)
    for _ in range(4):
        assert rl.take("a", 1, T0, "client").allowed
    assert not rl.take("a", 1, T0, "client").allowed
    # 0.5 s at 2/s is one token
    assert rl.take("a", 1, T0 + 0.5, "client").allowed
    assert not rl.take("a", 1, T0 + 0.5, "client").allowed
    # an hour idle refills to burst, not beyond
    d = rl.take("a", 1, T0 + 3600, "client")
    assert d.remaining == pytest.approx(3.0)


def test_retry_after_is_exact() -> None:
    rl = limiter(rate=3.0, burst=10.0)
    assert rl.take("a", 10, T0, "client").allowed
    d = rl.take("a", 4, T0 + 0.1, "client")  # 0.3 tokens now, 4 needed
    assert not d.allowed
    assert d.retry_after == pytest.approx((4 - 0.3) / 3.0)
    assert not rl.take("a", 4, T0 + 0.1 + d.retry_after * 0.99, "client").allowed
    assert rl.take("a", 4, T0 + 0.1 + d.retry_after, "client").allowed


@given(
    rate=st.floats(0.01, 1000),
    burst=st.floats(1, 1000),
    cost=st.floats(0.1, 2000),
    now=st.floats(0, 2e9),
    gap=st.floats(0, 10),
)
def test_retry_after_always_suffices(
    rate: float, burst: float, cost: float, now: float, gap: float
) -> None:
    rl = limiter(rate=rate, burst=burst)
    rl.take("k", burst, now, "client")  # empty it
    d = rl.take("k", cost, now + gap, "client")
    if not d.allowed:
        assert d.retry_after > 0
        assert rl.take("k", cost, now + gap + d.retry_after, "client").allowed


def test_costs_charge_by_origin_cost() -> None:
    rl = limiter(rate=1.0, burst=20.0)
    assert rl.take("a", 10, T0, "client").allowed  # a miss
    assert rl.take("a", 1, T0, "client").allowed  # a hit
    d = rl.take("a", 10, T0, "client")  # 9 left, a second miss does not fit
    assert not d.allowed and d.retry_after == pytest.approx(1.0)
    assert rl.take("a", 1, T0, "client").allowed  # hits still do


def test_cost_above_burst_runs_into_debt() -> None:
    rl = limiter(rate=1.0, burst=5.0)
    d = rl.take("a", 8, T0, "client")
    assert d.allowed and d.reason == "allowed-debt" and d.remaining == 0.0
    d = rl.take("a", 1, T0, "client")  # -3 tokens: 4 s to get back to 1
    assert not d.allowed and d.retry_after == pytest.approx(4.0)
    assert not rl.take("a", 8, T0 + 7.9, "client").allowed  # needs a full bucket
    assert rl.take("a", 8, T0 + 8, "client").allowed


def test_odd_costs() -> None:
    rl = limiter(rate=1.0, burst=5.0)
    assert rl.take("a", -3, T0, "client").remaining == 5.0
    assert rl.take("a", math.nan, T0, "client").remaining == 5.0
    d = rl.take("a", math.inf, T0, "client")
    assert d.allowed and d.remaining == 0.0
    assert rl.take("a", 0, T0, "client").allowed


def test_time_running_back_does_not_refill_or_break() -> None:
    rl = limiter(rate=1.0, burst=2.0)
    rl.take("a", 2, T0, "client")
    assert not rl.take("a", 1, T0 - 100, "client").allowed
    assert rl.take("a", 1, T0 + 1, "client").allowed


def test_keys_and_specs_are_independent() -> None:
    rl = RateLimiter({"client": BucketSpec(1, 1), "throttled": BucketSpec(0.1, 1)})
    assert rl.take("a", 1, T0, "client").allowed
    assert rl.take("b", 1, T0, "client").allowed
    assert rl.take("a", 1, T0, "throttled").allowed
    assert not rl.take("a", 1, T0 + 1, "throttled").allowed
    assert rl.take("a", 1, T0 + 1, "client").allowed


def test_unknown_spec_and_bad_specs() -> None:
    with pytest.raises(ConfigError, match="unknown bucket spec"):
        limiter().take("a", 1, T0, "nope")
    for rate, burst in [(0, 1), (1, 0), (-1, 1), (math.inf, 1), (1, math.nan)]:
        with pytest.raises(ConfigError):
            BucketSpec(rate, burst)
    with pytest.raises(ConfigError):
        RateLimiter({})
    with pytest.raises(ConfigError):
        MemoryStore(0)


def test_refill_math() -> None:
    spec = BucketSpec(2.0, 10.0)
    assert refill(0.0, 0.0, 3.0, spec) == 6.0
    assert refill(0.0, 0.0, 30.0, spec) == 10.0
    assert refill(4.0, 5.0, 1.0, spec) == 4.0


# -- memory bounds -------------------------------------------------------------------------


def test_eviction_keeps_memory_bounded_under_a_million_keys() -> None:
    store = MemoryStore(max_keys=1000)
    rl = RateLimiter({"client": BucketSpec(1.0, 10.0)}, store=store)
    now = T0
    for i in range(1_000_000):
        now += 0.000_01
        assert rl.take(f"k{i}", 1, now, "client").allowed  # each new key gets a full bucket
        if i % 50_000 == 0:
            assert len(store) <= 1000
    assert len(store) == 1000
    assert store.evicted_idle + store.evicted_active == 1_000_000 - 1000


def test_eviction_prefers_idle_full_buckets_over_lru() -> None:
    store = MemoryStore(max_keys=3)
    rl = RateLimiter({"client": BucketSpec(1.0, 10.0)}, store=store)
    rl.take("drained", 10, T0, "client")  # oldest, empty: its state matters
    rl.take("idle", 1, T0 + 1, "client")  # full again by T0 + 2
    rl.take("busy", 1, T0 + 5, "client")
    rl.take("new", 1, T0 + 5, "client")
    assert store.evicted_idle == 1 and store.evicted_active == 0
    # the drained key is still limited: evicting it would have handed it a fresh bucket
    assert not rl.take("drained", 10, T0 + 5, "client").allowed
    assert len(store) == 3


def test_eviction_falls_back_to_lru() -> None:
    store = MemoryStore(max_keys=2)
    rl = RateLimiter({"client": BucketSpec(1.0, 10.0)}, store=store)
    rl.take("a", 5, T0, "client")
    rl.take("b", 5, T0, "client")
    rl.take("a", 1, T0, "client")  # a is now the most recently used
    rl.take("c", 1, T0, "client")
    assert store.evicted_active == 1
    assert rl.take("a", 1, T0, "client").remaining == pytest.approx(3.0)  # a kept its state
    assert len(store) == 2


def test_memory_store_satisfies_the_protocol() -> None:
    store: Store = MemoryStore()
    assert store.take("k", 1, T0, BucketSpec(1, 2)) == (True, 1.0)


# -- penalty box ---------------------------------------------------------------------------


def test_penalty_and_expiry() -> None:
    box = PenaltyBox(60.0)
    assert box.check("a", T0) is None
    p = box.penalize("a", T0, reason="cache-busting")
    assert p == Penalty(T0 + 60, "cache-busting")
    assert box.check("a", T0 + 59.999) == p
    assert box.check("a", T0 + 60) is None
    assert box.check("b", T0) is None


def test_penalty_duration_override_and_longest_wins() -> None:
    box = PenaltyBox(60.0)
    box.penalize("a", T0, duration=600, reason="long")
    kept = box.penalize("a", T0 + 1, duration=10, reason="short")
    assert kept == Penalty(T0 + 600, "long")
    longer = box.penalize("a", T0 + 2, duration=3600, reason="longer")
    assert box.check("a", T0 + 1000) == longer == Penalty(T0 + 3602, "longer")
    assert box.penalize("b", T0, duration=-5).until == T0  # never a negative duration
    assert box.check("b", T0) is None


def test_penalties_are_bounded() -> None:
    store = MemoryStore(max_keys=10)
    box = PenaltyBox(60.0, store=store)
    for i in range(1000):
        box.penalize(f"k{i}", T0 + i)
        assert store.penalties <= 10
    # the most recent penalties survive
    assert box.check("k999", T0 + 1000) is not None
    assert box.check("k0", T0 + 1000) is None


def test_expired_penalties_are_evicted_first() -> None:
    store = MemoryStore(max_keys=2)
    box = PenaltyBox(60.0, store=store)
    box.penalize("old", T0, duration=1)
    box.penalize("long", T0, duration=3600)
    box.penalize("new", T0 + 10)
    assert store.evicted_penalties == 0
    assert box.check("long", T0 + 10) is not None


def test_bad_penalty_duration() -> None:
    with pytest.raises(ConfigError):
        PenaltyBox(0)


# -- the hot-path forms: the same arithmetic as refill() and take_tokens() ---------------------
charges = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.one_of(st.sampled_from([1.0, 9.0, 0.0, 50.0, -1.0, math.inf]), st.floats(0, 20)),
        st.one_of(st.floats(0, 2), st.floats(-1, 0), st.sampled_from([0.0, 0.25])),
    ),
    max_size=150,
)


@given(charges)
def test_store_take_matches_refill_and_take_tokens(seq: list[tuple[str, float, float]]) -> None:
    spec = BucketSpec(4.0, 20.0)
    store = MemoryStore()
    ref: dict[str, tuple[float, float]] = {}
    now = 1_700_000_000.0
    for key, raw, step in seq:
        now += step
        cost = RateLimiter.price(raw, spec)
        tokens, last = ref.get(key, (spec.burst, now))
        allowed, after = take_tokens(refill(tokens, last, now, spec), cost, now, spec)
        ref[key] = (after, max(now, last))
        assert store.take(key, cost, now, spec) == (allowed, after)


@given(charges)
def test_charge_answers_as_take(seq: list[tuple[str, float, float]]) -> None:
    specs = {"client": BucketSpec(4.0, 20.0)}
    a, b = RateLimiter(specs), RateLimiter(specs)
    now = 1_700_000_000.0
    for key, cost, step in seq:
        now += step
        decision = a.take(key, cost, now, "client")
        bucket = specs["client"]
        retry = b.charge(RateLimiter.bucket_key(key, "client"), a.price(cost, bucket), now, bucket)
        assert (retry == 0.0) == decision.allowed
        assert retry == decision.retry_after


def test_penalty_expiry_times_cover_the_box_and_stay_bounded() -> None:
    box = PenaltyBox(60.0, max_keys=10)
    assert box.expires is not None
    expires = box.expires
    for i in range(1000):
        now = T0 + i
        box.penalize(f"k{i}", now, duration=5 if i % 2 else 500)
        assert len(expires) <= 20 and box.expires is expires  # pruned in place
        for k in (f"k{j}" for j in range(max(0, i - 30), i + 1)):
            if box.check(k, now) is not None:  # a penalty in force is always announced
                assert expires.get(k, -math.inf) > now
    box.penalize("k999", T0 + 999, duration=1)  # a shorter one keeps the longer expiry
    assert expires["k999"] == T0 + 999 + 5
    assert PenaltyBox(60.0, store=MemoryStore()).expires is None  # a given store: no shortcut
