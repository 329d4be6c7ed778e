"""The steps: one function per phase, each reading and writing the request's
:class:`~pkgedge.edge.context.Ctx` and returning the next phase.

:data:`STEPS` maps every phase to its step; the pipeline's loop checks each returned phase
against :data:`~pkgedge.edge.phases.TRANSITIONS`. A step decides; only ``deliver`` writes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pkgedge.cache import fields, policy
from pkgedge.cache.entry import Entry
from pkgedge.cache.invalidate import invalidated_paths
from pkgedge.cache.keys import FILE_ROUTES, cache_path, simple_variant
from pkgedge.edge.busy import BusyObject, State
from pkgedge.edge.context import Ctx
from pkgedge.edge.fill import ORIGIN_ERRORS, FetchSpec, RemoteFill
from pkgedge.edge.phases import Phase
from pkgedge.errors import PkgedgeError, UpstreamError
from pkgedge.http.headers import as_map
from pkgedge.http.response import error_response

if TYPE_CHECKING:
    from pkgedge.edge.pipeline import Pipeline

Step = Callable[["Pipeline", Ctx], Awaitable[Phase]]


async def recv(p: Pipeline, ctx: Ctx) -> Phase:
    """Admission (protection), routing, and lookup-or-pass by method."""
    req = ctx.req
    refusal = req.refusal
    if refusal is None and p.guard is not None and not req.spec:
        refusal = p.guard.admit(req, ctx.now)  # (the fast path admits before it looks)
    if refusal is not None:
        ctx.synthetic = refusal
        ctx.status, ctx.cache_status = int(refusal[9:12]), "refused"
        ctx.decide("refused", req.note)
        return Phase.ERROR
    ctx.path = path = cache_path(req.target)
    route = p.backend.route(path)
    if route is None:
        p.counters.add("client_errors")
        return ctx.fail(404, "not found: this edge serves only its index")
    ctx.origin, ctx.target = route
    if req.method not in ("GET", "HEAD"):
        ctx.decide("pass", f"method {req.method}")
        return Phase.PASS
    return Phase.HASH


async def hash_(p: Pipeline, ctx: Ctx) -> Phase:
    """The primary cache key: the normalised path (Vary picks a variant at lookup)."""
    ctx.primary = ctx.path.encode()
    ctx.decide("key", ctx.path)
    return Phase.LOOKUP


async def lookup(p: Pipeline, ctx: Ctx) -> Phase:
    ctx.generation = p.store.generation[0]  # before the look-up: see HotHits
    ctx.vkey, entry = p.store.lookup(ctx.primary, ctx.req.map, ctx.path)
    ctx.rd = rd = policy.request_directives(ctx.req.map)
    if rd.only_if_cached and (entry is None or entry.ttl(ctx.now) <= 0):
        # RFC 9111 §5.2.1.7: answer from cache or 504, never contact the origin
        return ctx.fail(504, "only-if-cached: not fresh in cache")
    if entry is None:
        return Phase.MISS
    ctx.entry = entry
    return Phase.HIT


async def hit(p: Pipeline, ctx: Ctx) -> Phase:
    entry = ctx.entry
    assert entry is not None and ctx.rd is not None
    age = entry.age(ctx.now)
    verdict, why = policy.lookup_verdict(
        age, freshness(entry), ctx.rd, soft_purged=entry.soft_purged
    )
    if entry.soft_purged and verdict is policy.Verdict.STALE_REVALIDATE_BACKGROUND:
        # A soft purge says "this changed": revalidate now so the change is visible at once;
        # the old object still backs stale-if-error if the origin fails.
        verdict, why = policy.Verdict.REVALIDATE, "soft-purged"
    ctx.decide(verdict.name.lower(), why)
    ttl = int(entry.ttl(ctx.now))
    if verdict is policy.Verdict.FRESH:
        p.counters.add("hits")
        ctx.fresh_hit = True
        ctx.cache_status = f"pkgedge; hit; ttl={ttl}"
        return Phase.DELIVER
    if verdict is policy.Verdict.STALE_REVALIDATE_BACKGROUND:
        p.counters.add("stale")
        if not p.fills.busy(collapse_key(ctx)):
            start_fill(p, ctx, entry)
        ctx.cache_status = f"pkgedge; hit; ttl={ttl}; detail=stale-while-revalidate"
        return Phase.DELIVER
    ctx.stale, ctx.entry = entry, None
    return Phase.MISS


async def miss(p: Pipeline, ctx: Ctx) -> Phase:
    """Join the fetch of this object, or start it (one per object across workers)."""
    p.counters.add("misses")
    ctx.decide(
        "revalidate" if ctx.stale is not None else "miss", "" if ctx.stale else "not in cache"
    )
    ckey = collapse_key(ctx)
    fill: BusyObject | None = p.fills.join(ckey)
    if fill is None:
        if p.fills.fetching >= p.settings.max_origin_fetches:
            return origin_busy(p, ctx)
        fill = start_fill(p, ctx, ctx.stale)
        ctx.collapsed = isinstance(fill, RemoteFill)  # another worker fetches it
    else:
        ctx.collapsed = True
    if ctx.collapsed:
        p.counters.add("collapsed")
    ctx.fill = fill
    return Phase.FETCH


async def pass_(p: Pipeline, ctx: Ctx) -> Phase:
    """Not cacheable: this client's own fetch, within the origin fetch cap."""
    return Phase.FETCH if _hold_fetch(p, ctx) else origin_busy(p, ctx)


