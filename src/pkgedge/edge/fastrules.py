"""The rules on the fast path (:meth:`pkgedge.edge.pipeline.Pipeline.try_hit`): a live
``recv`` before the memo is looked up, and a live ``deliver`` on a replay.

See :mod:`pkgedge.edge.ruleset` for which subs run live and which are folded into the memo.
Both run synchronously and hand the request to the phases (returning None) for anything but
a plain hit; ``req.pre`` then carries what recv decided, so the phases never run it twice
(:func:`pkgedge.edge.rulesrun.take_pre`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pkgedge.edge.fastpath import BLOCKERS
from pkgedge.edge.rulesrun import edited, request_env
from pkgedge.http.headers import Headers, as_map
from pkgedge.http.response import head_prefix
from pkgedge.rules import Kind, Outcome, RulesRuntimeError

if TYPE_CHECKING:
    from pkgedge.cache.entry import Entry
    from pkgedge.edge.pipeline import Pipeline
    from pkgedge.edge.ruleset import Ruleset
    from pkgedge.http.request import Request


#: Request fields a live recv may not change on the fast path (the memo's key and the fields
#: that take a request off it).
_FAST_FIELDS = frozenset({"accept", "accept-encoding"}) | BLOCKERS


#: Most remembered recv results per worker (cleared whole when full).
RECV_MEMO_MAX = 20_000


def fast_recv(
    p: Pipeline, req: Request, ruleset: Ruleset, memo: dict[tuple[object, ...], tuple[object, ...]]
) -> tuple[object, ...] | None:
    """Run recv live for a fast-path candidate. Returns the memo inputs after it (see
    :meth:`Ruleset.inputs_after`) when the request may go on to the memo (a plain look-up),
    else None, with ``req.pre`` holding what recv decided for the phases.

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
    inputs = ruleset.inputs_after(env)
    if not env.effects and not env.log_lines:
        if len(memo) >= RECV_MEMO_MAX:
            memo.clear()
        memo[key] = inputs
    return inputs


def fast_deliver(
    p: Pipeline,
    req: Request,
    ruleset: Ruleset,
    entry: Entry,
    base: tuple[int, Headers],
    now: float,
) -> bytes | None:
    """Run a live deliver sub (one that reads ``obj.ttl``/``obj.age`` or logs) on a replay:
    the head prefix with its edits, or None to let the phases answer (restart, rules error)."""
    runner = ruleset.rules.runners["deliver"]
    assert runner is not None
    pre = req.pre
    env = pre[0] if isinstance(pre, tuple) else request_env(p, req, ruleset)
    saved, env.edits = env.edits, []  # recv's edits stay for the phases, if they answer
    status, headers = base
    env.obj_status, env.obj_ttl, env.obj_age = entry.status, entry.ttl(now), entry.age(now)
    env.obj_headers = as_map(entry.headers)
    env.resp_status, env.resp_headers, env.cache_state = status, as_map(headers), "hit"
    try:
        out = runner(env)
    except RulesRuntimeError:
        out = Outcome(Kind.ERROR)
    edits = [(op, name, value) for scope, op, name, value in env.edits if scope == "resp"]
    env.edits = saved
    if out is not None and out.kind is not Kind.DELIVER:
        env.log_lines.clear()  # the phases run it again
        return None
    if env.log_lines:
        p.hooks.rules_log(req, env.log_lines)
        env.log_lines = []
    if edits:
        headers = edited(headers, edits)
    return head_prefix(env.resp_status or status, headers)
