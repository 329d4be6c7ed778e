"""The client side of the pipeline: recv → lookup → hit | miss | pass → deliver → log.

:meth:`Edge.try_hit` is the hot path: a fresh small object from the memory tier is answered
synchronously (one index read, one write), with no task created. Everything else goes through
:meth:`Edge.handle`, which joins or starts a :class:`~pkgedge.edge.fill.Fill`.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pkgedge.cache import fields, policy
from pkgedge.cache.entry import Entry
from pkgedge.cache.eviction import S3FIFO
from pkgedge.cache.invalidate import invalidated_keys
from pkgedge.cache.keys import cache_path, secondary_key, simple_variant
from pkgedge.cache.store import DiskStore
from pkgedge.config import EdgeSettings
from pkgedge.edge.fill import Fill, RemoteFill, State, new_objid
from pkgedge.edge.hooks import Hooks
from pkgedge.edge.phases import Phase, Trace
from pkgedge.edge.protect import Guard
from pkgedge.edge.respond import Client, Responder
from pkgedge.edge.rewrite import FILE_PREFIX, REWRITABLE, Rewriter
from pkgedge.errors import PkgedgeError
from pkgedge.http import response as dl
from pkgedge.http.headers import (
    Headers,
    as_map,
    end_to_end,
    header_block,
    status_line,
)
from pkgedge.stats.counters import Counters
from pkgedge.upstream.client import UpstreamPool

if TYPE_CHECKING:
    from pkgedge.http.request import Request

_HOT_MAX = 20_000
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
_UNKNOWN = "?"
#: Request fields that take a hit off the synchronous fast path.
_HIT_BLOCKERS = frozenset(
    {
        "range",
        "cache-control",
        "pragma",
        "if-none-match",
        "if-modified-since",
        "pkgedge-trace",
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


class Edge:
    """One per worker: the memory tier, pools, fills in progress, and the pipeline."""

    def __init__(
        self,
        settings: EdgeSettings,
        store: DiskStore,
        counters: Counters,
        hooks: Hooks | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.counters = counters
        self.hooks = hooks or Hooks()
        per_worker = max(1, settings.memory_size // max(1, settings.workers))
        self.memory: S3FIFO[str, bytes] = S3FIFO(per_worker)
        self.out = Responder(settings, store, self.memory, counters)
        self.guard = Guard(settings, counters) if settings.protection != "off" else None
        #: origin fetches in flight in this worker (fills and passes), capped
        self.fetching = 0
        self.fills: dict[bytes, Fill] = {}
        self.rewriter = Rewriter(settings.upstream)
        self._pools: dict[str, UpstreamPool] = {}
        self._hosts: set[str] = set()
        self._slots = counters.slots
        self._i_hits = counters.index("hits")
        self._i_bytes = counters.index("bytes_to_clients")
        self._generation = store.generation
        self._hot: dict[tuple[str, str | None], tuple[int, Entry, dict[str | None, bytes]]] = {}
        self._codings: dict[str | None, str | None] = {}

    def __repr__(self) -> str:
        return (
            f"<Edge upstream={self.settings.upstream} fills={len(self.fills)} "
            f"memory={self.memory!r}>"
        )

    # -- upstream ----------------------------------------------------------------------
    def pool(self, origin: str) -> UpstreamPool:
        pool = self._pools.get(origin)
        if pool is None:
            p = urlsplit(origin)
            port = p.port or (443 if p.scheme == "https" else 80)
            pool = UpstreamPool(
                p.scheme, p.hostname or "", port, **UpstreamPool.kwargs_from(self.settings)
            )
            self._pools[origin] = pool
        return pool

    def should_rewrite(self, path: str, ctype: str) -> bool:
        return self.settings.rewrite_file_hosts and ctype.startswith(REWRITABLE)

    def rewrite_page(self, body: bytes, ctype: str, page_url: str) -> bytes:
        new, origins = self.rewriter.rewrite_body(body, ctype, page_url)
        for origin in origins - self._hosts:
            self.store.allow_host(origin)
            self._hosts.add(origin)
        return new

    def rewrite_location(self, headers: Headers, page_url: str) -> Headers:
        out = []
        for n, v in headers:
            out.append((n, self.rewriter.location(v, page_url) if n == "location" else v))
        return out

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
        return headers

    # -- the hot path --------------------------------------------------------------------
    def try_hit(self, req: Request, client: Client) -> bool:
        """Answer a fresh hit whose body is in the memory tier, synchronously.

        Entries looked up here are kept per worker (keyed by target and Accept) for as long
        as the disk tier's generation is unchanged, so a repeated hit costs a few dict
        look-ups and one write; any commit or purge in any worker invalidates them.
        """
        m = req.map
        guard = self.guard
        now = time.time()
        if guard is not None:
            refusal = guard.admit(req, now)
            if refusal is not None:
                client.write(refusal)
                self.hooks.log(req, 429, len(refusal), "refused", 0.0)
                return True
        if req.method != "GET" or not _HIT_BLOCKERS.isdisjoint(m):
            return False
        gen = self._generation[0]
        hkey = (req.target, m.get("accept"))
        hot = self._hot.get(hkey)
        if hot is None or hot[0] != gen:
            path = cache_path(req.target)
            primary = path.encode()
            key, entry = self.store.lookup(primary, m, path)
            if entry is None or entry.no_cache or entry.status != 200:
                return False
            if key != primary and key != secondary_key(primary, ("accept",), m, path):
                return False  # varies on something else: take the full path
            if len(self._hot) > _HOT_MAX:
                self._hot.clear()
            hot = (gen, entry, {})
            self._hot[hkey] = hot
        entry = hot[1]
        ttl = entry.ttl(now)
        if ttl <= 0:
            return False
        ae = m.get("accept-encoding")
        coding = self._codings.get(ae, _UNKNOWN)
        if coding is _UNKNOWN:
            coding = dl.choose_encoding(ae) if self.settings.compress else None
            if len(self._codings) > 256:
                self._codings.clear()
            self._codings[ae] = coding
        prefixes = hot[2]
        prefix = prefixes.get(coding)
        if prefix is None:
            compressible = dl.compressible(entry.headers)
            if coding is not None and not (compressible and entry.size >= dl.MIN_COMPRESS):
                coding = None
                prefix = prefixes.get(None)
        if prefix is None:
            headers = entry.headers
            if coding is not None:
                headers = self.out.encoded_headers(headers, coding)
            elif dl.compressible(headers):
                headers = dl.add_vary(headers, "Accept-Encoding")
            prefix = status_line(entry.status) + header_block(
                h for h in headers if h[0] not in dl.OWN_FIELDS
            )
            prefixes[coding] = prefix
        body = self.memory.get(entry.objid + (coding or "")) if entry.size else b""
        if body is None:
            return False
        data = (
            b"%sage: %d\r\ncache-status: pkgedge; hit; ttl=%d\r\ncontent-length: %d\r\n%s\r\n%s"
            % (
                prefix,
                entry.age(now),
                ttl,
                len(body),
                b"" if req.keep_alive else b"connection: close\r\n",
                body,
            )
        )
        client.write(data)
        slots = self._slots
        slots[self._i_hits] += 1
        slots[self._i_bytes] += len(data)
        self.store.touch(entry.objid)
        if guard is not None:
            guard.account(req, 200, "hit", now)
        if self.hooks.active:
            self.hooks.log(req, 200, len(data), f"pkgedge; hit; ttl={int(ttl)}", 0.0)
        return True

    # -- the full pipeline ---------------------------------------------------------------
    async def handle(self, req: Request, client: Client) -> None:
        started = time.monotonic()
        trace = Trace() if "pkgedge-trace" in req.map else None
        try:
            status, sent, cs = await self._handle(req, client, trace)
        except PkgedgeError as exc:
            status, cs = exc.status, "error"
            body = dl.error_response(exc.status, str(exc), close=not req.keep_alive)
            client.write(body)
            sent = len(body)
        self.counters.add("bytes_to_clients", sent)
        if self.guard is not None:
            self.guard.account(req, status, cs, time.time())
        self.hooks.log(req, status, sent, cs, time.monotonic() - started)

    async def _handle(
        self, req: Request, client: Client, trace: Trace | None
    ) -> tuple[int, int, str]:
        if self.guard is not None and not req.spec:
            # not admitted yet (admin of the fast path happens in try_hit)
            refusal = self.guard.admit(req, time.time())
            if refusal is not None:
                client.write(refusal)
                return int(refusal[9:12]), len(refusal), "refused"
        path = cache_path(req.target)
        route = self.rewriter.upstream_url(path)
        if route is None or (path.startswith(FILE_PREFIX) and not self._host_ok(route[0])):
            self.counters.add("client_errors")
            return self.out.error(client, req, 404, "not found: this edge serves only its index\n")
        origin, target = route
        if req.method not in ("GET", "HEAD"):
            if trace:
                trace.goto(Phase.PASS, "pass", f"method {req.method}")
            return await self._pass(req, client, origin, target, trace)
        if trace:
            trace.goto(Phase.LOOKUP)
        primary = path.encode()
        now = time.time()
        vkey, entry = self.store.lookup(primary, req.map, path)
        rd = policy.request_directives(req.map)
        if rd.only_if_cached and (entry is None or entry.ttl(now) <= 0):
            # RFC 9111 §5.2.1.7: answer from cache or 504, never contact the origin
            return self.out.error(client, req, 504, "only-if-cached: not fresh in cache")
        stale: Entry | None = None
        if entry is not None:
            fr = _freshness(entry)
            verdict, why = policy.lookup_verdict(
                entry.age(now), fr, rd, soft_purged=entry.soft_purged
            )
            if entry.soft_purged and verdict is policy.Verdict.STALE_REVALIDATE_BACKGROUND:
                # A soft purge says "this changed": revalidate now so the change is visible
                # at once; the old object still backs stale-if-error if the origin fails.
                verdict, why = policy.Verdict.REVALIDATE, "soft-purged"
            if trace:
                trace.goto(Phase.HIT, verdict.name.lower(), why)
            if verdict is policy.Verdict.FRESH:
                self.counters.add("hits")
                ttl = int(entry.ttl(now))
                return await self.out.deliver(req, client, entry, f"pkgedge; hit; ttl={ttl}", trace)
            if verdict is policy.Verdict.STALE_REVALIDATE_BACKGROUND:
                self.counters.add("stale")
                self._revalidate_in_background(req, primary, vkey, path, origin, target, entry)
                ttl = int(entry.ttl(now))
                return await self.out.deliver(
                    req,
                    client,
                    entry,
                    f"pkgedge; hit; ttl={ttl}; detail=stale-while-revalidate",
                    trace,
                )
            stale = entry
            if trace:
                trace.goto(Phase.MISS, "revalidate", why)
        elif trace:
            trace.goto(Phase.MISS, "miss", "not in cache")
        self.counters.add("misses")
        ckey = vkey
        if ckey == primary and path.startswith("/simple"):
            ckey = primary + b"\x00" + simple_variant(req.map.get("accept")).encode()
        fill: Fill | RemoteFill | None = self.fills.get(ckey)
        if fill is not None:
            fill.waiters += 1
            self.counters.add("collapsed")
            collapsed = True
        else:
            collapsed = False
            if self.fetching >= self.settings.max_origin_fetches:
                return await self._origin_busy(req, client, stale, trace)
            fill = self._start_fill(req, ckey, primary, path, origin, target, stale, vkey)
            if isinstance(fill, RemoteFill):
                self.counters.add("collapsed")
                collapsed = True
        if trace:
            trace.goto(Phase.FETCH, "collapsed" if collapsed else "fetch")
        return await self._serve_fill(req, client, fill, stale, collapsed, origin, target, trace)

    def _host_ok(self, origin: str) -> bool:
        if origin in self._hosts:
            return True
        if self.store.host_allowed(origin):
            self._hosts.add(origin)
            return True
        return False

    def _fill_headers(self, req: Request, path: str) -> Headers:
        headers = self.origin_headers(req, fill=True)
        if path.startswith("/simple"):
            headers = [(n, v) for n, v in headers if n != "accept"]
            if simple_variant(req.map.get("accept")) == "json":
                headers.append(("accept", "application/vnd.pypi.simple.v1+json"))
            else:
                headers.append(("accept", "text/html"))
        return headers

    def _start_fill(
        self,
        req: Request,
        ckey: bytes,
        primary: bytes,
        path: str,
        origin: str,
        target: str,
        stale: Entry | None,
        vkey: bytes,
    ) -> Fill | RemoteFill:
        objid = new_objid()
        owner = self.store.claim(ckey, objid)
        if owner is not None and owner[0] != os.getpid():
            return RemoteFill(self, ckey, owner[0], owner[1])
        fill = Fill(
            self,
            ckey,
            primary,
            path,
            origin,
            target,
            self._fill_headers(req, path),
            dict(req.map),
            stale,
            vkey if stale is not None else None,
        )
        fill.objid = objid
        fill.waiters = 1
        self.fills[ckey] = fill
        fill.start()
        return fill

    def _revalidate_in_background(
        self,
        req: Request,
        primary: bytes,
        vkey: bytes,
        path: str,
        origin: str,
        target: str,
        entry: Entry,
    ) -> None:
        ckey = vkey
        if ckey == primary and path.startswith("/simple"):
            ckey = primary + b"\x00" + simple_variant(req.map.get("accept")).encode()
        if ckey in self.fills or self.store.busy(ckey) is not None:
            return
        self._start_fill(req, ckey, primary, path, origin, target, entry, vkey)

    async def _serve_fill(
        self,
        req: Request,
        client: Client,
        fill: Fill | RemoteFill,
        stale: Entry | None,
        collapsed: bool,
        origin: str,
        target: str,
        trace: Trace | None,
    ) -> tuple[int, int, str]:
        while fill.state is State.PENDING:
            await fill.wait_progress()
        detail = "; detail=collapsed" if collapsed else ""
        if fill.state is State.NOT_MODIFIED and fill.entry is not None:
            if trace:
                trace.goto(Phase.DELIVER, "revalidated", "origin said 304")
            ttl = int(fill.entry.ttl(time.time()))
            return await self.out.deliver(
                req,
                client,
                fill.entry,
                f"pkgedge; fwd=stale; fwd-status=304; ttl={ttl}{detail}",
                trace,
            )
        if fill.state is State.FAILED:
            now = time.time()
            if stale is not None and policy.can_serve_stale_on_error(
                stale.age(now), _freshness(stale)
            ):
                self.counters.add("stale")
                if trace:
                    trace.goto(Phase.DELIVER, "stale-if-error", str(fill.error))
                return await self.out.deliver(
                    req,
                    client,
                    stale,
                    f"pkgedge; fwd=stale; ttl={int(stale.ttl(now))}; detail=stale-if-error",
                    trace,
                )
            if trace:
                trace.goto(Phase.ERROR, "origin-error", str(fill.error))
            status = getattr(fill.error, "status", 502)
            return self.out.error(
                client, req, status, f"upstream error: {fill.error or 'fetch failed'}"
            )
        if fill.state is State.PASS:
            resp = fill.take_pass()
            if resp is None:  # another waiter took the one response: fetch our own
                if trace:
                    trace.note("pass", "not storable; own fetch")
                return await self._pass(req, client, origin, target, trace)
            self.counters.add("passes")
            return await self.out.stream_response(
                req, client, resp, fill.headers, f"pkgedge; fwd=miss; detail={fill.why}"
            )
        if fill.state is State.GONE:
            return await self._pass(req, client, origin, target, trace)
        if trace:
            trace.goto(Phase.DELIVER, "stream")
        return await self.out.stream_fill(
            req, client, fill, f"pkgedge; fwd=miss; stored{detail}", trace
        )

    async def _origin_busy(
        self, req: Request, client: Client, stale: Entry | None, trace: Trace | None
    ) -> tuple[int, int, str]:
        """The origin fetch cap is reached: protect the origin, never queue without bound.
        Serve what we have (stale), or 503 with Retry-After."""
        self.counters.add("origin_busy")
        if stale is not None:
            self.counters.add("stale")
            ttl = int(stale.ttl(time.time()))
            return await self.out.deliver(
                req, client, stale, f"pkgedge; hit; ttl={ttl}; detail=origin-busy", trace
            )
        data = dl.error_response(
            503,
            "the origin is busy: try again shortly",
            close=not req.keep_alive,
            extra=[("retry-after", "5")],
        )
        client.write(data)
        return 503, len(data), "pkgedge; fwd=bypass; detail=origin-busy"

    async def _pass(
        self, req: Request, client: Client, origin: str, target: str, trace: Trace | None
    ) -> tuple[int, int, str]:
        if self.fetching >= self.settings.max_origin_fetches:
            return await self._origin_busy(req, client, None, trace)
        self.fetching += 1
        try:
            return await self._pass_now(req, client, origin, target, trace)
        finally:
            self.fetching -= 1

    async def _pass_now(
        self, req: Request, client: Client, origin: str, target: str, trace: Trace | None
    ) -> tuple[int, int, str]:
        self.counters.add("passes")
        self.counters.add("origin_fetches")
        if trace and trace.phase is not Phase.PASS:
            trace.note("pass")
        try:
            resp = await self.pool(origin).request(
                req.method,
                target,
                self.origin_headers(req, fill=False),
                req.body if req.body else None,
            )
        except PkgedgeError as exc:
            self.counters.add("origin_errors")
            return self.out.error(client, req, exc.status, f"upstream error: {exc}")
        if keys := invalidated_keys(
            req.method,
            resp.status,
            req.target,
            as_map(resp.headers),
            base=origin + target,
            host=req.map.get("host"),
            to_edge=self.rewriter.to_edge,
        ):
            self.store.purge_keys(keys)  # RFC 9111 §4.4
        headers = fields.forwarded_fields(resp.headers, time.time())
        headers = self.rewrite_location(headers, origin + target)
        return await self.out.stream_response(req, client, resp, headers, "pkgedge; fwd=bypass")


def _freshness(entry: Entry) -> policy.Freshness:
    return policy.Freshness(
        lifetime=entry.lifetime,
        swr=entry.swr,
        sie=entry.sie,
        must_revalidate=entry.must_revalidate,
        no_cache=entry.no_cache,
        heuristic=False,
        source="stored",
    )