async def fetch(p: Pipeline, ctx: Ctx) -> Phase:
    fill = ctx.fill
    if fill is None:
        return await _pass_fetch(p, ctx)
    ctx.decide("collapsed" if ctx.collapsed else "fetch")
    # with a stale copy to fall back on, wait for the whole new body: an origin that dies
    # mid-response then gets the stale copy served, never a truncated one
    fallback = ctx.stale is not None and _stale_reason(p, ctx, ctx.stale) is not None
    while fill.state is State.PENDING or (fallback and fill.state is State.STREAMING):
        await fill.wait_progress()
    detail = "; detail=collapsed" if ctx.collapsed else ""
    now = time.time()
    if fill.state is State.NOT_MODIFIED and fill.entry is not None:
        ctx.decide("revalidated", "origin said 304")
        ctx.entry = fill.entry
        ttl = int(fill.entry.ttl(now))
        ctx.cache_status = f"pkgedge; fwd=stale; fwd-status=304; ttl={ttl}{detail}"
        return Phase.DELIVER
    if fill.state is State.FAILED:
        return origin_failed(p, ctx, fill.error)
    if fill.state is State.PASS:
        resp = fill.take_pass()
        if resp is not None:
            p.counters.add("passes")
            ctx.response, ctx.pass_headers = resp, fill.headers
            ctx.cache_status = f"pkgedge; fwd=miss; detail={fill.why}"
            return Phase.DELIVER
        ctx.decide("pass", "not storable; own fetch")  # another waiter took the response
        return await _own_fetch(p, ctx)
    if fill.state is State.GONE:
        if ctx.stale is not None and (fresh := _refreshed(p, ctx)) is not None:
            ctx.entry = fresh  # another worker's fill revalidated it (304)
            ctx.cache_status = f"pkgedge; hit; ttl={int(fresh.ttl(now))}; detail=collapsed"
            return Phase.DELIVER
        return await _own_fetch(p, ctx)
    ctx.cache_status = f"pkgedge; fwd=miss; stored{detail}"
    return Phase.DELIVER


async def deliver(p: Pipeline, ctx: Ctx) -> Phase:
    if ctx.trace is not None:
        what = "synthetic" if ctx.synthetic is not None else "stored" if ctx.entry else None
        ctx.decide(what or ("relay" if ctx.response is not None else "stream"))
    await p.deliver(ctx)
    return Phase.LOG


async def error(p: Pipeline, ctx: Ctx) -> Phase:
    """Build the synthetic response (a refusal is already built)."""
    if ctx.synthetic is None:
        status, reason, extra = ctx.error or (500, "internal error", [])
        ctx.synthetic = error_response(status, reason, close=not ctx.req.keep_alive, extra=extra)
        ctx.status = status
        ctx.cache_status = ctx.cache_status or "error"
    return Phase.DELIVER


async def log(p: Pipeline, ctx: Ctx) -> Phase:
    p.counters.add("bytes_to_clients", ctx.sent)
    p.account(
        ctx.req, ctx.status, ctx.sent, ctx.cache_status, ctx.now, time.monotonic() - ctx.started
    )
    return Phase.DONE


STEPS: dict[Phase, Step] = {
    Phase.RECV: recv,
    Phase.HASH: hash_,
    Phase.LOOKUP: lookup,
    Phase.HIT: hit,
    Phase.MISS: miss,
    Phase.PASS: pass_,
    Phase.FETCH: fetch,
    Phase.DELIVER: deliver,
    Phase.ERROR: error,
    Phase.LOG: log,
}


# -- helpers of the steps ---------------------------------------------------------------
def freshness(entry: Entry) -> policy.Freshness:
    return policy.Freshness(
        lifetime=entry.lifetime,
        swr=entry.swr,
        sie=entry.sie,
        must_revalidate=entry.must_revalidate,
        no_cache=entry.no_cache,
        heuristic=False,
        source="stored",
    )


def _stale_reason(p: Pipeline, ctx: Ctx, stale: Entry) -> str | None:
    """May ``stale`` answer if the origin fails: "stale-if-error", "grace" or None."""
    s = p.settings
    grace = s.grace_immutable if ctx.path.startswith(FILE_ROUTES) else s.grace
    return policy.stale_on_error(stale.age(time.time()), freshness(stale), grace)


