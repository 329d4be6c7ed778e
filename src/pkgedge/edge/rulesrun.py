"""The rules' side of the steps: an :class:`~pkgedge.rules.Env` filled from a request's state,
a phase's compiled sub run on it, and what it changed applied back.

Each step calls :func:`run` for its phase when the request's ruleset has a sub there (a phase
without one costs a dict look-up). A request keeps the ruleset it started with
(``ctx.ruleset``) and one Env for all its phases (``ctx.env``), so a header a rule set in
``recv`` is what ``miss`` reads. What the rules change is applied here and nowhere else:

- request fields (``recv``, ``hash``, ``miss``, ``pass``): the request gets new header
  objects (parsed requests share theirs: never mutated), a new target, a backend name;
- response fields (``deliver``, ``error``): ``ctx.resp_edits``, replayed by delivery on the
  head it writes, and ``ctx.resp_status``;
- the backend response (``fetch``): :func:`fetch_ruling` runs inside the fill, before the
  response is stored (TTLs, surrogate keys, fields, not storable);
- an answer (error, synthetic, redirect, block, rate limit): :func:`answer` makes it the
  request's synthetic response; ``restart``: :func:`restart`.

A rule that fails at run time (:class:`~pkgedge.rules.RulesRuntimeError`) answers its
request with a 503 naming the rule's line, is counted (``rules_errors``) and logged; the
worker goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from pkgedge.cache.keys import cache_path
from pkgedge.edge.context import Ctx
from pkgedge.edge.phases import Phase
from pkgedge.errors import PkgedgeError
from pkgedge.http.headers import Headers, as_map
from pkgedge.rules import Env, Kind, Outcome, RulesRuntimeError
from pkgedge.security.ratelimit import BucketSpec, MemoryStore, Store
from pkgedge.security.useragent import classify

if TYPE_CHECKING:
    from pkgedge.edge.pipeline import Pipeline
    from pkgedge.edge.ruleset import Ruleset
    from pkgedge.http.request import Request

log = logging.getLogger("pkgedge.rules")

#: Outcomes that answer the request with a response the edge builds.
ANSWERS = frozenset({Kind.ERROR, Kind.SYNTHETIC, Kind.REDIRECT, Kind.BLOCK, Kind.RATELIMIT})
#: The plain-text body of a rules' redirect.
REDIRECT_BODY = "see {}"


class RuleAnswer(PkgedgeError):
    """A fetch sub decided the answer (error, synthetic, redirect, block, restart): the fill
    ends with it and the request that started the fill applies it."""

    status = 503

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(f"rules: {outcome.kind.value} (line {outcome.line})")
        self.outcome = outcome


class RuleLimiter:
    """``ratelimit "name" N per D``: a token bucket per (counter, client) in this worker; with
    ``--redis`` its store is shared by every node (``cluster/limits.py`` replaces it, as the
    guard's: wall-clock time, which the shared buckets use)."""

    def __init__(self) -> None:
        self.store: Store = MemoryStore()
        self._specs: dict[tuple[float, float], BucketSpec] = {}

    def __call__(self, name: str, key: str, rate: float, per: float) -> bool:
        spec = self._specs.get((rate, per))
        if spec is None:
            spec = self._specs[(rate, per)] = BucketSpec(rate / per, rate)
        allowed, _ = self.store.take(f"rules\0{name}\0{key}", 1.0, time.time(), spec)
        return allowed


def request_env(
    p: Pipeline,
    req: Request,
    ruleset: Ruleset,
    trace: bool = False,
    backend: str = "",
    restarts: int = 0,
) -> Env:
    """A new Env for ``req`` as it is now."""
    return Env(
        method=req.method,
        url=req.target,
        req_headers=dict(req.map),
        client_ip=req.client,
        client_identity=req.key or req.client,
        ua_class=classify(req.map.get("user-agent")).kind,
        tables=ruleset.tables.current,
        backend=backend,
        restarts=restarts,
        limiter=p.limiter,
        trace=trace,
    )


def env_of(p: Pipeline, ctx: Ctx) -> Env:
    """The request's Env, made on the first phase that has rules."""
    env = ctx.env
    if env is None:
        env = ctx.env = request_env(
            p, ctx.req, ctx.ruleset, ctx.trace is not None, ctx.backend, ctx.restarts
        )
    return env


def take_pre(ctx: Ctx) -> Outcome | None:
    """recv's outcome when the fast path already ran it (its Env becomes the request's)."""
    pre = cast(tuple[Env, Outcome | None], ctx.req.pre)
    env, out = pre
    ctx.req.pre = None
    ctx.env = env
    if env.log_lines:
        ctx.log_lines.extend(env.log_lines)
        env.log_lines.clear()
    return out


def run(p: Pipeline, ctx: Ctx, phase: str) -> Outcome | None:
    """Run ``phase``'s sub (the caller checked there is one) on the request's Env."""
    env = env_of(p, ctx)
    runner = ctx.ruleset.rules.runners[phase]
    assert runner is not None
    try:
        out = runner(env)
    except RulesRuntimeError as exc:
        out = failed(p, ctx, phase, exc)
    if env.trace:
        for _, line, what in env.trace:
            ctx.decide(f"rule@{line}", what)
        env.trace.clear()
    if env.log_lines:
        ctx.log_lines.extend(env.log_lines)
        env.log_lines.clear()
    return out


def failed(p: Pipeline, ctx: Ctx, phase: str, exc: Exception) -> Outcome:
    p.counters.add("rules_errors")
    log.warning("rules error in %s for %s %s: %s", phase, ctx.req.method, ctx.req.target, exc)
    return Outcome(Kind.ERROR, 503, f"rules error in sub {phase}: {exc}")


def apply_request(ctx: Ctx) -> None:
    """Replay what recv/hash/miss/pass changed on the request: fields, target, backend."""
    env = ctx.env
    if env is None:
        return
    req = ctx.req
    if env.edits:
        if any(e[0] == "req" for e in env.edits):
            # new objects: the parsed request's own may be shared with other requests
            req.map = dict(env.req_headers)
            req.headers = list(env.req_headers.items())
        env.edits.clear()
    if env.url_changed:
        env.url_changed = False
        req.target = env.url
        ctx.path = cache_path(req.target)
    ctx.backend = env.backend


def take_response_edits(ctx: Ctx) -> None:
    """After deliver/error: the edits to replay on the response head, and its status."""
    env = ctx.env
    if env is None:
        return
    edits = [(op, name, value) for scope, op, name, value in env.edits if scope == "resp"]
    env.edits.clear()
    if edits:
        ctx.resp_edits = [*(ctx.resp_edits or ()), *edits]
    if env.resp_status and env.resp_status != ctx.status:
        ctx.resp_status = env.resp_status


def edited(headers: Headers, edits: list[tuple[str, str, str]]) -> Headers:
    """``headers`` with the rules' ``set``/``append``/``unset`` replayed in order."""
    out = list(headers)
    for op, name, value in edits:
        if op == "unset":
            out = [(n, v) for n, v in out if n != name]
        elif op == "set":
            out = [(n, v) for n, v in out if n != name]
            out.append((name, value))
        else:
            out.append((name, value))
    return out


def answer(ctx: Ctx, out: Outcome) -> Phase:
    """Make an answering outcome the request's response (the error phase builds it)."""
    kind = out.kind
    if kind is Kind.REDIRECT:
        ctx.decide("redirect", f"rule line {out.line}")
        return ctx.fail(
            out.status, REDIRECT_BODY.format(out.location), [("location", out.location)]
        )
    if kind is Kind.SYNTHETIC:
        ctx.decide("synthetic", f"rule line {out.line}")
        ctx.body = out.body
        return ctx.fail(out.status, "", list(out.headers))
    if kind is Kind.BLOCK:
        ctx.decide("blocked", out.reason or f"rule line {out.line}")
        ctx.cache_status = "refused"
        return ctx.fail(403, out.reason or "blocked by this edge's rules")
    if kind is Kind.RATELIMIT:
        ctx.decide("rate-limited", f"counter {out.name}")
        ctx.cache_status = "refused"
        retry = max(1, int(out.per / max(out.rate, 1)))
        return ctx.fail(
            429,
            out.reason or f"too many requests ({out.name}: {out.rate} per {out.per:g}s)",
            [("retry-after", str(retry))],
        )
    ctx.decide("error", out.reason or f"rule line {out.line}")
    return ctx.fail(out.status or 503, out.reason or "error")


def restart(p: Pipeline, ctx: Ctx, out: Outcome) -> Phase:
    """Start the request again at recv, on ``out.backend`` when it names one."""
    env = ctx.env
    if ctx.holds_fetch:
        ctx.holds_fetch = False
        p.fills.fetching -= 1
    if ctx.response is not None:
        ctx.response.close()
    ctx.reset_for_restart()
    if env is not None:
        env.restarts = ctx.restarts
        if out.backend:
            env.backend = out.backend
        ctx.backend = env.backend
    p.counters.add("restarts")
    ctx.decide("restart", out.backend or "same backend")
    return Phase.RECV


@dataclass(slots=True)
class FetchRuling:
    """What the fetch sub decided about a backend response, applied by the fill."""

    headers: Headers
    ttl: float | None = None
    swr: float | None = None
    sie: float | None = None
    keys: list[str] = field(default_factory=list)
    uncacheable: bool = False


#: Called by a fill with the backend response's status, fields and freshness
#: (lifetime, swr, sie); raises :class:`RuleAnswer` when the rules answer instead.
FetchHook = Callable[[int, Headers, tuple[float, float, float]], FetchRuling]


def fetch_hook(p: Pipeline, ctx: Ctx) -> FetchHook | None:
    """The fetch sub as a fill calls it, or None without one."""
    if ctx.ruleset.rules.runners.get("fetch") is None:
        return None

    def hook(status: int, headers: Headers, fresh: tuple[float, float, float]) -> FetchRuling:
        env = env_of(p, ctx)
        bh: dict[str, str] = {}
        for n, v in headers:
            bh[n] = f"{bh[n]}, {v}" if n in bh else v
        env.beresp_status = status
        env.beresp_headers = bh
        env.beresp_ttl, env.beresp_swr, env.beresp_sie = fresh
        env.overrides.clear()
        env.surrogate_keys.clear()
        out = run(p, ctx, "fetch")
        edits = [e for e in env.edits if e[0] == "beresp"]
        env.edits.clear()
        ruling = FetchRuling(list(bh.items()) if edits else headers)
        ruling.ttl = env.overrides.get("ttl")
        ruling.swr = env.overrides.get("swr")
        ruling.sie = env.overrides.get("sie")
        ruling.keys = list(env.surrogate_keys)
        if out is not None:
            if out.kind is Kind.PASS:
                ruling.uncacheable = True
            elif out.kind is not Kind.DELIVER:
                raise RuleAnswer(out)
        return ruling

    return hook


def fetch_outcome(p: Pipeline, ctx: Ctx, exc: RuleAnswer) -> Phase:
    """The request whose fill the fetch sub ended: restart or answer."""
    out = exc.outcome
    if out.kind is Kind.RESTART:
        return restart(p, ctx, out)
    return answer(ctx, out)


def deliver_rules(p: Pipeline, ctx: Ctx) -> Phase | None:
    """The deliver sub, before anything is written: fields and status to replay, restart."""
    env = env_of(p, ctx)
    entry = ctx.entry
    if entry is not None:
        now = time.time()
        env.obj_status, env.obj_ttl, env.obj_age = entry.status, entry.ttl(now), entry.age(now)
        env.obj_headers = as_map(entry.headers)
        env.resp_status, env.resp_headers = entry.status, dict(env.obj_headers)
    elif ctx.response is not None:
        env.resp_status, env.resp_headers = ctx.response.status, as_map(ctx.pass_headers)
    elif ctx.fill is not None:
        env.resp_status, env.resp_headers = ctx.fill.status, as_map(ctx.fill.headers)
    env.cache_state = cache_state(ctx)
    env.edits.clear()
    out = run(p, ctx, "deliver")
    if out is not None:
        if out.kind is Kind.RESTART:
            return restart(p, ctx, out)
        if out.kind in ANSWERS:  # a rules error (503): nothing was written yet
            if ctx.response is not None:
                ctx.response.close()
                ctx.response = None
            return answer(ctx, out)
    take_response_edits(ctx)
    return None


def cache_state(ctx: Ctx) -> str:
    """What the rules' ``cache.state`` reads: hit, miss, pass, stale, revalidated, synthetic,
    error."""
    cs = ctx.cache_status
    if ctx.error is not None:
        return "synthetic" if ctx.body is not None or ctx.error[0] < 400 else "error"
    if ctx.synthetic is not None:
        return "error"  # a refusal
    if "fwd=bypass" in cs or ("fwd=miss" in cs and "stored" not in cs and ctx.response):
        return "pass"
    if "fwd=stale" in cs:
        return "revalidated" if "fwd-status=304" in cs else "stale"
    if "stale-while-revalidate" in cs or "origin-busy" in cs:
        return "stale"
    if "; hit" in cs:
        return "hit"
    return "miss"
