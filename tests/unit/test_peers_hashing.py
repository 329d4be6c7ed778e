"""The pure pieces of a tier sharing objects (edge/peers.py): rendezvous hashing, its
agreement between nodes, its spread and its small moves, the down list, the options, the
owner's Cache-Status member and the file hosts learnt from a peer's page. The tier itself runs
in tests/integration/test_peers.py."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from pkgedge.config import build_edge_settings
from pkgedge.edge import shield
from pkgedge.edge.peers import DOWN_FOR, Peers, score
from pkgedge.edge.rewrite import Rewriter, foreign_origins
from pkgedge.errors import ConfigError

NODES = {f"n{i}": f"http://10.0.0.{i}:8080/" for i in range(3)}
PATHS = [f"/simple/project-{i}/" for i in range(3000)]


def owners(nodes: dict[str, str], me: str) -> dict[str, str]:
    peers = Peers(me, nodes)
    out = {}
    for path in PATHS:
        owner = peers.owner(path)
        out[path] = me if owner is None else owner.name
    return out


def test_every_node_names_the_same_owner_and_asks_it_at_its_url() -> None:
    views = [owners(NODES, me) for me in NODES]
    assert views[0] == views[1] == views[2]
    peer = Peers("n0", NODES).owner(next(p for p in PATHS if views[0][p] == "n2"))
    assert peer is not None and (peer.origin, peer.prefix) == ("http://10.0.0.2:8080", "")
    assert Peers("n0", {"n0": "http://a/", "n1": "http://b:1/edge/"}).nodes["n1"].prefix == "/edge"


def test_objects_spread_evenly_over_the_nodes() -> None:
    counts = Counter(owners(NODES, "n0").values())
    assert set(counts) == set(NODES)
    for n in counts.values():  # 1000 each expected; a few standard deviations (~26) apart
        assert 880 < n < 1120, counts


def test_a_node_joining_takes_only_objects_it_now_owns() -> None:
    before = owners(NODES, "n0")
    after = owners({**NODES, "n3": "http://10.0.0.3:8080/"}, "n0")
    moved = [p for p in PATHS if before[p] != after[p]]
    assert moved and all(after[p] == "n3" for p in moved)  # nothing moves between old nodes
    assert 600 < len(moved) < 900  # about a quarter


def test_the_score_is_stable_and_depends_on_name_and_path() -> None:
    assert score(b"n0", "/a") == score(b"n0", "/a")
    assert score(b"n0", "/a") != score(b"n1", "/a") != score(b"n1", "/b")
    assert 0 <= score(b"n0", "/a") < 2**64


def test_a_failed_peer_is_skipped_for_a_while() -> None:
    peers = Peers("n0", NODES)
    path = next(p for p in PATHS if (o := peers.owner(p)) is not None and o.name == "n1")
    owner = peers.owner(path)
    assert owner is not None
    peers.failed(owner)
    again = peers.owner(path)
    assert again is None or again.name == "n2"  # the next highest score meanwhile
    later = next(iter(peers.down.values())) + 0.01
    back = peers.owner(path, now=later)
    assert back is not None and back.name == "n1" and not peers.down
    assert DOWN_FOR > 0


def test_this_node_is_always_in_the_list() -> None:
    peers = Peers("me", {"a": "http://10.0.0.1/"})
    assert set(peers.nodes) == {"a", "me"}
    peers.set_nodes({})  # Redis knows nobody yet: every object is this node's
    assert all(peers.owner(p) is None for p in PATHS[:50])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"peers": "a=http://10.0.0.1/,b=http://10.0.0.2/"}, "needs trusted_edges"),
        (
            {"peers": "a=http://10.0.0.1/", "trusted_edges": "10.0.0.0/8", "node_name": "b"},
            "this node ('b', its --node-name) is not in the list",
        ),
        ({"peers": "redis", "trusted_edges": "10.0.0.0/8"}, "which is not set"),
        (
            {"peers": "a b=http://x/", "trusted_edges": "10.0.0.0/8", "node_name": "a"},
            "expected NAME=URL",
        ),
        ({"peers": "a=ftp://x/", "trusted_edges": "10.0.0.0/8", "node_name": "a"}, "http(s)"),
        ({"advertise": "10.0.0.1:80"}, "not an http(s) URL"),
    ],
)
def test_peer_options_are_checked(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_edge_settings({"upstream": "http://127.0.0.1:9/simple/", **flags}, environ={})


def test_a_valid_peer_list_is_kept() -> None:
    s = build_edge_settings(
        {
            "upstream": "http://127.0.0.1:9/simple/",
            "peers": " a=http://10.0.0.1:80/,b=http://10.0.0.2:80/ ",
            "trusted_edges": "10.0.0.0/8",
            "node_name": "a",
            "advertise": "http://10.0.0.1:80",
        },
        environ={},
    )
    assert s.peers == "a=http://10.0.0.1:80/,b=http://10.0.0.2:80/"
    assert s.advertise == "http://10.0.0.1:80/"


def test_the_owner_names_its_member_for_a_peer() -> None:
    assert shield.as_peer("pkgedge; fwd=miss; stored") == "pkgedge-peer; fwd=miss; stored"
    both = "pkgedge-shield; hit, pkgedge; fwd=miss"
    assert shield.as_peer(both) == "pkgedge-shield; hit, pkgedge-peer; fwd=miss"
    assert shield.as_peer("other; hit") == "other; hit"


def test_the_file_hosts_of_a_page_in_edge_form_are_found() -> None:
    rw = Rewriter("http://idx.test/simple/")
    html, seen = rw.rewrite_body(
        b'<a href="https://Files.Test:8443/p/x.whl#sha256=00">x</a><a href="/files/y">y</a>',
        "text/html",
        "http://idx.test/simple/x/",
    )
    assert foreign_origins(html) == seen == {"https://files.test:8443"}
    js, seen = rw.rewrite_body(
        b'{"files":[{"url":"http://other.test/p/x.whl"}]}',
        "application/vnd.pypi.simple.v1+json",
        "http://idx.test/simple/x/",
    )
    assert foreign_origins(js) == seen == {"http://other.test"}
    assert foreign_origins(b'<a href="/simple/x/">x</a> "/+f/ftp/h/x"') == set()
