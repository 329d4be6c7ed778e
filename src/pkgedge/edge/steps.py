"""The steps: one function per phase, each reading and writing the request's
:class:`~pkgedge.edge.context.Ctx` and returning the next phase.

:data:`STEPS` maps every phase to its step; the pipeline's loop checks each returned phase
against :data:`~pkgedge.edge.phases.TRANSITIONS`. A step decides; only ``deliver`` writes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pkgedge.cache import policy
from pkgedge.cache.entry import Entry
from pkgedge.cache.keys import cache_path
from pkgedge.edge import fetching as fe
from pkgedge.edge import rulesrun as rr
from pkgedge.edge.busy import BusyObject, State
from pkgedge.edge.context import Ctx
from pkgedge.edge.fill import RemoteFill
from pkgedge.edge.phases import Phase
from pkgedge.http.headers import as_map
from pkgedge.http.response import error_response, response_head
from pkgedge.rules import Kind

if TYPE_CHECKING:
    from pkgedge.edge.pipeline import Pipeline

Step = Callable[["Pipeline", Ctx], Awaitable[Phase]]


async def recv(p: Pipeline, ctx: Ctx) -> Phase:
    """Admission (protection), the recv rules, routing, and lookup-or-pass by method."""
    req = ctx.req
    refusal = req.refusal
    if refusal is None and p.guard is not None and not req.spec:
        refusal = p.guard.admit(req, ctx.now)  # (the fast path admits before it looks)
    if refusal is not None:
        ctx.synthetic = refusal
        ctx.status, ctx.cache_status = int(refusal[9:12]), "refused"
        ctx.decide("refused", req.note)
        return Phase.ERROR
    wanted = None
    if ctx.ruleset.rules.runners["recv"] is not None:
        out = rr.take_pre(ctx) if req.pre is not None else rr.run(p, ctx, "recv")
        rr.apply_request(ctx)
        if out is not None:
            if out.kind in rr.ANSWERS:
                return rr.answer(ctx, out)
            wanted = out.kind
    ctx.path = path = cache_path(req.target)
    route = p.backend.route(path, ctx.backend)
    if route is None:
        route = await p.backend.route_shared(path)  # a file host another node learnt
    if route is None:
        p.counters.add("client_errors")
        return ctx.fail(404, "not found: this edge serves only its index")
    ctx.origin, ctx.target = route
    if req.method not in ("GET", "HEAD"):
        ctx.decide("pass", f"method {req.method}")
        return Phase.PASS
    if wanted is Kind.PASS:
        ctx.decide("pass", "rules: return(pass)")
        return Phase.PASS
    return Phase.HASH


async def hash_(p: Pipeline, ctx: Ctx) -> Phase:
    """The primary cache key: the normalised path and what the rules' hash_data(...) added
    (Vary picks a variant at lookup)."""
    key = ctx.path
    if ctx.ruleset.rules.runners["hash"] is not None:
        out = rr.run(p, ctx, "hash")
        env = ctx.env
        assert env is not None
        rr.apply_request(ctx)
        if out is not None and out.kind in rr.ANSWERS:
            return rr.answer(ctx, out)
        if env.hash_parts:
            key = "\x00".join([ctx.path, *env.hash_parts])
            env.hash_parts.clear()
    ctx.primary = key.encode()
    ctx.decide("key", key.replace("\x00", " + "))
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
        age, fe.freshness(entry), ctx.rd, soft_purged=entry.soft_purged
    )
    if entry.soft_purged and verdict is policy.Verdict.STALE_REVALIDATE_BACKGROUND:
        # A soft purge says "this changed": revalidate now so the change is visible at once;
        # the old object still backs stale-if-error if the origin fails.
        verdict, why = policy.Verdict.REVALIDATE, "soft-purged"
    ctx.decide(verdict.name.lower(), why)
    ttl = int(entry.ttl(ctx.now))
    if ctx.ruleset.rules.runners["hit"] is not None:
        env = rr.env_of(p, ctx)
        env.obj_status, env.obj_ttl, env.obj_age = entry.status, entry.ttl(ctx.now), age
        env.obj_headers = as_map(entry.headers)
        out = rr.run(p, ctx, "hit")
        if out is not None:
            if out.kind in rr.ANSWERS:
                return rr.answer(ctx, out)
            if out.kind is Kind.PASS:
                ctx.entry = None
                ctx.decide("pass", "rules: return(pass)")
                return Phase.PASS
            if out.kind is Kind.FETCH:
                verdict, why = policy.Verdict.REVALIDATE, "rules: return(fetch)"
                ctx.decide("revalidate", why)
    if verdict is policy.Verdict.FRESH:
        p.counters.add("hits")
        ctx.fresh_hit = True
        ctx.cache_status = f"pkgedge; hit; ttl={ttl}"
        return Phase.DELIVER
    if verdict is policy.Verdict.STALE_REVALIDATE_BACKGROUND:
        p.counters.add("stale")
        if not p.fills.busy(fe.collapse_key(ctx)):
            fe.start_fill(p, ctx, entry)
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
    if ctx.ruleset.rules.runners["miss"] is not None:
        out = rr.run(p, ctx, "miss")
        rr.apply_request(ctx)
        if out is not None:
            if out.kind in rr.ANSWERS:
                return rr.answer(ctx, out)
            if out.kind is Kind.PASS:
                ctx.decide("pass", "rules: return(pass)")
                return Phase.PASS
    ckey = fe.collapse_key(ctx)
    fill: BusyObject | None = p.fills.join(ckey)
    if fill is None:
        if p.fills.fetching >= p.settings.max_origin_fetches:
            return fe.origin_busy(p, ctx)
        got = fe.start_fill(p, ctx, ctx.stale)
        if isinstance(got, Entry):  # another worker stored it since this request looked
            p.counters.add("collapsed")
            return _collapsed_hit(ctx, got, time.time())
        fill = got
        ctx.collapsed = isinstance(fill, RemoteFill)  # another worker fetches it
    else:
        ctx.collapsed = True
    if ctx.collapsed:
        p.counters.add("collapsed")
    ctx.fill = fill
    return Phase.FETCH


async def pass_(p: Pipeline, ctx: Ctx) -> Phase:
    """Not cacheable: this client's own fetch, within the origin fetch cap."""
    if ctx.ruleset.rules.runners["pass"] is not None:
        out = rr.run(p, ctx, "pass")
        rr.apply_request(ctx)
        if out is not None and out.kind in rr.ANSWERS:
            return rr.answer(ctx, out)
    return Phase.FETCH if fe.hold_fetch(p, ctx) else fe.origin_busy(p, ctx)


