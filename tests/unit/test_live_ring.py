"""The live ring merged over workers, percentiles from buckets, rollups and savings (issue 9),
on real shared maps and a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

from pkgedge.stats.counters import LATENCY_BUCKETS, Counters
from pkgedge.stats.live import SLOTS, quantile, window
from pkgedge.stats.rollup import Rollups, flush
from pkgedge.stats.savings import SavingsModel, savings


def rows(c: Counters) -> list[list[int]]:
    return [c.row_view(r).tolist() for r in range(c.rows)]


def test_window_merges_workers_and_places_each_second() -> None:
    c = Counters(2)
    req = c.names().index("requests")
    t0 = c.ring.started + 5
    for s, (a, b) in enumerate([(3, 1), (0, 4), (2, 0)]):
        c.bind(0)
        c.add("requests", a)
        c.sample(t0 + s)
        c.bind(1)
        c.add("requests", b)
        c.sample(t0 + s)
    c.bind(0)
    c.add("requests", 7)  # the current second, not sampled yet
    per = window(c.ring, rows(c), t0 + 3.5, 10)
    assert [sec[req] for sec in per] == [0] * 6 + [4, 4, 2, 7]
    assert sum(sec[req] for sec in per) == 3 + 1 + 4 + 2 + 7


def test_a_skipped_second_lands_on_the_next_and_old_samples_are_a_baseline() -> None:
    c = Counters(1)
    req = c.names().index("requests")
    t0 = c.ring.started + 2 * SLOTS  # the edge started long before the window
    c.add("requests", 100)
    c.sample(t0)  # the baseline: before the window's first second
    c.add("requests", 5)
    c.sample(t0 + 2)  # t0 + 1 was skipped
    per = window(c.ring, rows(c), t0 + 3.2, 3)
    assert [sec[req] for sec in per] == [0, 5, 0]


def test_quantiles_from_buckets() -> None:
    buckets = [0] * len(LATENCY_BUCKETS)
    assert quantile(buckets, LATENCY_BUCKETS, 0.5) is None
    buckets[3] = 10  # all in (5 ms, 10 ms]
    assert quantile(buckets, LATENCY_BUCKETS, 0.5) == 0.0075
    buckets[-1] = 90  # most beyond 10 s: the last finite bound
    assert quantile(buckets, LATENCY_BUCKETS, 0.99) == LATENCY_BUCKETS[-2]
    c = Counters(1)
    c.observe_latency(0.02)
    snap = c.snapshot()
    assert snap["origin_latency_b4"] == 1 and snap["origin_latency_us"] == 20000


def test_rollups_add_growth_once(tmp_path: Path) -> None:
    c = Counters(2)
    r = Rollups(tmp_path / "r.sqlite3")
    hour = int(time.time()) // 3600 * 3600 - 3600
    c.add("requests", 10)
    c.bind(1)
    c.add("hits", 4)
    assert flush(c, r, hour + 120.0) == {"requests": 10, "hits": 4}
    assert flush(c, r, hour + 125.0) == {}  # nothing new: nothing written twice
    c.add("requests", 2)
    flush(c, r, hour + 130.0)
    c.add("requests", 1)
    flush(c, r, hour + 180.0)
    assert r.read("minute", 0) == [
        (hour + 120, {"hits": 4, "requests": 12}),
        (hour + 180, {"requests": 1}),
    ]
    assert r.read("hour", 0) == [(hour, {"hits": 4, "requests": 13})]
    c2 = Counters(1)  # a restart: counters from zero, added to what is stored
    c2.add("requests", 5)
    flush(c2, r, hour + 180.0)
    assert r.read("minute", hour + 180) == [(hour + 180, {"requests": 6})]


def test_savings_arithmetic() -> None:
    s = savings(
        {"hits": 90, "stale": 5, "collapsed": 3, "requests": 100, "bytes_from_cache": 2 * 10**9},
        SavingsModel(egress_price_per_gb=0.1, joules_per_byte=1e-5, joules_per_request=0.5),
    )
    assert s["origin_requests_avoided"] == 98 and s["by_collapsing"] == 3
    assert s["origin_bytes_avoided"] == 2 * 10**9
    assert s["egress_saved"] == 0.2
    assert s["energy_saved_joules"] == 2 * 10**9 * 1e-5 + 98 * 0.5
    assert s["offload_ratio"] == 0.98
