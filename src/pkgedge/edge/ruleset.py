"""The configuration a worker runs: one compiled version of the rules and its live tables.

:class:`Ruleset` is immutable once built (the tables' *contents* are replaced live through
:attr:`Ruleset.tables`); a worker swaps its whole ruleset with
:meth:`pkgedge.edge.pipeline.Pipeline.use_rules` (one attribute assignment). Each request reads
the pipeline's ruleset once, when it starts, and keeps it to the end: no request sees half of
one version and half of another.

**The fast path under rules.** A sub is a deterministic function of what it reads while the
tables are unchanged. The fast path replays what delivery wrote for a fresh hit, so:

- ``recv``, when it reads more than the request's shape (target, ``Accept``,
  ``Accept-Encoding``) or has side effects (``ratelimit``, ``log``), or when a live
  ``deliver`` or ``log`` sub follows it (they read the request as recv left it), runs *live*
  on the fast path (:attr:`Ruleset.live_recv`): on every request, or looked up in a memo of
  its plain look-ups decided without side effects, keyed by what it read (with its edits of
  the request fields the live subs read, :attr:`Ruleset.live_fields`, and its backend,
  replayed for those subs). Anything but a plain look-up (an answer, a new URL, a changed
  ``Accept``/``Accept-Encoding`` or a field that takes requests off the fast path) hands
  the request, with what recv decided, to the phases;
- the other subs a hit runs (``hash``, ``hit``, ``deliver``) are folded into the memo: its
  key holds, besides the shape, the values of every other variable they read
  (:attr:`Ruleset.inputs_read`; ``req.backend`` too when a live recv may choose it), taken
  after ``recv`` ran;
- except a ``deliver`` sub that reads ``obj.ttl`` or ``obj.age`` (different on every
  request) or logs: it runs live on every replay, from the fields delivery wrote before the
  rules' edits (kept with the memo), and the head is rebuilt with its edits when they differ
  from the last replay's (:attr:`Ruleset.live_deliver`, :class:`~pkgedge.edge.fastpath.Stored`);
- a ``log`` sub runs live after the replay (:attr:`Ruleset.live_log`).

Hits stay on the phases (``fast`` is False) when ``hash`` or ``hit`` read a stored object's
``obj.ttl`` or ``obj.age`` or write log lines.
"""

from __future__ import annotations

from collections.abc import Callable

from pkgedge.http.request import Request
from pkgedge.rules import Env, Rules, Tables, compile_default
from pkgedge.rules.effects import SHAPE_INPUTS, STORED_INPUTS
from pkgedge.security.useragent import classify

#: The subs folded into the fast path's memo (recv and log may run live).
MEMO_PHASES = ("hash", "hit", "deliver")
_TIME_DEPENDENT = frozenset({"obj.ttl", "obj.age"})
_STORED_PREFIXES = ("obj.http.", "resp.http.")


def _from_request(name: str) -> Callable[[Request], object]:
    if name == "req.backend":
        return lambda req: ""  # as a request arrives: the default backend
    if name == "client.ip":
        return lambda req: req.client
    if name == "client.identity":
        return lambda req: req.key or req.client
    if name == "client.ua_class":
        return lambda req: classify(req.map.get("user-agent")).kind
    if name.startswith("req.http."):
        field = name[len("req.http.") :]
        return lambda req: req.map.get(field)
    raise ValueError(f"not a request input: {name}")  # pragma: no cover - checked names


def _from_env(name: str) -> Callable[[Env], object]:
    if name == "req.backend":
        return lambda env: env.backend
    if name == "client.ip":
        return lambda env: env.client_ip
    if name == "client.identity":
        return lambda env: env.client_identity
    if name == "client.ua_class":
        return lambda env: env.ua_class
    if name.startswith("req.http."):
        field = name[len("req.http.") :]
        return lambda env: env.req_headers.get(field)
    raise ValueError(f"not a request input: {name}")  # pragma: no cover - checked names


