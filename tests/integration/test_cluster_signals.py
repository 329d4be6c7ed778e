"""Behaviour signals shared through Redis (issue 10): the Lua scripts of cluster/signals.py
against a real redis-server, then three real edges (127.0.0.2-4, each with --redis) in front
of the test upstream index, one topology for the module. A client that busts the cache
across the edges, below the limit (50 distinct queries in 600 s) on each, is blocked on all;
with Redis stopped the edges keep serving and the signals count locally; then sharing resumes.
The same edges show the file hosts shared too: a page's files are served by the nodes that
never saw the page (cluster/hosts.py).

Clients are told apart by X-Forwarded-For (the edges trust 127.0.0.0/8), one address per test:
a blocked client stays blocked for 900 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from pkgedge.cluster.link import connect
from pkgedge.cluster.signals import SignalSync
from pkgedge.security.sharedsignals import SharedSignals, item_hash
from pkgedge.security.signals import CountSettings, RatioSettings
from support.edge import EdgeProcess
from support.redis import RedisServer, redis_server  # noqa: F401  (module fixture)
from support.upstream import UpstreamIndex, populate_default

T0 = 1_800_000_000.0
LIMIT = 50  # CacheBusting's default limit
PAGE = "/simple/alpha/"


def _signals() -> SharedSignals:
    few = CountSettings(limit=5, window=60.0)
    return SharedSignals(few, RatioSettings(), few, few)


def _with_syncs(url: str, n: int, body: Callable[[list[SignalSync]], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        clients = [connect(url) for _ in range(n)]
        try:
            return await body([SignalSync(c, _signals()) for c in clients])
        finally:
            for c in clients:
                await c.aclose()

    return asyncio.run(main())


def test_count_records_never_hold_more_than_one_window(redis_server: RedisServer) -> None:  # noqa: F811
    async def body(syncs: list[SignalSync]) -> list[Any]:
        a, b = syncs
        got = [await a.counts("t-count", 60.0, T0, {"k": [T0, T0 + 1, 3.0, 1.0]})]
        got.append(await b.counts("t-count", 60.0, T0 + 2, {"k": [T0 + 2, T0 + 2, 2.0, 0.0]}))
        # a late batch from before the record: still within one window of all of it
        got.append(await b.counts("t-count", 60.0, T0 + 3, {"k": [T0 - 10, T0 - 9, 1.0, 1.0]}))
        # a batch that would stretch the record past 60 s and is later: a new record
        got.append(await a.counts("t-count", 60.0, T0 + 55, {"k": [T0 + 55, T0 + 55, 1.0, 0.0]}))
        # a batch older than that record and too far from it: dropped
        got.append(await b.counts("t-count", 60.0, T0 + 56, {"k": [T0 - 8, T0 - 8, 4.0, 4.0]}))
        # a batch spanning a whole window alone is never added
        got.append(await a.counts("t-count", 60.0, T0 + 70, {"k": [T0 + 56, T0 + 116, 9.0, 0.0]}))
        return got

    got = _with_syncs(redis_server.url, 2, body)
    assert got == [
        {"k": (3.0, 1.0, T0)},
        {"k": (5.0, 1.0, T0)},
        {"k": (6.0, 2.0, T0 - 10)},
        {"k": (1.0, 0.0, T0 + 55)},
        {"k": (1.0, 0.0, T0 + 55)},
        {"k": (1.0, 0.0, T0 + 55)},
    ]


def test_distinct_sets_count_each_item_once_over_a_sliding_window(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    now = time.time()

    async def body(syncs: list[SignalSync]) -> list[Any]:
        a, b = syncs
        got = [await a.distinct("t-set", 600.0, 10, now, {"c": {"x": now - 700, "y": now - 5}})]
        # the same item from another node is not counted twice; a later time refreshes it
        got.append(await b.distinct("t-set", 600.0, 10, now, {"c": {"y": now - 1, "z": now}}))
        # beyond the cap the oldest items go
        many = {f"i{i}": now - 100 + i for i in range(30)}
        got.append(await a.distinct("t-set", 600.0, 10, now, {"d": many}))
        kept = await a.redis.zrange("pkgedge:sig:t-set:d", 0, -1)
        return [*got, set(kept) == {item_hash(f"i{i}") for i in range(20, 30)}]

    got = _with_syncs(redis_server.url, 2, body)
    assert got[0] == {"c": (1.0, now - 5)}  # x was seen more than a window ago
    assert got[1] == {"c": (2.0, now - 1)}
    assert got[2] == {"d": (10.0, now - 80)}
    assert got[3] is True


def test_two_workers_catch_what_neither_sees_alone(redis_server: RedisServer) -> None:  # noqa: F811
    async def body(syncs: list[SignalSync]) -> Any:
        a, b = syncs
        now = time.time()
        for i in range(3):  # 3 + 3 distinct queries: above the limit (5) only together
            assert a.shared.busting.observe("10.0.0.1", "/simple/x/", f"v={i}", now) is None
            assert b.shared.busting.observe("10.0.0.1", "/simple/x/", f"w={i}", now) is None
        await a.sync()
        await b.sync()
        return b.shared.busting.observe("10.0.0.1", "/simple/x/", "w=0", now + 1)

    hit = _with_syncs(redis_server.url, 2, body)
    assert hit is not None and hit.reason == "cache-busting" and hit.value == 6


def test_a_redis_that_lost_the_scripts_is_given_them_and_nothing_counts_twice(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    async def body(syncs: list[SignalSync]) -> list[Any]:
        (a,) = syncs
        got = [await a.counts("t-flush", 60.0, T0, {"k": [T0, T0 + 1, 3.0, 1.0]})]
        await a.redis.script_flush()  # as a restarted Redis: NOSCRIPT for every call
        got.append(await a.counts("t-flush", 60.0, T0 + 2, {"k": [T0 + 2, T0 + 2, 2.0, 0.0]}))
        await a.redis.script_flush()
        got.append(await a.distinct("t-flush", 60.0, 100, T0 + 3, {"c": {"x": T0 + 3}}))
        return got

    got = _with_syncs(redis_server.url, 1, body)
    assert got == [{"k": (3.0, 1.0, T0)}, {"k": (5.0, 1.0, T0)}, {"c": (1.0, T0 + 3)}]


# -- three edges ---------------------------------------------------------------------------


@dataclass
class Edges:
    redis: RedisServer
    origin: UpstreamIndex
    edges: list[EdgeProcess]


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,  # noqa: F811
) -> Iterator[Edges]:
    tmp = tmp_path_factory.mktemp("signals")
    # files on a second host: pages link them as /+f/... (the file hosts test)
    origin = populate_default(UpstreamIndex(tmp / "origin-dists", file_host=True)).start()
    edges = [
        EdgeProcess(
            origin.index_url,
            tmp / f"edge{i}",
            listen=f"127.0.0.{i + 2}:0",
            admin=f"127.0.0.{i + 2}:0",
            extra_args=[
                *("--redis", redis_server.url, "--node-name", f"edge{i}"),
                *("--trusted-proxies", "127.0.0.0/8", "--rate-limit", "1000/2000"),
            ],
        )
        for i in range(3)
    ]
    try:
        with ThreadPoolExecutor(3) as pool:  # started together: a third of the wait
            list(pool.map(EdgeProcess.start, edges))
        yield Edges(redis_server, origin, edges)
    finally:
        for edge in edges:
            edge.stop()
        origin.stop()


def _bust(edge: EdgeProcess, client: str, n: int) -> int:
    return edge.get(f"{PAGE}?v={n}", headers={"X-Forwarded-For": client}).status_code


def _plain(edge: EdgeProcess, client: str) -> Any:
    return edge.get(PAGE, headers={"X-Forwarded-For": client})


def _spread_until_blocked(edges: list[EdgeProcess], client: str) -> list[int]:
    """Distinct queries round robin over the edges: LIMIT of them all served (never a
    premature hit), then more until one is refused; the queries each edge was sent."""
    sent = [0] * len(edges)
    for n in range(LIMIT):
        i = n % len(edges)
        assert _bust(edges[i], client, n) == 200, (n, sent)
        sent[i] += 1
    n = LIMIT
    while max(sent) < LIMIT - 5:  # each edge alone stays well below the limit
        i = n % len(edges)
        sent[i] += 1
        if _bust(edges[i], client, n) == 429:
            return sent
        n += 1
        time.sleep(0.03)  # let the syncs (every 0.1 s) run
    pytest.fail(f"never blocked while each edge was below the limit: {sent}")


def _blocked_everywhere(edges: list[EdgeProcess], client: str) -> None:
    deadline = time.monotonic() + 5  # the penalty reaches the other edges at their next sync
    answers = [_plain(e, client) for e in edges]
    while time.monotonic() < deadline and any(r.status_code != 429 for r in answers):
        time.sleep(0.1)
        answers = [_plain(e, client) for e in edges]
    assert [r.status_code for r in answers] == [429] * len(edges)
    assert all("blocked for cache-busting" in r.text for r in answers), answers[0].text


def test_cache_busting_spread_over_edges_is_blocked_on_all(cluster: Edges) -> None:
    sent = _spread_until_blocked(cluster.edges, "192.0.2.10")
    assert max(sent) < LIMIT, sent
    _blocked_everywhere(cluster.edges, "192.0.2.10")
    # another client is served as before
    assert _plain(cluster.edges[0], "192.0.2.11").status_code == 200


def test_with_redis_down_edges_serve_and_count_locally_then_share_again(
    cluster: Edges,
) -> None:
    edges, client = cluster.edges, "192.0.2.20"
    cluster.redis.stop()
    try:
        # spread over the edges, 20 distinct queries each: nobody adds them up, all served
        for n in range(60):
            assert _bust(edges[n % 3], client, n) == 200, n
        # one edge alone still catches what it sees: its 51st distinct query (the 31st
        # here) is served and blocks the client; the next request is refused
        statuses = [_bust(edges[0], client, 100 + n) for n in range(32)]
        assert statuses == [200] * 31 + [429], statuses
        # the penalty stays on that edge while Redis is down; the others keep serving
        time.sleep(0.3)
        assert _plain(edges[1], client).status_code == 200
        assert _plain(edges[2], "192.0.2.21").status_code == 200
    finally:
        cluster.redis.start()
    # sharing resumes: a new client spreading its queries is blocked on every edge
    client = "192.0.2.30"
    time.sleep(0.5)  # the syncs retry every 0.1 s
    sent = _spread_until_blocked(edges, client)
    assert max(sent) < LIMIT, sent
    _blocked_everywhere(edges, client)


def test_a_page_s_files_are_served_by_nodes_that_never_saw_the_page(cluster: Edges) -> None:
    """Behind a load balancer the page and its files reach different nodes: a node that never
    served the page learns its file host from Redis instead of answering 404."""
    first, *others = cluster.edges
    page = first.get("/simple/beta/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    links = re.findall(rb'href="([^"]+)"', page.content)
    assert links and all(link.startswith(b"/+f/http/127.0.0.1:") for link in links), links
    for i, edge in enumerate(others):
        target, _, digest = links[i % len(links)].decode().partition("#sha256=")
        got = edge.get(target)
        assert got.status_code == 200, (edge, target, got.text)
        assert hashlib.sha256(got.content).hexdigest() == digest
    # a host no node learnt is still refused (the edge is no open proxy)
    assert others[0].get("/+f/http/127.0.0.1:9/x-1.0.tar.gz").status_code == 404
