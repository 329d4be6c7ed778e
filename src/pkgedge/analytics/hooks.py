"""What the stats do per request, as two closures the pipeline calls (set on
``Pipeline.stats_hit`` and ``Pipeline.stats_log``):

- ``on_hit(req, sent)``: a fresh hit answered by the fast path (status 200);
- ``on_log(req, status, sent, cache_status)``: every other answered request (the log phase).

Each is one dict look-up and two in-place increments (the client tally,
:class:`~pkgedge.stats.clients.ClientTally`), a string check for protection's note, and for
a whole-file download (:func:`~pkgedge.analytics.record.is_download`) one tuple appended to
the recorder's list; the rest waits for the once-a-second flush. They are plain closures, not
log hooks of :class:`~pkgedge.edge.hooks.Hooks`, so that the fast path builds no Cache-Status
string and loops over no subscribers for them.
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


def make(recorder: Recorder, tally: ClientTally) -> tuple[OnHit, OnLog]:
    get = tally.table.get
    new = tally.new
    noted = tally.noted
    saw = recorder.saw

    def on_hit(req: Request, sent: int) -> None:
        c = get(req.client)
        if c is None:
            c = new(req.client)
        c[0] += 1
        c[2] += sent
        if req.note:
            noted(c, req.note, False)
        if req.target.endswith(SUFFIXES) and req.method == "GET":
            saw(req.target, req.map.get("user-agent", ""), req.client)

    def on_log(req: Request, status: int, sent: int, cache_status: str) -> None:
        c = get(req.client)
        if c is None:
            c = new(req.client)
        c[0] += 1
        c[2] += sent
        if req.note or cache_status == "refused":
            noted(c, req.note, cache_status == "refused")
        if status == 200 and req.target.endswith(SUFFIXES) and req.method == "GET":
            saw(req.target, req.map.get("user-agent", ""), req.client)

    return on_hit, on_log
