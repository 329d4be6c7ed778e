"""What the stats do per request, as two closures the pipeline calls (set on
``Pipeline.stats_hit`` and ``Pipeline.stats_log``):

- ``on_hit(req, sent)``: a fresh hit answered by the fast path (status 200);
- ``on_log(req, status, sent, cache_status)``: every other answered request (the log phase).

Each is two local increments (``on_hit``), one dict look-up and two in-place increments (the
client tally, :class:`~pkgedge.stats.clients.ClientTally`), a string check for protection's
note, and for a whole-file download (:func:`~pkgedge.analytics.record.is_download`) one
tuple appended to the recorder's list; the rest waits for the once-a-second flush. They are
plain closures, not log hooks of :class:`~pkgedge.edge.hooks.Hooks`, so that the fast path
builds no Cache-Status string and loops over no subscribers for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pkgedge.analytics.record import SUFFIXES
from pkgedge.analytics.recorder import Recorder
from pkgedge.stats.clients import ClientTally

if TYPE_CHECKING:
    from pkgedge.http.request import Request

OnHit = Callable[["Request", int], None]
OnLog = Callable[["Request", int, int, str], None]

#: last characters of the distribution suffixes: a cheap first check (pages end with "/")
_LAST = frozenset(s[-1] for s in SUFFIXES)


def make(recorder: Recorder, tally: ClientTally) -> tuple[OnHit, OnLog, Callable[[], None]]:
    """``(on_hit, on_log, publish)``. ``on_hit`` counts the fast path's hits (all 200, all
    from the cache) in two local ints instead of the shared counters (an increment of a
    shared-memory slot costs several times a local one); ``publish()`` adds them to
    ``status_2xx`` and ``bytes_from_cache`` and is called before every sample of the ring,
    so the live view sees them within a second."""
    get = tally.table.get
    new = tally.new
    noted = tally.noted
    saw = recorder.saw
    counters = recorder.counters
    fast_hits = fast_bytes = 0

    def on_hit(req: Request, sent: int) -> None:
        nonlocal fast_hits, fast_bytes
        fast_hits += 1
        fast_bytes += sent
        c = get(req.client)
        if c is None:
            c = new(req.client)
        c[0] += 1
        c[2] += sent
        if req.note:
            noted(c, req.note, False)
        t = req.target
        if t[-1] in _LAST and t.endswith(SUFFIXES) and req.method == "GET":
            saw(t, req.map.get("user-agent", ""), req.client)

    def on_log(req: Request, status: int, sent: int, cache_status: str) -> None:
        c = get(req.client)
        if c is None:
            c = new(req.client)
        c[0] += 1
        c[2] += sent
        if req.note or cache_status == "refused":
            noted(c, req.note, cache_status == "refused")
        t = req.target
        if status == 200 and t[-1] in _LAST and t.endswith(SUFFIXES) and req.method == "GET":
            saw(t, req.map.get("user-agent", ""), req.client)

    def publish() -> None:
        nonlocal fast_hits, fast_bytes
        if fast_hits:
            counters.add("status_2xx", fast_hits)
            counters.add("bytes_from_cache", fast_bytes)
            fast_hits = fast_bytes = 0

    return on_hit, on_log, publish
