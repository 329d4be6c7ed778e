"""One fetch per object per tier (issue 10): three edges sharing objects by rendezvous hashing
(``--peers redis``: the node list comes from Redis), in front of the test upstream, whose
files live on a second host (links to a foreign file host, rewritten to ``/+f/...``). Each
edge on its own loopback address (127.0.0.2-4), Redis and the origin on 127.0.0.1. The tests
run in file order and share the tier; the last one stops a peer. Large objects are the file
host's ``/big/N`` bodies, asked for as ``/+f/http/HOST:PORT/big/N``: every edge learns that
host from an index page at the start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pkgedge.edge.peers import score
from support.edge import EdgeProcess
from support.redis import RedisServer, redis_server  # noqa: F401  (module fixture)
from support.upstream import UpstreamIndex, populate_default

NAMES = ["peer0", "peer1", "peer2"]


def owner_of(path: str, names: list[str] = NAMES) -> str:
    return max(names, key=lambda n: score(n.encode(), path))


def big(origin: UpstreamIndex, n: int) -> str:
    """The edge path of the file host's ``/big/n`` body."""
    return f"/+f/http/{origin.files_url.partition('://')[2]}/big/{n}"


@pytest.fixture(scope="module")
def tier(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: RedisServer,  # noqa: F811
) -> Iterator[tuple[UpstreamIndex, dict[str, EdgeProcess]]]:
    tmp = tmp_path_factory.mktemp("peers")
    origin = populate_default(UpstreamIndex(tmp / "origin", file_host=True)).start()
    origin.set_headers("/big/4242", {"Surrogate-Key": "keyed", "Surrogate-Control": "max-age=600"})
    edges: dict[str, EdgeProcess] = {}
    try:
        for i, name in enumerate(NAMES):
            host = f"127.0.0.{i + 2}"
            edge = EdgeProcess(
                origin.index_url,
                tmp / name,
                listen=f"{host}:0",
                admin=f"{host}:0",
                extra_args=[
                    *("--redis", redis_server.url, "--node-name", name),
                    *("--peers", "redis", "--trusted-edges", "127.0.0.0/8"),
                ],
            )
            edges[name] = edge.start()
        deadline = time.monotonic() + 10
        for edge in edges.values():  # every worker reads the node list once a second
            while len(edge.admin_request("GET", "/peers").json()["nodes"]) < len(NAMES):
                assert time.monotonic() < deadline, edge.admin_request("GET", "/peers").text
                time.sleep(0.1)
        for edge in edges.values():  # each learns the file host from a page of its own
            assert edge.get("/simple/alpha/").status_code == 200
        yield origin, edges
    finally:
        for edge in edges.values():
            edge.stop()
        origin.stop()


def _get(edge: EdgeProcess, path: str) -> httpx.Response:
    with edge.client() as client:  # one connection per request: all at once
        return client.get(path)


def _members(resp: object) -> list[str]:
    value = resp.headers.get("cache-status", "")  # type: ignore[attr-defined]
    return [m.strip() for m in value.split(",")]


def test_the_node_list_comes_from_redis(
    tier: tuple[UpstreamIndex, dict[str, EdgeProcess]],
) -> None:
    _, edges = tier
    for name, edge in edges.items():
        seen = edge.admin_request("GET", "/peers").json()
        assert seen["me"] == name
        assert seen["nodes"][name] == edge.url  # the advertised URL is the listener's
        assert {n: u for n, u in seen["nodes"].items()} == {n: e.url for n, e in edges.items()}


def test_concurrent_misses_on_every_node_fetch_each_object_once(
    tier: tuple[UpstreamIndex, dict[str, EdgeProcess]],
) -> None:
    origin, edges = tier
    paths = [big(origin, 2000 + i) for i in range(12)]
    origin.reset_log()
    jobs = [(edge, path) for path in paths for edge in edges.values()] * 2
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(lambda job: _get(*job), jobs))
    assert {r.status_code for r in answers} == {200}
    bodies = {}
    for (_, path), r in zip(jobs, answers, strict=True):
        assert bodies.setdefault(path, r.content) == r.content
    for n in range(2000, 2012):
        assert origin.count(f"/big/{n}", exact=True) == 1, (n, origin.count(f"/big/{n}"))
    fetched = sum(e.stats()["peer_fetches"] for e in edges.values())
    assert fetched >= len(paths)  # each object reached the origin through its owner
    for path in paths:  # every node kept its own copy: a second round is all hits
        for edge in edges.values():
            own = _members(edge.get(path))[-1]
            assert own.startswith("pkgedge; hit"), (path, own)