class Ruleset:
    """A compiled version: ``version`` is its number (0: the built-in default)."""

    __slots__ = (
        "_env_getters",
        "_recv_getters",
        "_req_getters",
        "deliver_limits",
        "fast",
        "inputs_read",
        "live_deliver",
        "live_fields",
        "live_log",
        "live_recv",
        "rules",
        "scratch",
        "tables",
        "version",
    )

    def __init__(self, rules: Rules, version: int = 0, tables: Tables | None = None) -> None:
        self.rules = rules
        self.version = version
        self.tables = tables if tables is not None else rules.tables()
        #: the Env the fast path's live deliver and log subs reuse, renewed for each replay
        #: (:func:`pkgedge.edge.fastrules.renew`; a worker runs one replay at a time): the
        #: one part of a ruleset that changes
        self.scratch = Env()
        runners, effects = rules.runners, rules.effects
        recv = effects.get("recv") if runners["recv"] is not None else None
        #: the log sub runs after every fast-path replay
        self.live_log = runners["log"] is not None
        deliver = effects.get("deliver") if runners["deliver"] is not None else None
        #: deliver runs on every replay (it reads obj.ttl/obj.age, or logs)
        self.live_deliver = deliver is not None and (
            bool(deliver.reads & _TIME_DEPENDENT) or deliver.side_effects
        )
        #: recv runs on every fast-path hit (it reads more than the shape, or has effects),
        #: or is looked up in the recv memo: always when a live deliver or log sub reads the
        #: request as recv left it
        self.live_recv = recv is not None and (
            not recv.shape_only() or self.live_deliver or self.live_log
        )
        #: a live deliver sub without side effects that compares obj.age/obj.ttl with
        #: constants only: {variable: its limits}. Its result is reused while the stored
        #: object's age and TTL stay between the same limits (see fastrules.fast_deliver);
        #: what else it reads goes into the memo's key. Else None.
        self.deliver_limits: dict[str, tuple[float, ...]] | None = None
        limits = deliver.time_limits if deliver is not None else None
        if (
            self.live_deliver
            and deliver is not None
            and limits is not None
            and not deliver.side_effects
            and "req.backend" not in deliver.reads  # recv may set it per client: not keyed
        ):
            self.deliver_limits = {
                var: tuple(t for v, t in limits if v == var) for var in _TIME_DEPENDENT
            }
        #: the request fields the live deliver and log subs read (lower-case names): the
        #: only ones whose recv edits a replay needs (see fastrules.fast_recv)
        self.live_fields = frozenset(
            r[len("req.http.") :]
            for phase, live in (("deliver", self.live_deliver), ("log", self.live_log))
            if live
            for r in effects[phase].reads
            if r.startswith("req.http.")
        )
        reads: set[str] = set()
        side_effects = False
        for phase in MEMO_PHASES:
            if runners[phase] is None:
                continue
            if phase == "deliver" and self.live_deliver:
                if self.deliver_limits is not None:
                    reads |= effects[phase].reads - _TIME_DEPENDENT
                continue
            reads |= effects[phase].reads
            side_effects |= effects[phase].side_effects
        if recv is not None and not self.live_recv:
            reads |= recv.reads  # a shape-only recv: folded into the memo too
        #: hits may be replayed by the fast path (see the module's docstring)
        self.fast = not (reads & _TIME_DEPENDENT) and not side_effects
        #: the inputs besides the request's shape that the memoized subs read (key's tail)
        self.inputs_read = tuple(
            sorted(
                r
                for r in reads
                if r not in SHAPE_INPUTS
                and r not in STORED_INPUTS
                and not r.startswith(_STORED_PREFIXES)
                and r not in _TIME_DEPENDENT
            )
        )
        if "req.backend" in reads and self.live_recv:  # recv may choose it per client
            self.inputs_read += ("req.backend",)
        ok = self.fast
        self._req_getters = tuple(_from_request(r) for r in self.inputs_read) if ok else ()
        self._env_getters = tuple(_from_env(r) for r in self.inputs_read) if ok else ()
        recv_reads = sorted(r for r in (recv.reads if recv else ()) if r not in SHAPE_INPUTS)
        self._recv_getters = tuple(_from_request(r) for r in recv_reads) if ok else ()

    @classmethod
    def default(cls) -> Ruleset:
        return cls(compile_default(), 0)

    def inputs(self, req: Request) -> tuple[object, ...]:
        """The values of :attr:`inputs_read` for ``req`` as it arrived (no live recv)."""
        return tuple(g(req) for g in self._req_getters)

    def recv_key(self, req: Request) -> tuple[object, ...]:
        """What a live recv reads of ``req``: its result for a key it once decided without
        side effects is the same (the fast path's memo of recv's plain look-ups)."""
        m = req.map
        return (
            req.target,
            m.get("accept"),
            m.get("accept-encoding"),
            *(g(req) for g in self._recv_getters),
        )

    def inputs_after(self, env: Env) -> tuple[object, ...]:
        """The values of :attr:`inputs_read` after a live recv ran on ``env``."""
        return tuple(g(env) for g in self._env_getters)

    def __repr__(self) -> str:
        return f"<Ruleset v{self.version} fast={self.fast} {self.rules!r}>"
