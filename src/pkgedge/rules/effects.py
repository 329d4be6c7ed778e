"""What a sub reads and whether it does more than compute: found once, from the checked tree.

The edge's fast path replays what delivery wrote for a request shape (target, ``Accept``,
``Accept-Encoding``). A sub whose outcome depends only on such inputs, and that has no side
effect (``ratelimit`` takes a token, ``log`` writes a line), gives the same result every time
for that shape while its tables are unchanged, so the replay stays exact. :class:`Effects`
says which subs are like that, and lists the inputs of the others (for a memo keyed by them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pkgedge.rules import nodes as n

__all__ = ["SHAPE_INPUTS", "STORED_INPUTS", "Effects", "sub_effects"]

#: Inputs a request shape fixes (the fast path's memo key, or constant per request).
SHAPE_INPUTS = frozenset(
    {
        "req.method",
        "req.url",
        "req.path",
        "req.query",
        "req.backend",
        "req.restarts",
        "req.http.accept",
        "req.http.accept-encoding",
    }
)
#: Inputs fixed by the stored object a memo replays (hit and deliver of a fresh hit). Not
#: ``obj.ttl``/``obj.age``: they change from one request to the next.
STORED_INPUTS = frozenset({"obj.status", "resp.status", "cache.state"})
_STORED_PREFIXES = ("obj.http.", "resp.http.")
_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})


@dataclass(frozen=True, slots=True)
class Effects:
    """``reads``: variables the sub reads; ``side_effects``: it rate-limits or logs;
    ``tables``: it reads a table or ACL."""

    reads: frozenset[str]
    side_effects: bool
    tables: bool
    #: each comparison of ``obj.age``/``obj.ttl`` with a constant, as (variable, seconds):
    #: between two of these the sub decides alike (the edge's fast path reuses its result);
    #: None when the sub uses either otherwise (in a value, against another variable)
    time_limits: tuple[tuple[str, float], ...] | None = ()

    def shape_only(self) -> bool:
        """Same result for every request of one shape on one stored object."""
        return not self.side_effects and all(
            r in SHAPE_INPUTS or r in STORED_INPUTS or r.startswith(_STORED_PREFIXES)
            for r in self.reads
        )


def sub_effects(body: list[n.Stmt]) -> Effects:
    reads: set[str] = set()
    flags = {"side": False, "tables": False, "other_time_use": False}

    limits: set[tuple[str, float]] = set()
    compared: set[int] = set()  # ids of the time variables compared with a constant
    time_vars = ("obj.age", "obj.ttl")

    def visit(node: object) -> None:
        if isinstance(node, n.Binary) and node.op in _COMPARISONS:
            for var, const in ((node.left, node.right), (node.right, node.left)):
                if (
                    isinstance(var, n.Var)
                    and var.name in time_vars
                    and isinstance(const, n.Dur | n.Int)
                ):
                    seconds = const.seconds if isinstance(const, n.Dur) else const.value
                    limits.add((var.name, float(seconds)))
                    compared.add(id(var))
        if isinstance(node, n.Var):
            reads.add(node.name)
            if node.name in time_vars and id(node) not in compared:
                flags["other_time_use"] = True
        elif isinstance(node, n.Assign) and node.op == "append":
            reads.add(node.target)  # appending reads what is there
        elif isinstance(node, n.Index | n.In):
            flags["tables"] = True
        elif isinstance(node, n.RateLimit) or (isinstance(node, n.Action) and node.kind == "log"):
            flags["side"] = True
        if isinstance(node, list | tuple):
            for item in node:
                visit(item)
        elif dataclasses.is_dataclass(node) and not isinstance(node, type):
            for f in dataclasses.fields(node):
                if f.name not in ("span", "type"):
                    visit(getattr(node, f.name))

    visit(body)
    time_limits = None if flags["other_time_use"] else tuple(sorted(limits))
    return Effects(frozenset(reads), flags["side"], flags["tables"], time_limits)
