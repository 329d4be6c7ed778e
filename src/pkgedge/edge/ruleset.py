"""The configuration a worker runs: one compiled version of the rules and its live tables.

:class:`Ruleset` is immutable once built (the tables' *contents* are replaced live through
:meth:`Ruleset.tables`); a worker swaps its whole ruleset with
:meth:`pkgedge.edge.pipeline.Pipeline.use_rules` (one attribute assignment). Each request reads
the pipeline's ruleset once, when it starts, and keeps it to the end: no request sees half of
one version and half of another.
"""

from __future__ import annotations

from pkgedge.rules import Rules, Tables, compile_default


class Ruleset:
    """A compiled version: ``version`` is its number (0: the built-in default)."""

    __slots__ = ("rules", "tables", "version")

    def __init__(self, rules: Rules, version: int = 0, tables: Tables | None = None) -> None:
        self.rules = rules
        self.version = version
        self.tables = tables if tables is not None else rules.tables()

    @classmethod
    def default(cls) -> Ruleset:
        return cls(compile_default(), 0)

    def __repr__(self) -> str:
        return f"<Ruleset v{self.version} {self.rules!r}>"
