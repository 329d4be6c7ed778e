"""The steps' origin side: collapse keys, starting a fill, the origin fetch cap, a
request's own (pass) fetch, and what to do when the origin fails (stale or an error).

Used by :mod:`pkgedge.edge.steps`; each helper reads and writes the request's
:class:`~pkgedge.edge.context.Ctx` and returns the next phase where it decides one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pkgedge.cache import fields, policy
from pkgedge.cache.entry import Entry
from pkgedge.cache.invalidate import invalidated_paths
from pkgedge.cache.keys import FILE_ROUTES, simple_variant
from pkgedge.edge import rulesrun as rr
from pkgedge.edge.busy import BusyObject
from pkgedge.edge.context import Ctx
from pkgedge.edge.fill import ORIGIN_ERRORS, FetchSpec
from pkgedge.edge.phases import Phase
from pkgedge.errors import PkgedgeError, UpstreamError
from pkgedge.http.headers import as_map

if TYPE_CHECKING:
    from pkgedge.edge.pipeline import Pipeline


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


def stale_reason(p: Pipeline, ctx: Ctx, stale: Entry) -> str | None:
    """May ``stale`` answer if the origin fails: "stale-if-error", "grace" or None."""
    s = p.settings
    grace = s.grace_immutable if ctx.path.startswith(FILE_ROUTES) else s.grace
    return policy.stale_on_error(stale.age(time.time()), freshness(stale), grace)


def origin_failed(p: Pipeline, ctx: Ctx, err: BaseException | None) -> Phase:
    """The origin failed (unreachable, timed out, 5xx, cut mid-response): serve the stale
    copy within stale-if-error or the grace; 504 if it must be revalidated; else the error."""
    stale = ctx.stale
    if stale is not None and (why := stale_reason(p, ctx, stale)) is not None:
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


def refreshed(p: Pipeline, ctx: Ctx) -> Entry | None:
    _, entry = p.store.lookup(ctx.primary, ctx.req.map, ctx.path)
    return entry if entry is not None and entry.ttl(time.time()) > 0 else None


def collapse_key(ctx: Ctx) -> bytes:
    """Misses collapse on the variant key; the simple API's two variants never share one."""
    ckey = ctx.ckey = ctx.vkey
    if ckey == ctx.primary and ctx.path.startswith("/simple"):
        ctx.ckey = ckey + b"\x00" + simple_variant(ctx.req.map.get("accept")).encode()
    return ctx.ckey


def start_fill(p: Pipeline, ctx: Ctx, stale: Entry | None) -> BusyObject | Entry:
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
            rr.fetch_hook(p, ctx),
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


def hold_fetch(p: Pipeline, ctx: Ctx) -> bool:
    """Count this request's own origin fetch against the cap (released when it ends);
    False when the cap is reached."""
    if p.fills.fetching >= p.settings.max_origin_fetches:
        return False
    p.fills.fetching += 1
    ctx.holds_fetch = True
    return True


async def own_fetch(p: Pipeline, ctx: Ctx) -> Phase:
    """A waiter whose fill ended without a shareable answer fetches for itself."""
    return await pass_fetch(p, ctx) if hold_fetch(p, ctx) else origin_busy(p, ctx)


async def pass_fetch(p: Pipeline, ctx: Ctx) -> Phase:
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
    if (hook := rr.fetch_hook(p, ctx)) is not None:
        try:
            resp.headers = hook(resp.status, resp.headers, (0.0, 0.0, 0.0)).headers
        except rr.RuleAnswer as exc:
            resp.close()
            return rr.fetch_outcome(p, ctx, exc)
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
