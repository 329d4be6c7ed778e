"""The configuration a worker runs: one compiled version of the rules and its live tables.

:class:`Ruleset` is immutable once built (the tables' *contents* are replaced live through
:attr:`Ruleset.tables`); a worker swaps its whole ruleset with
:meth:`pkgedge.edge.pipeline.Pipeline.use_rules` (one attribute assignment). Each request reads
the pipeline's ruleset once, when it starts, and keeps it to the end: no request sees half of
one version and half of another.

**The fast path under rules.** The subs a fresh hit runs (recv, hash, hit, deliver, log) are
deterministic functions of what they read, while the tables are unchanged. So the fast path
may replay what delivery wrote for a request as long as the next request presents the same
inputs: its shape (target, ``Accept``, ``Accept-Encoding``) and the values of every other
variable those subs read (``client.ip``, a header, ...), which :meth:`Ruleset.inputs` gives
as part of the memo's key. A run that had side effects (a rate-limit token taken, a log line
written) is never remembered, nor one that restarted. Subs that read a stored object's
``obj.ttl`` or ``obj.age`` (they change from one request to the next), and a ``log`` sub (it
runs after delivery, for every request), keep hits off the fast path (``fast`` is False).
"""

from __future__ import annotations

from collections.abc import Callable

from pkgedge.http.request import Request
from pkgedge.rules import Rules, Tables, compile_default
from pkgedge.rules.effects import SHAPE_INPUTS, STORED_INPUTS
from pkgedge.security.useragent import classify

#: The phases a fresh hit runs.
HIT_PHASES = ("recv", "hash", "hit", "deliver", "log")
_TIME_DEPENDENT = frozenset({"obj.ttl", "obj.age"})
_STORED_PREFIXES = ("obj.http.", "resp.http.")


def _getter(name: str) -> Callable[[Request], object]:
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


class Ruleset:
    """A compiled version: ``version`` is its number (0: the built-in default)."""

    __slots__ = ("_getters", "fast", "inputs_read", "rules", "tables", "version")

    def __init__(self, rules: Rules, version: int = 0, tables: Tables | None = None) -> None:
        self.rules = rules
        self.version = version
        self.tables = tables if tables is not None else rules.tables()
        reads: set[str] = set()
        for phase in HIT_PHASES:
            if rules.runners[phase] is not None:
                reads |= rules.effects[phase].reads
        #: hits may be replayed by the fast path (see the module's docstring)
        self.fast = not (reads & _TIME_DEPENDENT) and rules.runners["log"] is None
        #: the inputs besides the request's shape that the hit subs read (the memo key's tail)
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
        self._getters = tuple(_getter(r) for r in self.inputs_read) if self.fast else ()

    @classmethod
    def default(cls) -> Ruleset:
        return cls(compile_default(), 0)

    def inputs(self, req: Request) -> tuple[object, ...]:
        """The values of :attr:`inputs_read` for ``req`` (as it arrived)."""
        return tuple(g(req) for g in self._getters)

    def __repr__(self) -> str:
        return f"<Ruleset v{self.version} fast={self.fast} {self.rules!r}>"
