"""Behaviour signals: each fires exactly above its limit, windows, memory bounds, policy."""

from __future__ import annotations

import pytest

from pkgedge.errors import ConfigError
from pkgedge.security.signals import (
    CacheBusting,
    CountSettings,
    Enumeration,
    NotFoundRatio,
    RatioSettings,
    RepeatDownloads,
    SignalHit,
    SignalPolicy,
)

T0 = 5000.0
WHEEL = "/files/ab/cd/numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl"


# -- repeat downloads ----------------------------------------------------------------------


def test_repeat_downloads_fires_exactly_above_limit() -> None:
    sig = RepeatDownloads(CountSettings(limit=5, window=60.0))
    for i in range(5):
        assert sig.observe("1.2.3.4", WHEEL, T0 + i) is None
    hit = sig.observe("1.2.3.4", WHEEL, T0 + 5)
    assert hit == SignalHit("ci-loop-without-cache", "1.2.3.4", 6, 5, True)
    again = sig.observe("1.2.3.4", WHEEL, T0 + 6)
    assert again is not None and not again.first and again.value == 7


def test_repeat_downloads_per_client_and_per_file() -> None:
    sig = RepeatDownloads(CountSettings(limit=2, window=60.0))
    for client in ("a", "b"):
        for path in ("/x.whl", "/y.whl"):
            for _ in range(2):
                assert sig.observe(client, path, T0) is None
    assert sig.observe("a", "/x.whl", T0) is not None


def test_repeat_downloads_window_restarts() -> None:
    sig = RepeatDownloads(CountSettings(limit=3, window=60.0))
    for t in (0, 20, 40):
        assert sig.observe("a", WHEEL, T0 + t) is None
    # 60 s after the first fetch the window starts over: a CI job every 20 s is at 3 per minute
    for t in (60, 80, 100):
        assert sig.observe("a", WHEEL, T0 + t) is None
    hit = sig.observe("a", WHEEL, T0 + 119.9)
    assert hit is not None and hit.first


def test_repeat_downloads_memory_bounded() -> None:
    sig = RepeatDownloads(CountSettings(limit=3, window=3600.0, max_entries=100))
    for i in range(10_000):
        sig.observe(f"c{i % 50}", f"/f{i}.whl", T0 + i * 0.001)
        assert len(sig) <= 100


def test_idle_entries_expire() -> None:
    sig = RepeatDownloads(CountSettings(limit=3, window=60.0))
    for i in range(100):
        sig.observe(f"c{i}", WHEEL, T0)
    assert len(sig) == 100
    sig.observe("late", WHEEL, T0 + 60)
    assert len(sig) == 1


# -- enumeration ---------------------------------------------------------------------------


def test_enumeration_fires_exactly_above_limit() -> None:
    sig = Enumeration(CountSettings(limit=10, window=600.0))
    for i in range(10):
        assert sig.observe("a", f"project-{i}", T0 + i) is None
        assert sig.observe("a", f"project-{i}", T0 + i) is None  # repeats are not distinct
    hit = sig.observe("a", "project-10", T0 + 10)
    assert hit == SignalHit("enumeration", "a", 11, 10, True)
    repeat = sig.observe("a", "project-0", T0 + 11)
    assert repeat is not None and not repeat.first and repeat.value == 11


def test_enumeration_slides() -> None:
    sig = Enumeration(CountSettings(limit=3, window=100.0))
    for i, t in enumerate((0, 10, 20)):
        assert sig.observe("a", f"p{i}", T0 + t) is None
    # at T0+100 p0 (seen at T0) has left the window: 3 distinct, not 4
    assert sig.observe("a", "p3", T0 + 100) is None
    # p1 refreshed: it stays in, while p2 would leave at T0+120
    assert sig.observe("a", "p1", T0 + 105) is None
    hit = sig.observe("a", "p4", T0 + 115)
    assert hit is not None and hit.value == 4 and hit.first


def test_enumeration_counts_are_per_client() -> None:
    sig = Enumeration(CountSettings(limit=2, window=600.0))
    for client in ("a", "b", "c"):
        for p in ("x", "y"):
            assert sig.observe(client, p, T0) is None
    assert sig.observe("b", "z", T0) is not None


def test_enumeration_memory_bounded_and_never_overcounts() -> None:
    sig = Enumeration(CountSettings(limit=50, window=600.0, max_entries=100))
    hits = 0
    for i in range(5_000):
        # 200 clients fetching the same 40 projects round-robin: nobody is above 50
        hits += sig.observe(f"c{i % 200}", f"p{(i // 200) % 40}", T0 + i * 0.01) is not None
        assert len(sig) <= 100
    assert hits == 0
    assert sum(sig._distinct._counts.values()) == len(sig)


# -- 404 ratio -----------------------------------------------------------------------------


