"""Many nodes (issue 10): three edges in front of a shield, purges and limits through Redis,
origin failover. One topology for the whole module (CI budget), each node on its own loopback
address: the origin (the test upstream index) on 127.0.0.1, a fallback index on 127.0.0.6,
Redis on 127.0.0.1, the shield on 127.0.0.5 and the edges on 127.0.0.2-4.

The tests run in file order and share the cluster's state; each one leaves it serving.
``test_cluster_origin.py`` runs the same cluster in front of pkgedge's own origin (PostgreSQL
and S3, a standby origin as the fallback) with twine, uv and pip.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.edge import EdgeProcess, edge_command, parse_cache_status
from support.redis import RedisServer, redis_server  # noqa: F401  (module fixture)
from support.upstream import UpstreamIndex, populate_default

BOT = {"User-Agent": "ExampleBot/1.0 (+https://bot.example/)"}
ONLY_CACHED = {"Cache-Control": "only-if-cached"}


@dataclass
class Cluster:
    redis: RedisServer
    origin: UpstreamIndex
    fallback: UpstreamIndex
    shield: EdgeProcess
    edges: list[EdgeProcess]

    @property
    def nodes(self) -> list[EdgeProcess]:
        return [self.shield, *self.edges]


def _node(
    tmp: Path, name: str, host: str, upstream: str, redis: str, extra: list[str]
) -> EdgeProcess:
    return EdgeProcess(
        upstream,
        tmp / name,
        listen=f"{host}:0",
        admin=f"{host}:0",
        extra_args=[
            "--redis",
            redis,
            "--node-name",
            name,
            "--purge-timeout",
            "2s",
            "--bot-rate-limit",
            "0.2/8",
            "--rate-limit",
            "1000/2000",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,  # noqa: F811
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    origin = populate_default(UpstreamIndex(tmp / "origin-dists")).start()
    origin.add_project("delta", "2.0")
    fallback = populate_default(UpstreamIndex(tmp / "fallback-dists", host="127.0.0.6")).start()
    fallback.add_project("epsilon", "1.0")
    origin.add_project("epsilon", "1.0")
    origin.add_project("zeta", "1.0")
    fallback.add_project("zeta", "9.9")
    short = {"Surrogate-Control": "max-age=1, stale-if-error=86400", "Cache-Control": "max-age=1"}
    origin.set_headers("/simple/zeta/", short)
    nodes: list[EdgeProcess] = []
    try:
        shield = _node(
            tmp,
            "shield",
            "127.0.0.5",
            origin.index_url,
            redis_server.url,
            ["--trusted-edges", "127.0.0.0/8", "--fallback", fallback.index_url],
        )
        nodes.append(shield.start())
        edges = []
        for i in range(3):
            edge = _node(
                tmp,
                f"edge{i}",
                f"127.0.0.{i + 2}",
                shield.url + "/simple/",
                redis_server.url,
                ["--shield", shield.url + "/"],
            )
            nodes.append(edge.start())
            edges.append(edge)
        yield Cluster(redis_server, origin, fallback, shield, edges)
    finally:
        for node in nodes:
            node.stop()
        origin.stop()
        fallback.stop()


def _cached(node: EdgeProcess, path: str) -> bool:
    """Is ``path`` fresh in ``node``'s cache (only-if-cached: 504 otherwise)?"""
    status = node.get(path, headers=ONLY_CACHED).status_code
    assert status in (200, 504), status
    return status == 200


def test_concurrent_misses_on_every_edge_make_one_origin_fetch(cluster: Cluster) -> None:
    page = "/simple/delta/"
    wheel = cluster.origin.files("delta")[0]
    path = wheel.url_path
    calls = [(e, p) for e in cluster.edges for p in (page, path) for _ in range(4)]
    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(lambda c: c[0].get(c[1]), calls))
    assert all(r.status_code == 200 for r in answers), [r.status_code for r in answers]
    assert cluster.origin.count(page, exact=True) == 1
    assert cluster.origin.count(path, exact=True) == 1
    # RFC 9211 order: the shield's member, then the edge's
    status = next(r.headers["cache-status"] for r in answers if "fwd=" in r.headers["cache-status"])
    assert status.index("pkgedge-shield") < status.index("pkgedge;"), status
    # the shield sends its edges the edge-only TTL (Surrogate-Control: 3600 s, clients: 60 s)
    hit = cluster.edges[0].get(page)
    assert int(str(parse_cache_status(hit.headers["cache-status"])["ttl"])) > 600
    assert "surrogate-control" not in hit.headers


