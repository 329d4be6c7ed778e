"""The rules on the fast path (:meth:`pkgedge.edge.pipeline.Pipeline.try_hit`): a live
``recv`` before the memo is looked up, and a live ``deliver`` on a replay.

See :mod:`pkgedge.edge.ruleset` for which subs run live and which are folded into the memo.
Both run synchronously and hand the request to the phases (returning None) for anything but
a plain hit; ``req.pre`` then carries what recv decided, so the phases never run it twice
(:func:`pkgedge.edge.rulesrun.take_pre`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, cast

from pkgedge.edge.fastpath import BLOCKERS
from pkgedge.edge.rulesrun import edited, request_env
from pkgedge.http.headers import as_map
from pkgedge.http.response import head_prefix
from pkgedge.rules import Env, Kind, Outcome, RulesRuntimeError
from pkgedge.security.useragent import classify

if TYPE_CHECKING:
    from pkgedge.cache.entry import Entry
    from pkgedge.edge.fastpath import Stored
    from pkgedge.edge.pipeline import Pipeline
    from pkgedge.edge.ruleset import Ruleset
    from pkgedge.http.request import Request


#: Request fields a live recv may not change on the fast path (the memo's key and the fields
#: that take a request off it).
_FAST_FIELDS = frozenset({"accept", "accept-encoding"}) | BLOCKERS


#: Most remembered recv results per worker (cleared whole when full).
RECV_MEMO_MAX = 20_000


#: What a live recv decided for a plain look-up: the memo inputs after it (see
#: :meth:`Ruleset.inputs_after`), its edits (op, name, value) of the request fields the live
#: deliver and log subs read (:attr:`Ruleset.live_fields`: the others cannot change what
#: they decide) and the backend it chose: what those subs of a replay read of the request.
Recv = tuple[tuple[object, ...], tuple[tuple[str, str, str], ...], str]


def fast_recv(
    p: Pipeline, req: Request, ruleset: Ruleset, memo: dict[tuple[object, ...], Recv]
) -> Recv | None:
    """Run recv live for a fast-path candidate. Returns what it decided (:data:`Recv`) when
    the request may go on to the memo (a plain look-up), else None, with ``req.pre`` holding
    what recv decided for the phases.

    A plain look-up decided without side effects (no rate-limit token, no log line) is
    remembered in ``memo`` by what recv read: the same inputs give the same result, so a
    repeated request skips the sub."""
    key = ruleset.recv_key(req)
    known = memo.get(key)
    if known is not None:
        return known
    env = request_env(p, req, ruleset)
    runner = ruleset.rules.runners["recv"]
    assert runner is not None
    try:
        out = runner(env)
    except RulesRuntimeError:
        return None  # the phases run it again and answer the error
    req.pre = (env, out)
    if (out is not None and out.kind is not Kind.LOOKUP) or env.url_changed:
        return None
    if any(e[0] == "req" and e[2] in _FAST_FIELDS for e in env.edits):
        return None
    live = ruleset.live_fields
    edits = tuple(
        (op, name, value) for scope, op, name, value in env.edits if scope == "req" and name in live
    )
    decided = (ruleset.inputs_after(env), edits, env.backend)
    if not env.effects and not env.log_lines:
        if len(memo) >= RECV_MEMO_MAX:
            memo.clear()
        memo[key] = decided
    return decided


def renew(env: Env, p: Pipeline, req: Request, ruleset: Ruleset) -> Env:
    """``env`` made as :func:`~pkgedge.edge.rulesrun.request_env` makes a new one (a third
    of the time): the replays' reused Env. ``req.map`` is shared, not copied: the subs that
    run on it (deliver, log) cannot change request fields (recv's edits are replayed on a
    copy)."""
    m = req.map
    env.method = req.method
    env.url = url = req.target
    env.path, _, env.query = url.partition("?")
    env.req_headers = m
    env.backend, env.restarts = "", 0
    env.client_ip = req.client
    env.client_identity = req.key or req.client
    env.ua_class = classify(m.get("user-agent")).kind
    env.obj_status, env.obj_ttl, env.obj_age = 0, 0.0, 0.0
    env.beresp_status = 0
    env.beresp_ttl = env.beresp_swr = env.beresp_sie = 0.0
    env.resp_status, env.cache_state = 0, ""
    env.tables = ruleset.tables.current
    env.limiter = p.limiter
    env.url_changed = False
    env.effects, env.trace = 0, None
    # new containers only where the last replay left something (deliver and log cannot
    # change the others; the lists they append to may have been handed on: always new)
    if env.obj_headers:
        env.obj_headers = {}
    if env.beresp_headers:
        env.beresp_headers = {}
    if env.resp_headers:
        env.resp_headers = {}
    if env.overrides:
        env.overrides = {}
    if env.surrogate_keys:
        env.surrogate_keys = []
    if env.hash_parts:
        env.hash_parts = []
    env.edits, env.log_lines = [], []
    return env


def replay_env(p: Pipeline, req: Request, ruleset: Ruleset, recv: Recv | None) -> Env:
    """The Env the live subs of a replay run on: recv's own when it ran for this request
    (``req.pre``), else the ruleset's reused one (:attr:`Ruleset.scratch`, never kept past
    the replay) with what recv decided (``recv``: remembered) replayed."""
    pre = req.pre
    if isinstance(pre, tuple):
        return cast(Env, pre[0])
    env = renew(ruleset.scratch, p, req, ruleset)
    if recv is not None:
        _, edits, env.backend = recv
        if edits:
            fields = env.req_headers = dict(env.req_headers)
            for op, name, value in edits:
                if op == "set":
                    fields[name] = value
                elif op == "unset":
                    fields.pop(name, None)
                else:
                    old = fields.get(name)
                    fields[name] = value if old is None else old + ", " + value
    return env


def fast_deliver(
    p: Pipeline,
    req: Request,
    ruleset: Ruleset,
    entry: Entry,
    stored: Stored,
    age: float,
    ttl: float,
    recv: Recv | None,
) -> bytes | None:
    """Run a live deliver sub (one that reads ``obj.ttl``/``obj.age`` or logs) on a replay:
    the head prefix with its edits, or None to let the phases answer (restart, rules error).
    ``age`` and ``ttl``: the stored object's now (the caller has them for the head).

    The fields the sub reads are the memo's (:class:`~pkgedge.edge.fastpath.Stored`), and the
    head prefix is rebuilt only when the edits (or the status) differ from the last replay's:
    a rule reading ``obj.age`` mostly decides the same way from one second to the next. A
    sub that only compares them with constants (:attr:`Ruleset.deliver_limits`, what else it
    reads in the memo's key) is not run at all while the age and TTL stay between the limits
    around the last run's (``stored.window``)."""
    window = stored.window
    if window is not None and window[0] < age < window[1] and window[2] < ttl < window[3]:
        return stored.prefix  # the sub would decide as last time
    runner = ruleset.rules.runners["deliver"]
    assert runner is not None
    env = replay_env(p, req, ruleset, recv)
    saved, env.edits = env.edits, []  # recv's edits stay for the phases, if they answer
    status = stored.status
    obj = stored.obj
    if obj is None:
        obj = stored.obj = as_map(entry.headers)
        stored.resp = as_map(stored.headers)
    env.obj_status, env.obj_ttl, env.obj_age = entry.status, ttl, age
    env.obj_headers = obj
    env.resp_status, env.resp_headers, env.cache_state = status, dict(stored.resp), "hit"
    try:
        out = runner(env)
    except RulesRuntimeError:
        out = Outcome(Kind.ERROR)
    edits = env.edits
    env.edits = saved
    if out is not None and out.kind is not Kind.DELIVER:
        env.log_lines.clear()  # the phases run it again
        stored.window = None
        return None
    if env.log_lines:
        p.hooks.rules_log(req, env.log_lines)
        env.log_lines = []
    key = (env.resp_status, *edits)
    if key != stored.edits:
        headers = stored.headers
        if edits:
            resp = [(op, n, v) for scope, op, n, v in edits if scope == "resp"]
            headers = edited(headers, resp)
        stored.edits, stored.prefix = key, head_prefix(env.resp_status or status, headers)
    limits = ruleset.deliver_limits
    stored.window = None if limits is None else _window(age, ttl, limits)
    return stored.prefix


def _around(x: float, limits: tuple[float, ...]) -> tuple[float, float] | None:
    """The open interval around ``x`` between two of ``limits`` (None: ``x`` is one)."""
    lo, hi = -math.inf, math.inf
    for t in limits:
        if t < x:
            lo = max(lo, t)
        elif t > x:
            hi = min(hi, t)
        else:
            return None
    return lo, hi


def _window(
    age: float, ttl: float, limits: dict[str, tuple[float, ...]]
) -> tuple[float, float, float, float] | None:
    """Where a deliver sub comparing obj.age/obj.ttl with ``limits`` decides as it did for
    ``age`` and ``ttl`` (see :class:`~pkgedge.edge.fastpath.Stored`)."""
    a = _around(age, limits["obj.age"])
    t = _around(ttl, limits["obj.ttl"])
    if a is None or t is None:
        return None
    return a[0], a[1], t[0], t[1]
