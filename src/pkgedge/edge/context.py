"""One request's state as it moves through the phases: what every step reads and writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pkgedge.edge.phases import Phase, Trace

if TYPE_CHECKING:
    from pkgedge.cache.entry import Entry
    from pkgedge.cache.policy import RequestDirectives
    from pkgedge.edge.busy import BusyObject
    from pkgedge.edge.ruleset import Ruleset
    from pkgedge.http.headers import Headers
    from pkgedge.http.request import Request
    from pkgedge.rules import Env
    from pkgedge.upstream.client import UpstreamResponse


class Client(Protocol):
    """What delivery needs from a client connection (each protocol implements it)."""

    closed: bool

    def write(self, data: bytes | memoryview) -> None: ...
    async def drain(self) -> None: ...
    def abort(self) -> None: ...
    @property
    def peer(self) -> str: ...


class Ctx:
    """The request, the client, and every decision taken so far."""

    __slots__ = (
        "backend",
        "body",
        "cache_status",
        "ckey",
        "client",
        "collapsed",
        "entry",
        "env",
        "error",
        "fill",
        "fresh_hit",
        "generation",
        "holds_fetch",
        "log_lines",
        "now",
        "origin",
        "pass_headers",
        "path",
        "phase",
        "primary",
        "rd",
        "req",
        "resp_edits",
        "resp_status",
        "response",
        "restarts",
        "ruleset",
        "sent",
        "stale",
        "started",
        "status",
        "synthetic",
        "target",
        "trace",
        "vkey",
    )

    def __init__(
        self, req: Request, client: Client, now: float, started: float, ruleset: Ruleset
    ) -> None:
        self.req = req
        self.client = client
        self.now = now  # wall clock when the request began (ages, TTLs, buckets)
        self.started = started  # monotonic, for the duration in the log
        self.phase = Phase.RECV
        self.trace: Trace | None = Trace() if "pkgedge-trace" in req.map else None
        self.ruleset = ruleset  # the configuration this request runs, start to end
        self.env: Env | None = None  # the rules' view of it (edge/rulesrun.py)
        self.backend = ""  # the backend the rules chose ("": the configured upstream)
        self.restarts = 0
        self.log_lines: list[str] = []  # the rules' log lines
        self.reset()

    def reset(self) -> None:
        """Every decision back to none (a new request, or a restart)."""
        self.path = ""  # the cache path: normalised target (cache.keys.cache_path)
        self.origin = ""  # the origin (scheme://host:port) and target fetched there
        self.target = ""
        self.primary = b""  # the primary cache key
        self.vkey = b""  # the variant key the look-up used (Vary)
        self.ckey = b""  # the key fetches collapse on
        self.generation = 0  # the store's generation read before the look-up
        self.rd: RequestDirectives | None = None
        self.entry: Entry | None = None  # the stored object to deliver
        self.stale: Entry | None = None  # a stored object being revalidated
        self.fill: BusyObject | None = None  # the fetch this request waits on
        self.collapsed = False
        self.fresh_hit = False  # the hit phase found the stored object fresh (a plain hit)
        self.response: UpstreamResponse | None = None  # a pass-through response
        self.pass_headers: Headers = []  # its headers, as the client gets them
        self.holds_fetch = False  # this request counts against the origin fetch cap
        self.error: tuple[int, str, Headers] | None = None  # (status, reason, extra fields)
        self.synthetic: bytes | None = None  # a complete response built by the edge
        self.cache_status = ""
        self.status = 0
        self.sent = 0
        self.body: str | None = None  # a synthetic body the rules gave
        self.resp_edits: list[tuple[str, str, str]] | None = None  # (op, name, value)
        self.resp_status = 0  # a status the rules set in deliver/error (0: none)

    def reset_for_restart(self) -> None:
        """``restart``: again from recv, with the request as the rules left it."""
        self.restarts += 1
        self.reset()

    def __repr__(self) -> str:
        return f"<Ctx {self.req.method} {self.req.target} phase={self.phase.value}>"

    def decide(self, decision: str, why: str = "") -> None:
        """Record what the current phase decided (only when the request is traced)."""
        if self.trace is not None:
            self.trace.decide(decision, why)

    def fail(self, status: int, reason: str, extra: Headers | None = None) -> Phase:
        """Answer with a synthetic error: the step returns this (``Phase.ERROR``)."""
        self.error = (status, reason, extra or [])
        return Phase.ERROR
