"""The origin-facing side of a worker: routes, pooled connections, the request fields the
origin sees, and rewriting of what it answers (index pages, redirects).

A fill receives this object; nothing here calls back into the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from pkgedge.cache.keys import simple_variant
from pkgedge.cache.store import Store
from pkgedge.cluster.hosts import SharedHosts
from pkgedge.config import EdgeSettings, parse_backends
from pkgedge.edge import shield
from pkgedge.edge.director import Director
from pkgedge.edge.peers import PEER, Peers
from pkgedge.edge.rewrite import FILE_PREFIX, REWRITABLE, Rewriter, foreign_origins
from pkgedge.errors import PkgedgeError
from pkgedge.http.headers import Headers, end_to_end
from pkgedge.http.request import Request
from pkgedge.upstream.client import UpstreamPool, UpstreamResponse

log = logging.getLogger("pkgedge.edge")

#: Request fields stripped before the origin: they could change its answer without being part
#: of the cache key (cache poisoning), or are ours to set.
UNKEYED = frozenset(
    {
        "x-forwarded-host",
        "cache-status",
        "x-forwarded-server",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-forwarded-scheme",
        "x-original-url",
        "x-rewrite-url",
        "x-original-host",
        "x-host",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "surrogate-capability",
        "x-real-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
    }
)
#: Request fields not forwarded on a cache fill: the edge asks for the whole identity object.
_FILL_DROP = frozenset(
    {
        "host",
        "accept-encoding",
        "range",
        "if-range",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "cache-control",
        "pragma",
        "cookie",
        "content-length",
        "pkgedge-trace",
    }
)


class Backend:
    """One per worker: the upstream index, the file hosts it links, and their pools."""

    def __init__(self, settings: EdgeSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.rewriter = Rewriter(settings.upstream)
        #: named backends the rules may choose (``set req.backend``, ``restart "name"``)
        self.named = {name: Rewriter(url) for name, url in settings.backends.items()}
        self._pools: dict[str, UpstreamPool] = {}
        self._hosts: set[str] = set()
        #: the file hosts every node learnt (``--redis``: cluster/hosts.py)
        self.shared_hosts: SharedHosts | None = None
        #: given to every pool: told each origin request's latency (stats)
        self.observe: Callable[[float], None] | None = None
        #: counts a named event (the pipeline sets it to its counters' add)
        self.count: Callable[[str], None] = _nothing
        self.director = (
            Director(settings.upstream, settings.fallback, self.pool) if settings.fallback else None
        )
        #: this tier's nodes, sharing objects by rendezvous hashing (``--peers``, edge/peers.py)
        self.peers: Peers | None = None
        if settings.peers:
            static = {} if settings.peers == "redis" else parse_backends(settings.peers)
            self.peers = Peers(settings.node_name, static)

    def __repr__(self) -> str:
        return f"<Backend {self.settings.upstream} pools={list(self._pools.values())!r}>"

    # -- routes --------------------------------------------------------------------------
    def route(self, path: str, backend: str = "") -> tuple[str, str] | None:
        """(origin, target) to fetch for a cache path; None if this edge does not serve it.
        ``backend`` names one of ``settings.backends`` ("" or "origin": the upstream); a file
        path on another backend is fetched there at the same path."""
        named = self.named.get(backend) if backend else None
        if named is not None:
            if path.startswith(FILE_PREFIX):
                rest = path[len(FILE_PREFIX) :].partition("/")[2].partition("/")[2]
                return f"{named.scheme}://{named.netloc}", "/" + rest
            return named.upstream_url(path)
        route = self.rewriter.upstream_url(path)
        if route is None:
            return None
        if self.settings.shield:  # two tiers: every path is the shield's (edge/shield.py)
            return shield.route(self.settings.shield, path)
        if path.startswith(FILE_PREFIX) and not self._host_ok(route[0]):
            return None
        return route

    async def route_shared(self, path: str) -> tuple[str, str] | None:
        """:meth:`route` of a path it refused, once more after looking whether another node
        learnt its file host (``--redis``): None when none did."""
        if self.shared_hosts is None or not path.startswith(FILE_PREFIX):
            return None
        up = self.rewriter.upstream_url(path)
        if up is None or not await self.shared_hosts.known(up[0]):
            return None
        self._hosts.add(up[0])
        self.store.allow_host(up[0])
        return self.route(path)

    def _host_ok(self, origin: str) -> bool:
        if origin in self._hosts:
            return True
        if self.store.host_allowed(origin):
            self._hosts.add(origin)
            return True
        return False

    def pool(self, origin: str) -> UpstreamPool:
        pool = self._pools.get(origin)
        if pool is None:
            p = urlsplit(origin)
            port = p.port or (443 if p.scheme == "https" else 80)
            pool = UpstreamPool(
                p.scheme, p.hostname or "", port, **UpstreamPool.kwargs_from(self.settings)
            )
            pool.observe = self.observe
            self._pools[origin] = pool
        return pool

    async def fetch(
        self, origin: str, target: str, headers: Headers, *, failover: bool
    ) -> UpstreamResponse:
        """A fill's GET: through the director (primary, then fallback) when there is one."""
        if self.director is not None:
            return await self.director.fetch(origin, target, headers, failover=failover)
        return await self.pool(origin).request("GET", target, headers)

    async def fill_fetch(
        self,
        path: str,
        route: tuple[str, str],
        headers: Headers,
        req_map: dict[str, str],
        *,
        failover: bool,
    ) -> tuple[UpstreamResponse, bool]:
        """A fill's GET, from the peer that owns ``path`` in this tier when there is one
        (edge/peers.py), else from ``route``; and whether a peer answered."""
        peers = self.peers
        if (
            peers is not None
            and req_map.get(shield.TIER) != PEER  # a peer's own fill: never asked on
            and route == self.route(path)  # the default route (not a rules' backend)
        ):
            peer = peers.owner(path)
            if peer is not None:
                asked = [(n, v) for n, v in headers if n != shield.TIER]
                asked.append((shield.TIER, PEER))
                try:
                    resp = await self.pool(peer.origin).request("GET", peer.prefix + path, asked)
                except (PkgedgeError, OSError) as exc:
                    peers.failed(peer)
                    self.count("peer_failures")
                    log.warning(
                        "peer %s unreachable (%s): fetching %s directly", peer.name, exc, path
                    )
                else:
                    self.count("peer_fetches")
                    return resp, True
        return await self.fetch(*route, headers, failover=failover), False

    # -- what the origin sees ------------------------------------------------------------
    def origin_headers(self, req: Request, *, fill: bool) -> Headers:
        headers = [
            (n, v) for n, v in end_to_end(req.headers) if n not in ("host", "content-length")
        ]
        if fill:
            headers = [(n, v) for n, v in headers if n not in _FILL_DROP]
            headers.append(("accept-encoding", "identity"))
        # fields that could change the origin's answer but are not part of the cache key,
        # and internal fields a client might inject, never reach the origin
        headers = [(n, v) for n, v in headers if n not in UNKEYED and not n.startswith("pkgedge-")]
        prior = req.map.get("x-forwarded-for")
        headers = [(n, v) for n, v in headers if n not in ("x-forwarded-for", "forwarded")]
        headers.append(("x-forwarded-for", f"{prior}, {req.client}" if prior else req.client))
        headers.append(("forwarded", f'for="{req.client}";proto=http'))
        headers.append(("via", "1.1 pkgedge"))
        if self.settings.shield:
            headers.append((shield.TIER, "edge"))
        return headers

    def fill_headers(self, req: Request, path: str) -> Headers:
        """A fill asks for the identity object, and for the simple API's folded variant."""
        headers = self.origin_headers(req, fill=True)
        if path.startswith("/simple"):
            headers = [(n, v) for n, v in headers if n != "accept"]
            if simple_variant(req.map.get("accept")) == "json":
                headers.append(("accept", "application/vnd.pypi.simple.v1+json"))
            else:
                headers.append(("accept", "text/html"))
        return headers

    # -- what the client sees ------------------------------------------------------------
    def should_rewrite(self, ctype: str) -> bool:
        return self.settings.rewrite_file_hosts and ctype.startswith(REWRITABLE)

    async def rewrite_page(self, body: bytes, ctype: str, page_url: str) -> bytes:
        new, origins = self.rewriter.rewrite_body(body, ctype, page_url)
        await self._learn(origins)
        return new

    async def learn_hosts(self, body: bytes) -> None:
        """The foreign file hosts a page in edge form links (a peer's answer)."""
        await self._learn(foreign_origins(body))

    async def _learn(self, origins: set[str]) -> None:
        """Allow the file hosts a page links; new ones are told to the other nodes
        (``--redis``) before the page is answered, as a client's next request may reach
        another node."""
        new = origins - self._hosts
        for origin in new:
            self.store.allow_host(origin)
            self._hosts.add(origin)
        if new and self.shared_hosts is not None:
            await self.shared_hosts.add(new)

    def rewrite_location(self, headers: Headers, page_url: str) -> Headers:
        return [
            (n, self.rewriter.location(v, page_url) if n == "location" else v) for n, v in headers
        ]


def _nothing(name: str) -> None:
    pass