def origin_failed(p: Pipeline, ctx: Ctx, err: BaseException | None) -> Phase:
    """The origin failed (unreachable, timed out, 5xx, cut mid-response): serve the stale
    copy within stale-if-error or the grace; 504 if it must be revalidated; else the error."""
    stale = ctx.stale
    if stale is not None and (why := _stale_reason(p, ctx, stale)) is not None:
        p.counters.add("stale")
        ctx.decide(why, str(err or "fetch failed"))
        ctx.entry = stale
        ttl = int(stale.ttl(time.time()))
        ctx.cache_status = f"pkgedge; fwd=stale; ttl={ttl}; detail={why}"
        return Phase.DELIVER
    ctx.decide("origin-error", str(err or "fetch failed"))
    if stale is not None and (stale.must_revalidate or stale.no_cache):
        return ctx.fail(
            504, f"upstream error and the cached copy must be revalidated: {err or 'fetch failed'}"
        )
    return ctx.fail(getattr(err, "status", 502), f"upstream error: {err or 'fetch failed'}")


def _refreshed(p: Pipeline, ctx: Ctx) -> Entry | None:
    _, entry = p.store.lookup(ctx.primary, ctx.req.map, ctx.path)
    return entry if entry is not None and entry.ttl(time.time()) > 0 else None


def collapse_key(ctx: Ctx) -> bytes:
    """Misses collapse on the variant key; the simple API's two variants never share one."""
    ckey = ctx.ckey = ctx.vkey
    if ckey == ctx.primary and ctx.path.startswith("/simple"):
        ctx.ckey = ckey + b"\x00" + simple_variant(ctx.req.map.get("accept")).encode()
    return ctx.ckey


def start_fill(p: Pipeline, ctx: Ctx, stale: Entry | None) -> BusyObject:
    return p.fills.start(
        FetchSpec(
            ctx.ckey,
            ctx.primary,
            ctx.path,
            (ctx.origin, ctx.target),
            p.backend.fill_headers(ctx.req, ctx.path),
            dict(ctx.req.map),
            stale,
            ctx.vkey if stale is not None else None,
        )
    )


def origin_busy(p: Pipeline, ctx: Ctx) -> Phase:
    """The origin fetch cap is reached: protect the origin, never queue without bound.
    Serve what we have (stale), or 503 with Retry-After."""
    p.counters.add("origin_busy")
    ctx.decide("origin-busy")
    if ctx.stale is not None:
        p.counters.add("stale")
        ctx.entry = ctx.stale
        ttl = int(ctx.stale.ttl(time.time()))
        ctx.cache_status = f"pkgedge; hit; ttl={ttl}; detail=origin-busy"
        return Phase.DELIVER
    ctx.cache_status = "pkgedge; fwd=bypass; detail=origin-busy"
    return ctx.fail(503, "the origin is busy: try again shortly", [("retry-after", "5")])


def _hold_fetch(p: Pipeline, ctx: Ctx) -> bool:
    """Count this request's own origin fetch against the cap (released when it ends);
    False when the cap is reached."""
    if p.fills.fetching >= p.settings.max_origin_fetches:
        return False
    p.fills.fetching += 1
    ctx.holds_fetch = True
    return True


async def _own_fetch(p: Pipeline, ctx: Ctx) -> Phase:
    """A waiter whose fill ended without a shareable answer fetches for itself."""
    return await _pass_fetch(p, ctx) if _hold_fetch(p, ctx) else origin_busy(p, ctx)


async def _pass_fetch(p: Pipeline, ctx: Ctx) -> Phase:
    req = ctx.req
    p.counters.add("passes")
    p.counters.add("origin_fetches")
    try:
        resp = await p.backend.pool(ctx.origin).request(
            req.method,
            ctx.target,
            p.backend.origin_headers(req, fill=False),
            req.body if req.body else None,
        )
    except PkgedgeError as exc:
        p.counters.add("origin_errors")
        return (
            origin_failed(p, ctx, exc)
            if ctx.stale
            else ctx.fail(exc.status, f"upstream error: {exc}")
        )
    if ctx.stale is not None and resp.status in ORIGIN_ERRORS:
        resp.close()  # never relay an error page in place of what is cached
        return origin_failed(p, ctx, UpstreamError(f"origin answered {resp.status}"))
    if paths := invalidated_paths(
        req.method,
        resp.status,
        req.target,
        as_map(resp.headers),
        base=ctx.origin + ctx.target,
        host=req.map.get("host"),
        to_edge=p.backend.rewriter.to_edge,
    ):
        p.store.purge_keys([k.encode() for k in paths])  # RFC 9111 §4.4: changed by it
    headers = fields.forwarded_fields(resp.headers, time.time())
    ctx.pass_headers = p.backend.rewrite_location(headers, ctx.origin + ctx.target)
    ctx.response = resp
    ctx.cache_status = "pkgedge; fwd=bypass"
    return Phase.DELIVER
