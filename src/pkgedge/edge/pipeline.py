"""The pipeline: a loop over the phase table, for every request.

``phase = STEPS[phase](ctx)`` from ``recv`` to ``done``; every transition a step returns is
checked against :data:`~pkgedge.edge.phases.TRANSITIONS` (a set look-up) and recorded in the
trace when the request asked for one. :meth:`Pipeline.try_hit` answers a repeated fresh hit
synchronously from the fast path's memo of what ``deliver`` wrote (see
:mod:`pkgedge.edge.fastpath`); every other request runs the loop in :meth:`Pipeline.handle`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pkgedge.cache.memory import MemoryTier
from pkgedge.cache.store import Store
from pkgedge.config import EdgeSettings
from pkgedge.edge import fastrules as fr
from pkgedge.edge import rulesrun as rr
from pkgedge.edge.backend import Backend
from pkgedge.edge.context import Client, Ctx
from pkgedge.edge.deliver import Delivery, send
from pkgedge.edge.fastpath import HotHits, replayable
from pkgedge.edge.fill import Fills
from pkgedge.edge.hooks import Hooks
from pkgedge.edge.phases import TRANSITIONS, Phase, TransitionError
from pkgedge.edge.protect import Guard
from pkgedge.edge.ruleset import Ruleset
from pkgedge.edge.steps import STEPS
from pkgedge.errors import PkgedgeError
from pkgedge.http.request import Request
from pkgedge.http.response import hit_head
from pkgedge.rules import RulesRuntimeError
from pkgedge.stats.counters import Counters

_EMPTY = memoryview(b"")


class Pipeline:
    """One per worker: the collaborators every step uses, and the loop that runs them."""

    def __init__(
        self,
        settings: EdgeSettings,
        store: Store,
        counters: Counters,
        hooks: Hooks | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.counters = counters
        self.hooks = hooks or Hooks()
        # every worker maps up to the whole memory size: the pages are shared (page cache)
        self.memory = MemoryTier(settings.memory_size)
        self.guard = Guard(settings, counters) if settings.protection != "off" else None
        self.backend = backend or Backend(settings, store)
        self.fills = Fills(store, self.backend, counters, settings.default_ttl)
        self.hot = HotHits(store.generation)
        self.deliver = Delivery(settings, store, self.memory, counters, self.hot)
        self.edges = self.deliver.edges  # a shield's edges, a tier's peers (edge/shield.py)
        #: the configuration every new request runs (see use_rules)
        self.ruleset = Ruleset.default()
        self._tables_version = 0  # of the ruleset's tables when the memos were made
        self._recv_memo: dict[tuple[object, ...], fr.Recv] = {}  # see fast_recv
        self.limiter = rr.RuleLimiter()  # the rules' named rate-limit counters
        self._slots = counters.slots
        self._i_hits = counters.index("hits")
        self._i_bytes = counters.index("bytes_to_clients")
        self.backend.observe = counters.observe_latency  # origin latency histogram
        self.backend.count = counters.add
        #: the stats' per-request work (pkgedge.analytics.hooks): a fast-path hit, the rest
        self.stats_hit: Callable[[Request, int], None] | None = None
        self.stats_log: Callable[[Request, int, int, str], None] | None = None

    def __repr__(self) -> str:
        return f"<Pipeline {self.fills!r} {self.hot!r} memory={self.memory!r}>"

    def use_rules(self, ruleset: Ruleset) -> None:
        """Run ``ruleset`` from the next request on (requests in flight finish on theirs)."""
        self.ruleset = ruleset
        self._tables_version = ruleset.tables.version
        self._forget()

    def _forget(self) -> None:
        """Drop the fast path's memos: they are what other rules or tables decided."""
        self.hot.clear()
        self._recv_memo.clear()

    # -- the fast path -------------------------------------------------------------------
    def try_hit(self, req: Request, client: Client) -> bool:
        """Answer a repeated fresh hit synchronously (True), else leave it to :meth:`handle`."""
        now = time.time()
        guard = self.guard
        if guard is not None:
            req.refusal = guard.admit(req, now)
            if req.refusal is not None:
                return False  # recv answers it
        rs = self.ruleset
        if not rs.fast:
            return False
        if rs.tables.version != self._tables_version:  # a table was replaced live
            self._tables_version = rs.tables.version
            self._forget()
            return False
        after: fr.Recv | None = None
        if rs.live_recv:
            if not replayable(req):
                return False
            after = fr.fast_recv(self, req, rs, self._recv_memo)  # None: req.pre for recv
            if after is None:
                return False
            inputs = after[0] if rs.inputs_read else None
        else:
            inputs = rs.inputs(req) if rs.inputs_read else None
        memo = self.hot.find(req, inputs)
        if memo is None:
            return False
        _, entry, prefix, mkey, stored = memo
        ttl = entry.ttl(now)
        if ttl <= 0:
            return False
        body = self.memory.get(mkey) if entry.size else _EMPTY
        if body is None:
            return False
        age = entry.age(now)
        if rs.live_deliver:
            live = fr.fast_deliver(self, req, rs, entry, stored, age, ttl, after)
            if live is None:
                return False
            prefix = live
        head = hit_head(prefix, int(age), int(ttl), len(body), not req.keep_alive)
        sent = send(client, head, body)
        slots = self._slots
        slots[self._i_hits] += 1
        slots[self._i_bytes] += sent
        self.store.touch(entry.objid)
        if guard is not None:
            guard.account(req, 200, "hit", now)
        if self.stats_hit is not None:
            self.stats_hit(req, sent)
        if self.hooks.active:
            self.hooks.log(req, 200, sent, f"pkgedge; hit; ttl={int(ttl)}", 0.0)
        if rs.live_log:
            self._fast_log(req, rs, after)
        req.pre = None
        return True

    def _fast_log(self, req: Request, rs: Ruleset, after: fr.Recv | None) -> None:
        """The log sub after a fast-path replay (as the log phase runs it)."""
        runner = rs.rules.runners["log"]
        assert runner is not None
        env = fr.replay_env(self, req, rs, after)
        env.resp_status, env.cache_state = 200, "hit"
        try:
            runner(env)
        except RulesRuntimeError as exc:
            self.counters.add("rules_errors")
            rr.log.warning("rules error in log for %s %s: %s", req.method, req.target, exc)
        if env.log_lines:
            self.hooks.rules_log(req, env.log_lines)

    # -- the loop ------------------------------------------------------------------------
    async def handle(self, req: Request, client: Client) -> None:
        ctx = Ctx(req, client, time.time(), time.monotonic(), self.ruleset)
        await self.run(ctx)

    async def run(self, ctx: Ctx) -> None:
        phase = Phase.RECV
        trace = ctx.trace
        try:
            while phase is not Phase.DONE:
                try:
                    nxt = await STEPS[phase](self, ctx)
                except PkgedgeError as exc:
                    if Phase.ERROR not in TRANSITIONS[phase]:
                        raise
                    nxt = ctx.fail(exc.status, str(exc))
                if nxt not in TRANSITIONS[phase]:
                    raise TransitionError(f"{phase.value} → {nxt.value} is not a transition")
                ctx.phase = phase = nxt
                if trace is not None and phase is not Phase.DONE:
                    trace.enter(phase)
        finally:
            if ctx.holds_fetch:
                ctx.holds_fetch = False
                self.fills.fetching -= 1

    def account(
        self, req: Request, status: int, sent: int, cache_status: str, now: float, duration: float
    ) -> None:
        """The log phase's work: protection's accounting and the access log."""
        self.counters.response(status, cache_status, sent)
        if self.stats_log is not None and not self.edges.asks(req):
            # (a fill of another node of the cluster: its client was counted there)
            self.stats_log(req, status, sent, cache_status)
        if self.guard is not None:
            self.guard.account(req, status, cache_status, now)
        self.hooks.log(req, status, sent, cache_status, duration)

    async def close(self) -> None:
        """Cancel fetches in progress (nothing half-written becomes visible)."""
        await self.fills.cancel_all()