async def fetch(p: Pipeline, ctx: Ctx) -> Phase:
    fill = ctx.fill
    if fill is None:
        return await fe.pass_fetch(p, ctx)
    ctx.decide("collapsed" if ctx.collapsed else "fetch")
    # with a stale copy to fall back on, wait for the whole new body: an origin that dies
    # mid-response then gets the stale copy served, never a truncated one
    fallback = ctx.stale is not None and fe.stale_reason(p, ctx, ctx.stale) is not None
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
        if isinstance(fill.error, rr.RuleAnswer):
            return rr.fetch_outcome(p, ctx, fill.error)
        return fe.origin_failed(p, ctx, fill.error)
    if fill.state is State.PASS:
        resp = fill.take_pass()
        if resp is not None:
            p.counters.add("passes")
            ctx.response, ctx.pass_headers = resp, fill.headers
            ctx.cache_status = f"pkgedge; fwd=miss; detail={fill.why}"
            return Phase.DELIVER
        ctx.decide("pass", "not storable; own fetch")  # another waiter took the response
        return await fe.own_fetch(p, ctx)
    if fill.state is State.GONE:
        if (fresh := fe.refreshed(p, ctx)) is not None:
            # another worker's fill stored it, or revalidated it (304), and was gone before
            # this waiter looked again (its head is removed with the fill)
            return _collapsed_hit(ctx, fresh, now)
        return await fe.own_fetch(p, ctx)
    ctx.cache_status = f"pkgedge; fwd=miss; stored{detail}"
    return Phase.DELIVER


