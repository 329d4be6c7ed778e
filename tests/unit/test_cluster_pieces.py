"""The pure pieces of many nodes (issue 10): shared buckets and penalties, the shield's
routes and Cache-Status, the failover director's choices. The Redis side is tested on a real
cluster in tests/integration/test_cluster.py."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from pkgedge.config import build_edge_settings
from pkgedge.edge import shield
from pkgedge.edge.director import FAILURES, Director
from pkgedge.errors import ConfigError
from pkgedge.http.request import Request
from pkgedge.security.ratelimit import BucketSpec, Penalty, PenaltyBox
from pkgedge.security.shared import SharedStore

SPEC = BucketSpec(1.0, 10.0)


def test_shared_store_counts_what_was_spent_here_until_drained() -> None:
    s = SharedStore()
    assert s.take("k", 3.0, 100.0, SPEC) == (True, 7.0)
    assert s.take("k", 2.0, 100.0, SPEC) == (True, 5.0)
    assert s.take("k", 9.0, 100.0, SPEC)[0] is False  # refused: nothing spent
    assert s.drain() == {"k": (5.0, SPEC)}
    assert s.drain() == {}


def test_settle_sets_the_local_bucket_to_the_shared_level() -> None:
    s = SharedStore()
    s.take("k", 1.0, 100.0, SPEC)  # alone, 9 tokens would be left
    s.drain()
    s.take("k", 1.0, 100.0, SPEC)  # spent here after the sync started
    s.settle("k", 0.5, when=100.0, now=100.0, spec=SPEC)  # others spent the rest
    allowed, tokens = s.take("k", 1.0, 100.0, SPEC)
    assert not allowed and tokens == -0.5
    # refilled at the spec's rate from the shared level
    assert s.take("k", 1.0, 102.0, SPEC)[0] is True


def test_penalties_given_here_are_reported_and_those_received_are_not() -> None:
    store = SharedStore()
    box = PenaltyBox(60.0)
    box.store = store
    box.penalize("a", 100.0, 30.0, "enumeration")
    store.quietly(True)
    box.penalize("b", 100.0, 30.0, "from another node")
    store.quietly(False)
    given = store.drain_penalties()
    assert given == {"a": Penalty(130.0, "enumeration")}
    assert box.check("b", 110.0) is not None
    assert box.expires is not None and box.expires["b"] == 130.0


def test_shield_route_keeps_the_path_under_the_shield_url() -> None:
    assert shield.route("http://127.0.0.5:8080/", "/+f/https/files.example/a.whl") == (
        "http://127.0.0.5:8080",
        "/+f/https/files.example/a.whl",
    )
    assert shield.route("http://s:1/cdn/", "/simple/a/") == ("http://s:1", "/cdn/simple/a/")


def test_cache_status_lists_the_shield_then_the_edge() -> None:
    headers = [("cache-status", "pkgedge; fwd=miss; stored")]
    own = "pkgedge; fwd=miss; stored; detail=collapsed"
    assert shield.both_tiers(headers, own) == (
        "pkgedge-shield; fwd=miss; stored, pkgedge; fwd=miss; stored; detail=collapsed"
    )
    # a hit here did not ask the shield; no shield member without one
    assert shield.both_tiers(headers, "pkgedge; hit; ttl=5") == "pkgedge; hit; ttl=5"
    assert shield.both_tiers([], own) == own
    # served stale because the shield failed: its old member would mislead
    grace = "pkgedge; fwd=stale; ttl=-5; detail=grace"
    assert shield.both_tiers(headers, grace) == grace
    assert shield.both_tiers(headers, "pkgedge; fwd=stale; fwd-status=304; ttl=60").startswith(
        "pkgedge-shield; fwd=miss"
    )


def _req(client: str, tier: bool) -> Request:
    req = Request.__new__(Request)
    req.client = client
    req.map = {shield.TIER: "edge"} if tier else {}
    return req


def test_only_trusted_peers_that_say_so_are_edges() -> None:
    edges = shield.TrustedEdges("127.0.0.0/8, 2001:db8::/32")
    assert edges.trusts("127.0.0.3") and edges.trusts("2001:db8::1")
    assert not edges.trusts("192.0.2.1") and not edges.trusts("not an address")
    assert edges.asks(_req("127.0.0.2", True))
    assert not edges.asks(_req("127.0.0.2", False))
    assert not edges.asks(_req("192.0.2.1", True))
    assert not shield.TrustedEdges("").asks(_req("127.0.0.2", True))


class _DeadPool:
    async def request(self, *args: Any) -> Any:
        raise OSError("connection refused")


def test_director_tries_the_fallback_second_and_first_once_the_primary_is_down() -> None:
    d = Director("http://a:1/simple/", "http://b:2/archive/simple/", lambda o: _DeadPool())  # type: ignore[arg-type, return-value]
    assert d.routes("http://a:1", "/simple/x/") == [
        ("http://a:1", "/simple/x/"),
        ("http://b:2", "/archive/simple/x/"),
    ]
    assert d.routes("http://a:1", "/files/x.whl")[1] == ("http://b:2", "/files/x.whl")
    assert d.routes("https://files.example", "/x.whl") == [("https://files.example", "/x.whl")]
    for _ in range(FAILURES):
        d.result("http://a:1", False)
    assert d.down

    async def down_routes() -> list[tuple[str, str]]:
        routes = d.routes("http://a:1", "/simple/x/")
        await asyncio.sleep(0.01)  # the probe fails: still down
        return routes

    assert asyncio.run(down_routes())[0] == ("http://b:2", "/archive/simple/x/")
    assert d.down
    d.result("http://a:1", True)
    assert not d.down and d.routes("http://a:1", "/simple/x/")[0][0] == "http://a:1"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"redis": "http://127.0.0.1:6379"}, "not a redis:// URL"),
        ({"trusted_edges": "10.0.0.0/33"}, "not an address or network"),
        ({"shield": "nope"}, "not an http(s) URL"),
    ],
)
def test_cluster_options_are_checked(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_edge_settings({"upstream": "http://127.0.0.1:9/simple/", **flags}, environ={})


def test_an_edge_with_a_shield_reads_the_index_from_it() -> None:
    s = build_edge_settings({"shield": "http://127.0.0.5:8080"}, environ={})
    assert s.upstream == "http://127.0.0.5:8080/simple/" and s.shield == "http://127.0.0.5:8080/"
    assert s.node_name.endswith(s.cache_dir) and s.redis is None
