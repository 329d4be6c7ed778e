"""The pipeline's phases and every allowed transition, in one table.

recv → lookup → hit | miss | pass → fetch → deliver → log, the shape Varnish and Fastly users
know. :func:`diagram` renders the table for the docs; :class:`Trace` records each decision
with its reason when a request asks for a trace.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    RECV = "recv"
    LOOKUP = "lookup"
    HIT = "hit"
    MISS = "miss"
    PASS = "pass"
    FETCH = "fetch"
    DELIVER = "deliver"
    ERROR = "error"
    LOG = "log"


TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.RECV: frozenset({Phase.LOOKUP, Phase.PASS, Phase.ERROR}),
    Phase.LOOKUP: frozenset({Phase.HIT, Phase.MISS, Phase.PASS}),
    # a hit may still need the origin: a revalidation (stale, or the client said no-cache)
    Phase.HIT: frozenset({Phase.DELIVER, Phase.MISS}),
    Phase.MISS: frozenset({Phase.FETCH}),
    Phase.PASS: frozenset({Phase.FETCH}),
    # a fetch that fails may deliver a stale object (stale-if-error) or an error
    Phase.FETCH: frozenset({Phase.DELIVER, Phase.ERROR}),
    Phase.DELIVER: frozenset({Phase.LOG}),
    Phase.ERROR: frozenset({Phase.DELIVER, Phase.LOG}),
    Phase.LOG: frozenset(),
}


class TransitionError(RuntimeError):
    pass


class Trace:
    """Decisions of one request: (phase, what was decided, why)."""

    __slots__ = ("events", "phase")

    def __init__(self) -> None:
        self.phase = Phase.RECV
        self.events: list[tuple[str, str, str]] = []

    def goto(self, phase: Phase, decision: str = "", why: str = "") -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise TransitionError(f"{self.phase.value} → {phase.value} is not a transition")
        self.phase = phase
        self.events.append((phase.value, decision, why))

    def note(self, decision: str, why: str = "") -> None:
        self.events.append((self.phase.value, decision, why))

    def header(self) -> str:
        """One line, for the ``Pkgedge-Trace`` response header."""
        return "; ".join(f"{p}:{d}" + (f"({w})" if w else "") for p, d, w in self.events)


def diagram() -> str:
    """The transition table as a Mermaid flowchart (docs/architecture.md embeds it)."""
    lines = ["flowchart LR"]
    for src, dests in TRANSITIONS.items():
        for dst in sorted(dests, key=lambda p: p.value):
            lines.append(f"  {src.value} --> {dst.value}")
    return "\n".join(lines)
