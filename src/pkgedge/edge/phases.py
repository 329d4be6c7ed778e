"""The pipeline's phases and every allowed transition, in one table.

recv → hash → lookup → hit | miss | pass → fetch → deliver → log, the shape Varnish and
Fastly users know. :class:`~pkgedge.edge.pipeline.Pipeline` runs a loop over this table
(``phase = STEPS[phase](ctx)``) and checks every transition against it on every request;
:class:`Trace` only records what each phase decided and why. :func:`diagram` renders the
table for the docs.
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    RECV = "recv"  # admission (protection), routing, method: lookup or pass
    HASH = "hash"  # the cache key
    LOOKUP = "lookup"  # the stored object, if any
    HIT = "hit"  # a stored object: fresh, stale-while-revalidate, or needs revalidation
    MISS = "miss"  # join or start the one fetch of this object (collapsing)
    PASS = "pass"  # not cacheable: a private fetch for this client
    FETCH = "fetch"  # wait for the origin's answer
    DELIVER = "deliver"  # write the response (the one place responses are written)
    ERROR = "error"  # a synthetic response: refusal or error
    LOG = "log"  # counters, protection's accounting, access log
    DONE = "done"


#: phase → the phases it may go to. ``ERROR`` is reachable from every phase that has not
#: started writing a response.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.RECV: frozenset({Phase.HASH, Phase.PASS, Phase.ERROR}),
    Phase.HASH: frozenset({Phase.LOOKUP, Phase.ERROR}),
    Phase.LOOKUP: frozenset({Phase.HIT, Phase.MISS, Phase.ERROR}),
    # a hit may still need the origin: a revalidation (stale, or the client said no-cache),
    # or a private fetch (the rules said return(pass))
    Phase.HIT: frozenset({Phase.DELIVER, Phase.MISS, Phase.PASS, Phase.ERROR}),
    # the origin fetch cap may be reached: a stale object is delivered instead, or an error
    Phase.MISS: frozenset({Phase.FETCH, Phase.DELIVER, Phase.PASS, Phase.ERROR}),
    Phase.PASS: frozenset({Phase.FETCH, Phase.ERROR}),
    # a fetch that fails may deliver a stale object (stale-if-error) or an error; the rules
    # may restart the request (at most max_restarts times)
    Phase.FETCH: frozenset({Phase.DELIVER, Phase.ERROR, Phase.RECV}),
    # before anything is written: the rules may restart, or fail (a 503)
    Phase.DELIVER: frozenset({Phase.LOG, Phase.ERROR, Phase.RECV}),
    Phase.ERROR: frozenset({Phase.DELIVER, Phase.RECV}),
    Phase.LOG: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
}


class TransitionError(RuntimeError):
    """A step returned a phase the table does not allow (a bug in a step)."""


class Trace:
    """Decisions of one request: (phase, what was decided, why)."""

    __slots__ = ("events", "phase")

    def __init__(self) -> None:
        self.phase = Phase.RECV
        self.events: list[tuple[str, str, str]] = []

    def enter(self, phase: Phase) -> None:
        """Record entering ``phase`` (the pipeline has checked the transition)."""
        self.phase = phase
        self.events.append((phase.value, "", ""))

    def goto(self, phase: Phase, decision: str = "", why: str = "") -> None:
        """Check and record a transition (for callers outside the pipeline's loop)."""
        if phase not in TRANSITIONS[self.phase]:
            raise TransitionError(f"{self.phase.value} → {phase.value} is not a transition")
        self.enter(phase)
        if decision or why:
            self.decide(decision, why)

    def decide(self, decision: str, why: str = "") -> None:
        """What the current phase decided; the first decision of a phase fills its entry."""
        if self.events and self.events[-1][0] == self.phase.value and not self.events[-1][1]:
            self.events[-1] = (self.phase.value, decision, why)
        else:
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