def test_a_peer_copy_names_the_owner_and_keeps_its_surrogate_keys(
    tier: tuple[UpstreamIndex, dict[str, EdgeProcess]],
) -> None:
    origin, edges = tier
    path = big(origin, 4242)
    owner = owner_of(path)
    other = next(n for n in NAMES if n != owner)
    r = edges[other].get(path)
    assert r.status_code == 200
    assert [m.split(";")[0] for m in _members(r)] == ["pkgedge-peer", "pkgedge"]
    assert "fwd=miss" in _members(r)[0] and "fwd=miss" in _members(r)[1]
    assert "surrogate-key" not in r.headers  # edge-only fields never reach a client
    assert _members(edges[owner].get(path))[-1].startswith("pkgedge; hit")
    assert origin.count("/big/4242", exact=True) == 1
    # the peer's copy was stored with the origin's surrogate key: purging it reaches both
    result = edges[other].purge(keys=["keyed"])
    assert result["nodes"][other] >= 1 and result["nodes"][owner] >= 1, result
    assert not result["missing"]


def test_pages_from_a_peer_are_not_rewritten_twice_and_their_files_are_served(
    tier: tuple[UpstreamIndex, dict[str, EdgeProcess]],
) -> None:
    origin, edges = tier
    origin.add_project("omega", "1.0")  # a page no node has seen
    path = "/simple/omega/"
    owner = owner_of(path)
    other = next(n for n in NAMES if n != owner)
    via_peer = edges[other].get(path, headers={"Accept": "text/html"})
    direct = edges[owner].get(path, headers={"Accept": "text/html"})
    assert via_peer.status_code == direct.status_code == 200
    assert via_peer.content == direct.content  # the same edge-form page on both
    links = re.findall(rb'href="([^"]+)"', via_peer.content)
    assert links and all(link.startswith(b"/+f/http/127.0.0.1:") for link in links), links
    # the file host the owner saw is allowed here too: the file is served by this node
    href = links[0].decode()
    target, _, fragment = href.partition("#sha256=")
    got = edges[other].get(target)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == fragment


def _downloads(edge: EdgeProcess, project: str) -> int:
    log = edge.cache_dir / "stats" / "downloads.jsonl"
    text = log.read_text() if log.exists() else ""
    return sum(json.loads(line)["project"] == project for line in text.splitlines())


def test_a_download_is_counted_once_where_the_client_asked(
    tier: tuple[UpstreamIndex, dict[str, EdgeProcess]],
) -> None:
    origin, edges = tier
    origin.add_project("counted", "1.0")
    wheel = next(f for f in origin.files("counted") if f.filename.endswith(".whl"))
    path = big(origin, 0).replace("/big/0", wheel.url_path)  # through the file host
    owner = owner_of(path)
    other = next(n for n in NAMES if n != owner)
    assert edges[other].get("/simple/counted/").status_code == 200  # (learns the host)
    assert edges[owner].get("/simple/counted/").status_code == 200
    pip = {"user-agent": "pip/24.0"}
    assert edges[other].get(path, headers=pip).status_code == 200  # a fill of the owner's
    assert edges[owner].get(path, headers=pip).status_code == 200  # a client of its own
    deadline = time.monotonic() + 10  # the workers write their records once a second
    while _downloads(edges[other], "counted") < 1 or _downloads(edges[owner], "counted") < 1:
        assert time.monotonic() < deadline, "download records never written"
        time.sleep(0.1)
    time.sleep(1.2)  # one more flush: a record of the peer's fill would be there by now
    assert _downloads(edges[other], "counted") == 1
    assert _downloads(edges[owner], "counted") == 1  # its own client's, not the peer's fill


def test_a_node_whose_peer_is_down_fetches_directly(
    tier: tuple[UpstreamIndex, dict[str, EdgeProcess]],
) -> None:
    origin, edges = tier
    gone = "peer2"
    paths = [p for p in (big(origin, 3000 + i) for i in range(60)) if owner_of(p) == gone][:4]
    assert len(paths) == 4
    os.killpg(edges[gone].pid, signal.SIGKILL)  # crashed: Redis still lists it for a while
    edges[gone].stop()
    asker = edges["peer0"]
    before = asker.stats()["peer_failures"]
    for i, path in enumerate(paths):
        r = asker.get(path)
        assert r.status_code == 200
        members = [m.split(";")[0] for m in _members(r)]
        if i == 0:  # found it unreachable: fetched here
            assert members == ["pkgedge"]
        else:  # skipped since: the next highest score owns the path (this node or peer1)
            next_owner = owner_of(path, ["peer0", "peer1"])
            assert members == (
                ["pkgedge"] if next_owner == "peer0" else ["pkgedge-peer", "pkgedge"]
            )
        assert origin.count("/big/" + path.rpartition("/")[2], exact=True) == 1
    assert asker.stats()["peer_failures"] - before == 1
