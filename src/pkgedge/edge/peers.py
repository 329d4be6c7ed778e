"""One fetch per object per tier: the nodes of a tier share objects by rendezvous hashing.

With ``--peers``, every node of a tier knows the tier's nodes (``NAME=URL,...``, this node
among them, or ``redis``: the live nodes of its tier that registered a URL with ``--redis``).
A miss for a cache path is fetched by the path's *owner*: the node with the highest score
``hash(name, path)`` (highest random weight, Thaler and Ravishankar). A node that does not own
the path asks the owner for it (the same path, with ``Pkgedge-Tier: peer``), the owner fetches
it from its shield or the origin as any miss (and never asks a peer again), and both keep a
copy. Concurrent misses on every node of the tier then collapse at the owner: one fetch per
object for the tier; a node that joins or leaves moves only the objects it owns.

The peers trust each other (``--trusted-edges`` covers their addresses): an owner answers a
peer as a shield answers its edges, with the edge-only fields, so both copies keep the
origin's edge TTLs and surrogate keys. A peer's answer is already in this tier's form (its
links rewritten to edge paths), so it is not rewritten again; the foreign file hosts its links
name are learnt from it.

Health: a peer that cannot be reached is skipped for :data:`DOWN_FOR` seconds (the next
highest score owns its objects meanwhile, this node included); the fill that found it down
fetches directly. Answers (a 502 included) are the owner's answer: the tier's fetcher spoke.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from hashlib import blake2b
from urllib.parse import urlsplit

#: the value of :data:`pkgedge.edge.shield.TIER` on a request one peer makes of another
PEER = "peer"
DOWN_FOR = 5.0


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    origin: str  # scheme://host:port
    prefix: str  # the path the peer serves under ("" at its root)
    seed: bytes  # the name's bytes, hashed with each path

    @classmethod
    def of(cls, name: str, url: str) -> Peer:
        p = urlsplit(url)
        return cls(name, f"{p.scheme}://{p.netloc.lower()}", p.path.rstrip("/"), name.encode())


def score(seed: bytes, path: str) -> int:
    """The weight of node ``seed`` for ``path`` (64 bits of BLAKE2b: uniform, stable across
    processes and machines, unlike ``hash()``)."""
    h = blake2b(seed, digest_size=8)
    h.update(b"\x00")
    h.update(path.encode("utf-8", "surrogateescape"))
    return int.from_bytes(h.digest(), "big")


class Peers:
    """One per worker: who owns a path, and which peers are down."""

    def __init__(self, me: str, nodes: dict[str, str]) -> None:
        self.me = me
        self.nodes: dict[str, Peer] = {}
        self.down: dict[str, float] = {}
        self.set_nodes(nodes)

    def __repr__(self) -> str:
        return f"<Peers {self.me} of {sorted(self.nodes)}>"

    def set_nodes(self, nodes: dict[str, str]) -> None:
        """The tier's nodes (name → URL); this node is always one of them."""
        fresh = {name: Peer.of(name, url) for name, url in nodes.items()}
        fresh.setdefault(self.me, Peer(self.me, "", "", self.me.encode()))
        self.nodes = fresh

    def owner(self, path: str, now: float | None = None) -> Peer | None:
        """The peer that fetches ``path`` for the tier; None when it is this node."""
        down = self.down
        if down:
            now = time.monotonic() if now is None else now
            for name in [n for n, until in down.items() if until <= now]:
                del down[name]
        best: Peer | None = None
        top = -1
        for peer in self.nodes.values():
            if peer.name in down:
                continue
            s = score(peer.seed, path)
            if s > top:
                best, top = peer, s
        return None if best is None or best.name == self.me else best

    def failed(self, peer: Peer) -> None:
        self.down[peer.name] = time.monotonic() + DOWN_FOR