def test_purge_is_applied_on_every_node_before_the_call_returns(cluster: Cluster) -> None:
    page = "/simple/alpha/"
    for node in cluster.nodes:
        assert node.get(page).status_code == 200
    assert all(_cached(n, page) for n in cluster.nodes)
    before = cluster.origin.count(page, exact=True)
    result = cluster.edges[1].purge(urls=[page])
    assert sorted(result["nodes"]) == ["edge0", "edge1", "edge2", "shield"]
    assert result["missing"] == []
    assert not any(_cached(n, page) for n in cluster.nodes)
    # the shield purged first: the edges refill through it with one origin fetch
    with ThreadPoolExecutor(3) as pool:
        assert all(r.status_code == 200 for r in pool.map(lambda e: e.get(page), cluster.edges))
    assert cluster.origin.count(page, exact=True) == before + 1


def test_the_purge_command_names_nodes_and_checks_its_input(cluster: Cluster) -> None:
    edge = cluster.edges[0]
    cmd = [*edge_command(), "purge", "--admin-url", edge.admin_url, "--token", edge.token]
    page = "/simple/beta/"
    for node in cluster.nodes:
        assert node.get(page).status_code == 200
    # by surrogate key: the shield passed the origin's Surrogate-Key on to its edges
    done = subprocess.run(
        [*cmd, "--key", "project/beta"], check=False, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "applied on 4 node(s): edge0, edge1, edge2, shield" in done.stdout
    assert not any(_cached(n, page) for n in cluster.nodes)
    bad = edge.admin_request("POST", "/purge", content=b"[1]")
    assert bad.status_code == 400 and "JSON object" in bad.text


def test_a_client_limited_on_one_edge_is_limited_on_the_others(cluster: Cluster) -> None:
    first, other = cluster.edges[0], cluster.edges[2]
    for _ in range(12):
        if first.get("/simple/gamma/", headers=BOT).status_code == 429:
            break
    else:
        pytest.fail("the bot was never limited on the first edge (burst 8)")
    # the other edge never saw this client: alone, it would let a whole burst (8) through;
    # it learns the shared level at its next sync (every 0.1 s)
    statuses = []
    for _ in range(6):
        statuses.append(other.get("/simple/gamma/", headers=BOT).status_code)
        if statuses[-1] == 429:
            break
        time.sleep(0.3)
    assert statuses[-1] == 429, statuses


def _active_source(node: EdgeProcess) -> str:
    listing = node.admin_request("GET", "/config/versions").json()
    one = node.admin_request("GET", f"/config/versions/{listing['active']}").json()
    return str(one["source"])


def test_a_configuration_activated_on_one_node_runs_on_every_node(cluster: Cluster) -> None:
    text = 'sub deliver { set resp.http.x-cluster-config = "two"; }\n'
    edge = cluster.edges[1]
    made = edge.admin_request("POST", "/config/versions", json={"source": text})
    assert made.status_code == 201, made.text
    number = made.json()["version"]
    done = edge.admin_request("POST", "/config/activate", json={"version": number})
    assert done.status_code == 200, done.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_active_source(n) != text for n in cluster.nodes):
        time.sleep(0.2)
    assert all(_active_source(n) == text for n in cluster.nodes)
    deadline = time.monotonic() + 5  # every worker swaps within a second
    while time.monotonic() < deadline:
        if cluster.edges[2].get("/simple/").headers.get("x-cluster-config") == "two":
            break
        time.sleep(0.2)
    assert cluster.edges[2].get("/simple/").headers.get("x-cluster-config") == "two"


def test_the_rules_rate_limit_counters_are_shared(cluster: Cluster) -> None:
    """A ``ratelimit`` of the rules counts a client's requests on every node together."""
    text = 'sub recv { if (req.http.x-probe == "1") { ratelimit "probe" 4 per 1m; } }\n'
    edge = cluster.edges[0]
    made = edge.admin_request("POST", "/config/versions", json={"source": text})
    assert made.status_code == 201, made.text
    done = edge.admin_request("POST", "/config/activate", json={"version": made.json()["version"]})
    assert done.status_code == 200, done.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_active_source(n) != text for n in cluster.edges):
        time.sleep(0.2)
    assert all(_active_source(n) == text for n in cluster.edges)
    time.sleep(1.5)  # every worker swaps to the active version within a second
    statuses = []
    for i in range(12):  # alone, each edge would let 4 through: 12 in all
        statuses.append(cluster.edges[i % 3].get("/simple/", headers={"x-probe": "1"}).status_code)
        time.sleep(0.25)  # more than a sync interval (0.1 s) between two requests
    # shared: about 4 in all (a sync late under load may let one more through on a node);
    # one bucket per edge would let 12 through, 4 on each
    assert 4 <= statuses.count(200) <= 6, statuses
    assert statuses[-3:] == [429, 429, 429], statuses
    assert all(e.get("/simple/").status_code == 200 for e in cluster.edges)  # others unlimited