def _collapsed_hit(ctx: Ctx, entry: Entry, now: float) -> Phase:
    """Deliver what another worker's fill stored for this request."""
    ctx.entry = entry
    ctx.cache_status = f"pkgedge; hit; ttl={int(entry.ttl(now))}; detail=collapsed"
    return Phase.DELIVER


async def deliver(p: Pipeline, ctx: Ctx) -> Phase:
    if ctx.synthetic is None and ctx.ruleset.rules.runners["deliver"] is not None:
        nxt = rr.deliver_rules(p, ctx)
        if nxt is not None:
            return nxt
    if ctx.trace is not None:
        what = "synthetic" if ctx.synthetic is not None else "stored" if ctx.entry else None
        ctx.decide(what or ("relay" if ctx.response is not None else "stream"))
    await p.deliver(ctx)
    return Phase.LOG


async def error(p: Pipeline, ctx: Ctx) -> Phase:
    """Build the synthetic response (a refusal is already built); the error rules may
    change its status, fields and body, or restart."""
    if ctx.synthetic is not None:
        return Phase.DELIVER
    status, reason, extra = ctx.error or (500, "internal error", [])
    ctx.cache_status = ctx.cache_status or "error"
    if ctx.ruleset.rules.runners["error"] is not None:
        env = rr.env_of(p, ctx)
        env.resp_status = status
        env.resp_headers = dict(extra)
        env.edits.clear()
        out = rr.run(p, ctx, "error")
        if out is not None:
            if out.kind is Kind.RESTART:
                return rr.restart(p, ctx, out)
            if out.kind is Kind.SYNTHETIC:
                status, ctx.body, extra = out.status, out.body, list(out.headers)
            elif out.kind is Kind.REDIRECT:
                status, extra = out.status, [("location", out.location)]
                reason, ctx.body = rr.REDIRECT_BODY.format(out.location), None
        rr.take_response_edits(ctx)
        status = ctx.resp_status or status
        if ctx.resp_edits:
            extra = rr.edited(extra, ctx.resp_edits)
    close = not ctx.req.keep_alive
    if ctx.trace is not None:  # what the phases decided up to here
        extra = [*extra, ("pkgedge-trace", ctx.trace.header())]
    if ctx.body is None:
        ctx.synthetic = error_response(status, reason, close=close, extra=extra)
    else:
        body = ctx.body.encode("utf-8")
        fields = (
            extra
            if any(n == "content-type" for n, _ in extra)
            else [
                ("content-type", "text/plain; charset=utf-8"),
                *extra,
            ]
        )
        head = response_head(
            status,
            fields,
            length=len(body),
            age=None,
            cache_status="pkgedge; fwd=bypass",
            close=close,
        )
        ctx.synthetic = head + (b"" if ctx.req.method == "HEAD" else body)
    ctx.status = status
    return Phase.DELIVER


async def log(p: Pipeline, ctx: Ctx) -> Phase:
    p.counters.add("bytes_to_clients", ctx.sent)
    if ctx.ruleset.rules.runners["log"] is not None:
        env = rr.env_of(p, ctx)
        env.resp_status, env.cache_state = ctx.status, rr.cache_state(ctx)
        if rr.run(p, ctx, "log") is not None:  # pragma: no cover - log allows no action
            pass
    p.account(
        ctx.req, ctx.status, ctx.sent, ctx.cache_status, ctx.now, time.monotonic() - ctx.started
    )
    if ctx.log_lines:
        p.hooks.rules_log(ctx.req, ctx.log_lines)
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