def test_not_found_needs_min_requests() -> None:
    sig = NotFoundRatio(RatioSettings(ratio=0.5, min_requests=10, window=300.0))
    for i in range(9):
        assert sig.observe("a", 404, T0 + i) is None
    hit = sig.observe("a", 404, T0 + 9)
    assert hit == SignalHit("high-404-ratio", "a", 1.0, 0.5, True)


def test_not_found_ratio_exactly_at_threshold_does_not_fire() -> None:
    sig = NotFoundRatio(RatioSettings(ratio=0.5, min_requests=10, window=300.0))
    for status in [200] * 5 + [404] * 5:
        assert sig.observe("a", status, T0) is None  # 5/10 is not above 0.5
    hit = sig.observe("a", 404, T0)  # 6/11
    assert hit is not None and hit.first and hit.value == pytest.approx(6 / 11)
    later = sig.observe("a", 200, T0)  # 6/12 is back at the ratio: no longer over
    assert later is None
    again = sig.observe("a", 404, T0)  # 7/13
    assert again is not None and again.first


def test_not_found_window_restarts_and_statuses() -> None:
    sig = NotFoundRatio(
        RatioSettings(ratio=0.2, min_requests=3, window=10.0, statuses=frozenset({404, 410}))
    )
    assert sig.observe("a", 410, T0) is None
    assert sig.observe("a", 404, T0 + 1) is None
    assert sig.observe("a", 404, T0 + 10) is None  # a new window: 1 request
    assert sig.observe("a", 403, T0 + 11) is None
    assert sig.observe("a", 200, T0 + 12) is not None  # 1/3 > 0.2


# -- cache busting -------------------------------------------------------------------------


def test_cache_busting_fires_exactly_above_limit() -> None:
    sig = CacheBusting(CountSettings(limit=4, window=60.0))
    assert sig.observe("a", "/simple/numpy/", "", T0) is None  # no query: not counted
    for i in range(4):
        assert sig.observe("a", "/simple/numpy/", f"x={i}", T0) is None
        assert sig.observe("a", "/simple/numpy/", f"x={i}", T0) is None
    hit = sig.observe("a", "/simple/numpy/", "x=4", T0 + 1)
    assert hit == SignalHit("cache-busting", "a", 5, 4, True)


def test_cache_busting_same_query_on_many_paths_counts() -> None:
    sig = CacheBusting(CountSettings(limit=2, window=60.0))
    assert sig.observe("a", "/simple/a/", "nocache", T0) is None
    assert sig.observe("a", "/simple/b/", "nocache", T0) is None
    assert sig.observe("a", "/simple/c/", "nocache", T0) is not None


# -- settings and policy -------------------------------------------------------------------


def test_defaults() -> None:
    assert RepeatDownloads().settings == CountSettings(30, 3600.0)
    assert Enumeration().settings.limit == 1000
    assert CacheBusting().settings.limit == 50
    assert NotFoundRatio().settings == RatioSettings(0.5, 50, 300.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: CountSettings(limit=-1, window=1),
        lambda: CountSettings(limit=1, window=0),
        lambda: CountSettings(limit=1, window=1, max_entries=0),
        lambda: RatioSettings(ratio=1.0),
        lambda: RatioSettings(min_requests=0),
        lambda: SignalPolicy(actions={"enumeration": "ban"}),
        lambda: SignalPolicy(default="nothing"),
        lambda: SignalPolicy(block_duration=0),
    ],
)
def test_bad_settings(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]


def hit(reason: str) -> SignalHit:
    return SignalHit(reason, "1.2.3.4", 11, 10, True)


def test_policy_defaults() -> None:
    policy = SignalPolicy()
    assert policy.decide(hit("ci-loop-without-cache")).action == "throttle"
    assert policy.decide(hit("enumeration")).action == "throttle"
    assert policy.decide(hit("high-404-ratio")).action == "observe"
    d = policy.decide(hit("cache-busting"))
    assert (d.action, d.duration, d.reason) == ("block", 900.0, "cache-busting")
    assert policy.decide(hit("something-new")).action == "observe"
    assert policy.decide(hit("high-404-ratio")).duration == 0.0


def test_policy_is_configurable() -> None:
    policy = SignalPolicy(
        actions={"high-404-ratio": "block", "cache-busting": "observe"},
        default="throttle",
        throttle_duration=60,
        block_duration=3600,
    )
    assert policy.decide(hit("high-404-ratio")).duration == 3600
    assert policy.decide(hit("cache-busting")).action == "observe"
    assert policy.decide(hit("enumeration")).duration == 60  # default kept
    assert policy.action_for("other") == "throttle"
    with pytest.raises(TypeError):
        policy.actions["enumeration"] = "block"  # type: ignore[index]
