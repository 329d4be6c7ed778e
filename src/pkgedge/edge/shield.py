"""Two tiers: edges whose misses go to a shield node (another pkgedge edge), not the origin.

An edge started with ``--shield URL`` routes every cache path to the shield unchanged (the
shield serves the same paths: ``/simple/``, ``/+f/...``, ``/files/...``) and marks its fills
with ``Pkgedge-Tier: edge``. Misses on every edge then collapse at the shield: one origin
fetch per object for the whole cluster. Edge-only logic runs at the edge (client identity,
protection, logging, stale-while-revalidate on its own copies).

A shield started with ``--trusted-edges CIDRS`` believes those peers' X-Forwarded-For, never
limits them (protection happened at the edge), and sends them what it sends no client: the
edge-only fields (Surrogate-Control, Surrogate-Key, targeted cache fields), so that the edge
keeps the origin's edge TTLs and can be purged by surrogate key.

``Cache-Status`` (RFC 9211): a response an edge fetched from its shield lists the shield's
member first (named ``pkgedge-shield``), then the edge's own. Within a tier
(``--peers``, edge/peers.py) the owner of a path names its own member ``pkgedge-peer`` when
it answers a peer, so a response one peer fetched from another lists (the shield's,) the
owner's, then its own.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pkgedge.http.headers import EDGE_ONLY, Headers
from pkgedge.http.request import Request

#: the request field an edge marks its fills with
TIER = "pkgedge-tier"
SHIELD_NAME = "pkgedge-shield"
PEER_NAME = "pkgedge-peer"


def route(shield: str, path: str) -> tuple[str, str]:
    """(origin, target) of ``path`` at the shield ``shield`` (a URL ending in ``/``)."""
    p = urlsplit(shield)
    return f"{p.scheme}://{p.netloc}", p.path.rstrip("/") + path


class TrustedEdges:
    """The peers a shield treats as its edges (``--trusted-edges``)."""

    def __init__(self, cidrs: str) -> None:
        self.nets = [
            ipaddress.ip_network(c.strip(), strict=False) for c in cidrs.split(",") if c.strip()
        ]
        self._seen: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"<TrustedEdges {[str(n) for n in self.nets]}>"

    def __bool__(self) -> bool:
        return bool(self.nets)

    def trusts(self, peer: str) -> bool:
        known = self._seen.get(peer)
        if known is None:
            try:
                addr = ipaddress.ip_address(peer)
            except ValueError:
                known = False
            else:
                known = any(addr in n for n in self.nets)
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen[peer] = known
        return known

    def asks(self, req: Request) -> bool:
        """Is this request an edge's fill (from a trusted peer)?"""
        return bool(self.nets) and TIER in req.map and self.trusts(req.client)


def edge_fields(headers: Headers) -> Headers:
    """The stored edge-only fields a shield sends to its edges."""
    return [(n, v) for n, v in headers if n in EDGE_ONLY]


def both_tiers(headers: Headers, own: str) -> str:
    """``own`` Cache-Status preceded by the shield's member(s) received with ``headers``, for
    a response the shield just gave: a miss, a revalidation or a pass (a hit here did not ask
    it; a stale copy served because it failed, or a refusal, did not get an answer from it)."""
    answered = "fwd=miss" in own or "fwd-status=" in own
    if not answered and not (own.startswith("pkgedge; fwd=bypass") and "detail=" not in own):
        return own
    upstream = [v for n, v in headers if n == "cache-status"]
    if not upstream:
        return own
    members = []
    for value in upstream:
        for member in value.split(","):
            name, sep, rest = member.strip().partition(";")
            if name.strip() == "pkgedge":
                name = SHIELD_NAME
            members.append(name.strip() + sep + rest)
    return ", ".join([*members, own])


def as_peer(status: str) -> str:
    """``status`` with its last member (this node's own) named :data:`PEER_NAME`."""
    head, sep, last = status.rpartition(", ")
    name, semi, rest = last.partition(";")
    if name.strip() != "pkgedge":
        return status
    return head + sep + PEER_NAME + semi + rest