def test_a_table_edited_on_one_node_is_edited_on_every_node(cluster: Cluster) -> None:
    text = (
        'table notes { "greeting": "hello" }\n'
        'sub deliver { set resp.http.x-note = notes["greeting"]; }\n'
    )
    edge = cluster.edges[0]
    made = edge.admin_request("POST", "/config/versions", json={"source": text})
    assert made.status_code == 201, made.text
    done = edge.admin_request("POST", "/config/activate", json={"version": made.json()["version"]})
    assert done.status_code == 200, done.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_active_source(n) != text for n in cluster.nodes):
        time.sleep(0.2)
    assert all(_active_source(n) == text for n in cluster.nodes)
    put = cluster.edges[1].admin_request(
        "PUT", "/config/tables/notes", json={"greeting": "bonjour"}
    )
    assert put.status_code == 200, put.text

    def notes(node: EdgeProcess) -> object:
        return node.admin_request("GET", "/config/tables/notes").json()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        notes(n) != {"greeting": "bonjour"} for n in cluster.nodes
    ):
        time.sleep(0.2)
    assert [notes(n) for n in cluster.nodes] == [{"greeting": "bonjour"}] * len(cluster.nodes)
    deadline = time.monotonic() + 5  # every worker reads the new contents within a second
    seen: list[str | None] = []
    while time.monotonic() < deadline:
        seen = [e.get("/simple/").headers.get("x-note") for e in cluster.edges]
        if seen == ["bonjour"] * 3:
            break
        time.sleep(0.2)
    assert seen == ["bonjour"] * 3


def test_an_edge_restarted_after_missing_purges_serves_no_purged_object(
    cluster: Cluster,
) -> None:
    edge = cluster.edges[2]
    page = "/simple/gamma/"
    assert edge.get(page).status_code == 200 and _cached(edge, page)
    os.killpg(edge.pid, signal.SIGKILL)  # a crash: its last heartbeat is still recent
    edge.stop()
    asked = cluster.edges[0]
    cmd = [*edge_command(), "purge", "--admin-url", asked.admin_url, "--token", asked.token]
    done = subprocess.run(
        [*cmd, "--url", page], check=False, capture_output=True, text=True, timeout=30
    )
    # named as not having acknowledged (within --purge-timeout), and the command says so
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "not acknowledged by: edge2" in done.stderr
    assert "applied on 3 node(s): edge0, edge1, shield" in done.stdout
    edge.start()
    assert not _cached(edge, page)
    assert edge.get(page).status_code == 200


def test_redis_down_edges_keep_serving_and_purges_resume(cluster: Cluster) -> None:
    page = "/simple/beta/"
    for node in cluster.nodes:
        assert node.get(page).status_code == 200
    cluster.redis.kill()
    try:
        for edge in cluster.edges:
            assert edge.get(page).status_code == 200  # a hit
            assert edge.get("/simple/").status_code == 200  # a miss through the shield
        result = cluster.edges[0].purge(urls=[page])
        assert result["queued"] is True and "redis unreachable" in result["missing"][0]
        assert not _cached(cluster.edges[0], page)  # applied where it was asked
        assert _cached(cluster.edges[1], page)  # the others wait for Redis
    finally:
        cluster.redis.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_cached(n, page) for n in cluster.nodes):
        time.sleep(0.1)
    assert not any(_cached(n, page) for n in cluster.nodes)
    # and purges go through Redis again, acknowledged by every node
    deadline = time.monotonic() + 10
    result = {}
    while time.monotonic() < deadline:
        result = cluster.edges[1].purge(urls=["/simple/"])
        if not result["missing"]:
            break
        time.sleep(0.2)
    assert result["missing"] == [] and len(result["nodes"]) == 4, result


def test_primary_backend_down_files_come_from_the_fallback(cluster: Cluster) -> None:
    wheel = cluster.fallback.files("epsilon")[0]
    page, path = "/simple/epsilon/", wheel.url_path
    stale = "/simple/zeta/"  # fresh for 1 s, then stale-if-error for a day
    assert "zeta-1.0" in cluster.edges[0].get(stale).text
    time.sleep(1.2)
    cluster.origin.stop()
    try:
        # a stored stale copy is preferred to the fallback (which has zeta 9.9)
        r = cluster.edges[0].get(stale)
        assert r.status_code == 200 and "zeta-1.0" in r.text and "zeta-9.9" not in r.text
        assert cluster.fallback.count(stale, exact=True) == 0
        edge = cluster.edges[1]
        r = edge.get(page)
        assert r.status_code == 200 and wheel.filename in r.text
        f = edge.get(path)
        assert f.status_code == 200 and f.content == wheel.path.read_bytes()
        assert cluster.fallback.count(page, exact=True) >= 1
        assert cluster.fallback.count(path, exact=True) == 1
    finally:
        with contextlib.suppress(Exception):
            cluster.origin.start()
