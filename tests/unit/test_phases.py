"""The pipeline's transition table."""

from __future__ import annotations

import pytest

from pkgedge.edge.phases import TRANSITIONS, Phase, Trace, TransitionError, diagram
from pkgedge.edge.steps import STEPS


def test_every_phase_is_reachable_from_recv() -> None:
    seen = {Phase.RECV}
    frontier = [Phase.RECV]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(Phase)


def test_done_is_terminal_and_reached_only_through_log() -> None:
    assert TRANSITIONS[Phase.DONE] == frozenset()
    assert {p for p, d in TRANSITIONS.items() if Phase.DONE in d} == {Phase.LOG}
    assert {p for p, d in TRANSITIONS.items() if Phase.LOG in d} == {Phase.DELIVER}


def test_every_phase_but_done_has_a_step() -> None:
    assert set(STEPS) == set(Phase) - {Phase.DONE}


def test_trace_records_and_enforces_transitions() -> None:
    t = Trace()
    t.goto(Phase.HASH)
    t.goto(Phase.LOOKUP)
    t.goto(Phase.HIT, "fresh", "age < lifetime")
    t.goto(Phase.DELIVER)
    assert t.header() == "hash:; lookup:; hit:fresh(age < lifetime); deliver:"
    with pytest.raises(TransitionError):
        t.goto(Phase.FETCH)


def test_diagram_lists_every_transition() -> None:
    text = diagram()
    count = sum(len(d) for d in TRANSITIONS.values())
    assert text.count("-->") == count
