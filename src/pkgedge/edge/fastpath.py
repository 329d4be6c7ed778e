"""The fast path: a fresh hit answered synchronously, by replaying what delivery wrote.

When :class:`~pkgedge.edge.deliver.Delivery` writes a fresh hit whose body is in memory, it
calls :meth:`HotHits.remember` with the head it built (status line and stored fields). A later
request for the same target, ``Accept`` and ``Accept-Encoding`` is answered from that memo —
the same bytes, with Age and TTL brought up to date — for as long as the disk tier's
*generation* (bumped by every commit and purge in any worker) is the one read before the
look-up that produced it, and the object is still fresh. Nothing here decides anything the
phases did not decide first: the memo is the output of recv → hash → lookup → hit → deliver
for that request shape, and requests the memo cannot answer exactly (conditionals, ranges,
request cache directives, traces) take the phases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pkgedge.cache.entry import Entry
from pkgedge.cache.keys import secondary_key
from pkgedge.http.headers import Headers
from pkgedge.http.request import Request

if TYPE_CHECKING:
    from pkgedge.edge.context import Ctx

#: Request fields that take a request off the fast path.
BLOCKERS = frozenset(
    {
        "range",
        "cache-control",
        "pragma",
        "if-none-match",
        "if-modified-since",
        "pkgedge-trace",
        "pkgedge-tier",  # an edge asking its shield (edge/shield.py)
    }
)
_MAX = 20_000


class Stored:
    """What a live deliver sub starts from on a replay (see
    :func:`pkgedge.edge.fastrules.fast_deliver`): the status and fields delivery wrote before
    the rules' edits, and what the replays of this memo keep so that each does less: the
    fields as the rules read them (``obj``, ``resp``: made on the first replay, never
    changed: rules cannot write ``obj.http`` and get a copy of ``resp``), and the last
    (edits, status) → head prefix (the next replay with the same edits reuses the bytes),
    with, when the sub compares the object's age and TTL with constants only
    (:attr:`~pkgedge.edge.ruleset.Ruleset.deliver_limits`), the open intervals of age and
    TTL around the last run's where it decides alike (``window``: that prefix is the
    answer, without running the sub)."""

    __slots__ = ("edits", "headers", "obj", "prefix", "resp", "status", "window")

    def __init__(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers
        self.obj: dict[str, str] | None = None
        self.resp: dict[str, str] = {}
        self.edits: tuple[object, ...] | None = None  # (status, *edits) of the last replay
        self.prefix = b""
        self.window: tuple[float, float, float, float] | None = None  # age lo, hi; TTL lo, hi

    def __repr__(self) -> str:
        return f"<Stored {self.status} fields={len(self.headers)}>"


#: (generation, entry, head prefix, memory-tier key of the body, what a live deliver sub
#: starts from)
Memo = tuple[int, Entry, bytes, str, Stored]


def replayable(req: Request) -> bool:
    """May the memo answer this request at all (a GET without fields that need the phases)?"""
    return req.method == "GET" and BLOCKERS.isdisjoint(req.map)


class HotHits:
    """Memos of delivered fresh hits, per worker, keyed by request shape."""

    def __init__(self, generation: Sequence[int]) -> None:
        self._generation = generation
        self._memo: dict[tuple[object, ...], Memo] = {}

    def __repr__(self) -> str:
        return f"<HotHits memos={len(self._memo)} generation={self._generation[0]}>"

    def __len__(self) -> int:
        return len(self._memo)

    def clear(self) -> None:
        self._memo.clear()

    def remember(
        self,
        ctx: Ctx,
        entry: Entry,
        prefix: bytes,
        coding: str | None,
        base: tuple[int, Headers],
    ) -> None:
        """Called by delivery after writing a fresh hit with an in-memory body."""
        key = ctx.req.shape  # as find() saw the request, before any rule changed it
        if key is None:
            return
        if ctx.restarts:
            return  # (a replay never restarts)
        m = ctx.req.map
        if ctx.vkey != ctx.primary and ctx.vkey != secondary_key(
            ctx.primary, ("accept",), m, ctx.path
        ):
            return  # varies on more than Accept: the memo's key could not tell variants apart
        if len(self._memo) >= _MAX:
            self._memo.clear()
        stored = Stored(*base)
        self._memo[key] = (ctx.generation, entry, prefix, entry.objid + (coding or ""), stored)

    def find(self, req: Request, inputs: tuple[object, ...] | None = None) -> Memo | None:
        """The memo for this request, if it may answer it. ``inputs``: the values of what
        the rules read besides the request's shape (see :class:`~pkgedge.edge.ruleset.Ruleset`)."""
        if not replayable(req):
            return None
        m = req.map
        key = req.shape = (
            (req.target, m.get("accept"), m.get("accept-encoding"))
            if inputs is None
            else (req.target, m.get("accept"), m.get("accept-encoding"), inputs)
        )
        memo = self._memo.get(key)
        if memo is None or memo[0] != self._generation[0]:
            return None
        return memo
