"""The busy object: where the client side and the fetch side of the pipeline meet.

The first miss for a key starts a fetch; later misses for the same key wait on the same busy
object and stream the body from its file as bytes arrive (Varnish's busy objcore). A fetch
runs in one worker (:class:`~pkgedge.edge.fill.Fill`); misses in other workers follow it
through the disk tier (:class:`~pkgedge.edge.fill.RemoteFill`). Both share the state below,
and delivery reads only this protocol.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pkgedge.cache.entry import Entry
    from pkgedge.http.headers import Headers
    from pkgedge.upstream.client import UpstreamResponse


class State(enum.Enum):
    PENDING = "pending"  # waiting for the origin's head
    STREAMING = "streaming"  # body arriving into the file
    DONE = "done"  # complete and committed
    NOT_MODIFIED = "not-modified"  # revalidated: the stored object was refreshed
    PASS = "pass"  # not storable: the response goes to one client only
    FAILED = "failed"  # the origin failed; waiters may serve stale-if-error
    GONE = "gone"  # (remote) the fill ended without a result we can read: look up again


class BusyObject(Protocol):
    """What a waiter reads of a fetch in progress, local or remote."""

    ckey: bytes
    state: State
    status: int
    headers: Headers
    length: int | None
    written: int
    initial_age: float
    response_time: float
    entry: Entry | None
    error: BaseException | None
    waiters: int
    why: str

    def body_paths(self) -> tuple[Path, Path]:
        """Where the body is: the temp file while it grows, then its final place."""
        ...

    async def wait_progress(self) -> None:
        """Return when the state changed or more of the body was written."""
        ...

    def take_pass(self) -> UpstreamResponse | None:
        """The one not-storable response, for the first waiter that asks (else None)."""
        ...


class BusyState:
    """The fields both kinds of busy object keep (see :class:`BusyObject`)."""

    def __init__(self, ckey: bytes, objid: str) -> None:
        self.ckey = ckey
        self.objid = objid
        self.state = State.PENDING
        self.status = 0
        self.headers: Headers = []
        self.length: int | None = None
        self.written = 0
        self.initial_age = 0.0
        self.response_time = 0.0
        self.entry: Entry | None = None
        self.error: BaseException | None = None
        self.waiters = 1
        self.why = ""

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.ckey!r} {self.state.value} written={self.written} "
            f"waiters={self.waiters}>"
        )

    def head_record(self, kind: str) -> tuple[Any, ...]:
        """What another worker needs to follow this fetch (see ``adopt_head``)."""
        return (kind, self.status, self.headers, self.length, self.initial_age, self.response_time)

    def adopt_head(self, record: tuple[Any, ...]) -> str:
        """Take a published head record over; returns its kind ("obj", "nm" or "pass")."""
        kind, status, headers, length, initial_age, response_time = record
        self.status, self.headers, self.length = status, headers, length
        self.initial_age, self.response_time = initial_age, response_time
        return str(kind)
