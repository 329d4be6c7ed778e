"""What a compiled rule reads and writes (:class:`Env`), and what it asks the pipeline to do
(:class:`Outcome`). Independent of :mod:`pkgedge.edge`: the pipeline fills an Env from its
own request state, runs a phase's closure, then applies the outputs and the outcome."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pkgedge.rules.tables import Acl

__all__ = ["Env", "Kind", "Limiter", "Outcome", "TableValue"]

#: What ``env.tables`` maps a name to: a table (str → str) or an ACL.
TableValue = dict[str, str] | Acl


class Limiter(Protocol):
    """Takes one token for ``key`` from the named counter (``rate`` per ``per`` seconds);
    False when the counter is exhausted. The pipeline provides it (security/ratelimit)."""

    def __call__(self, name: str, key: str, rate: float, per: float) -> bool: ...


class Kind(enum.Enum):
    """What an outcome asks the pipeline to do."""

    PASS = "pass"  # not from the cache: a private fetch (recv, hit, miss); don't store (fetch)
    LOOKUP = "lookup"  # recv/hash: look the object up (the default)
    FETCH = "fetch"  # hit: fetch it again (revalidate); miss/pass: fetch (the default)
    DELIVER = "deliver"  # hit/fetch/deliver/error: go on to deliver (the default)
    RESTART = "restart"  # fetch/deliver/error: start again at recv, maybe on another backend
    ERROR = "error"  # answer with a synthetic error page (status, reason)
    SYNTHETIC = "synthetic"  # answer with this status, headers and body
    REDIRECT = "redirect"  # answer with this status and Location
    BLOCK = "block"  # refuse this client (403, reason)
    RATELIMIT = "ratelimit"  # the named counter is exhausted for this client (429)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The action a rule ended its sub with; ``line`` is the rule's line in the source."""

    kind: Kind
    status: int = 0
    reason: str = ""  # error/block/ratelimit: the reason shown to the client
    body: str = ""  # synthetic
    headers: tuple[tuple[str, str], ...] = ()  # synthetic
    location: str = ""  # redirect
    backend: str = ""  # restart: the backend to use ("" = the current one)
    name: str = ""  # ratelimit: the counter
    rate: int = 0  # ratelimit: requests ...
    per: float = 0.0  # ... per this many seconds
    line: int = 0


class Env:
    """One request as the rules see it, and what they changed.

    Inputs are filled by the caller; header dicts have lower-case names (repeated fields
    comma-joined) and are changed in place by ``set``/``append``/``unset``, each change also
    recorded in ``edits`` as (scope, op, name, value) with scope ``req``/``beresp``/``resp``
    and op ``set``/``append``/``unset``, so the pipeline can replay them on its own headers.
    """

    __slots__ = (
        "backend",
        "beresp_headers",
        "beresp_sie",
        "beresp_status",
        "beresp_swr",
        "beresp_ttl",
        "cache_state",
        "client_identity",
        "client_ip",
        "edits",
        "effects",
        "hash_parts",
        "limiter",
        "log_lines",
        "method",
        "obj_age",
        "obj_headers",
        "obj_status",
        "obj_ttl",
        "overrides",
        "path",
        "query",
        "req_headers",
        "resp_headers",
        "resp_status",
        "restarts",
        "surrogate_keys",
        "tables",
        "trace",
        "ua_class",
        "url",
        "url_changed",
    )

    def __init__(
        self,
        *,
        method: str = "GET",
        url: str = "/",
        req_headers: dict[str, str] | None = None,
        client_ip: str = "",
        client_identity: str = "",
        ua_class: str = "unknown",
        tables: Mapping[str, TableValue] | None = None,
        backend: str = "",
        restarts: int = 0,
        obj_status: int = 0,
        obj_ttl: float = 0.0,
        obj_age: float = 0.0,
        obj_headers: dict[str, str] | None = None,
        beresp_status: int = 0,
        beresp_headers: dict[str, str] | None = None,
        beresp_ttl: float = 0.0,
        beresp_swr: float = 0.0,
        beresp_sie: float = 0.0,
        resp_status: int = 0,
        resp_headers: dict[str, str] | None = None,
        cache_state: str = "",
        limiter: Limiter | None = None,
        trace: bool = False,
    ) -> None:
        # the request
        self.method = method
        self.url = url
        self.path, _, self.query = url.partition("?")
        self.req_headers = req_headers if req_headers is not None else {}
        self.backend = backend
        self.restarts = restarts
        # the client: address, identity (security/clientid), User-Agent class (useragent)
        self.client_ip = client_ip
        self.client_identity = client_identity
        self.ua_class = ua_class
        # the stored object (hit, deliver of a stored object)
        self.obj_status = obj_status
        self.obj_ttl = obj_ttl
        self.obj_age = obj_age
        self.obj_headers = obj_headers if obj_headers is not None else {}
        # the backend response (fetch)
        self.beresp_status = beresp_status
        self.beresp_headers = beresp_headers if beresp_headers is not None else {}
        self.beresp_ttl = beresp_ttl
        self.beresp_swr = beresp_swr
        self.beresp_sie = beresp_sie
        # the response to the client (deliver, error) and the cache's verdict (deliver, log)
        self.resp_status = resp_status
        self.resp_headers = resp_headers if resp_headers is not None else {}
        self.cache_state = cache_state
        # named tables and ACLs, looked up by name on every use (Tables.current)
        self.tables: Mapping[str, TableValue] = tables if tables is not None else {}
        self.limiter = limiter
        # outputs
        self.url_changed = False  # set req.url: the pipeline re-reads url/path/query
        self.edits: list[tuple[str, str, str, str]] = []
        self.overrides: dict[str, float] = {}  # "ttl" / "swr" / "sie" set in fetch
        self.surrogate_keys: list[str] = []
        self.hash_parts: list[str] = []  # hash_data(...) in hash
        self.log_lines: list[str] = []
        #: side effects run (rate-limit tokens taken): a run without any is a pure function
        #: of what the subs read, which the edge's fast path relies on
        self.effects = 0
        #: (phase, line, what) of each branch taken and action run, when tracing
        self.trace: list[tuple[str, int, str]] | None = [] if trace else None

    def __repr__(self) -> str:
        return f"<Env {self.method} {self.url}>"
