"""The language's vocabulary in one place: phases, variables (type, where readable, where
writable, the :class:`~pkgedge.rules.env.Env` attribute), header scopes, functions, and which
statements and ``return`` actions each phase allows. The checker and the docs read this."""

from __future__ import annotations

from dataclasses import dataclass

from pkgedge.rules.nodes import T

__all__ = [
    "ACTION_PHASES",
    "FUNCTIONS",
    "HEADERS",
    "MANAGED_HEADERS",
    "PHASES",
    "RETURNS",
    "UA_CLASSES",
    "VARIABLES",
    "Var",
    "table",
    "where",
]

PHASES = ("recv", "hash", "hit", "miss", "pass", "fetch", "deliver", "error", "log")
_ALL = frozenset(PHASES)
_BEFORE_DELIVER = frozenset({"recv", "hash", "hit", "miss", "pass", "fetch"})
_REQ_WRITE = frozenset({"recv", "hash", "miss", "pass"})  # the request still goes somewhere

#: client.ua_class values (security/useragent.py's kinds; a unit test keeps them equal).
UA_CLASSES = (
    "pip", "uv", "poetry", "pdm", "twine", "mirror", "browser", "library", "bot", "unknown",
)  # fmt: skip
#: cache.state values.
CACHE_STATES = ("hit", "miss", "pass", "stale", "revalidated", "synthetic", "error")


@dataclass(frozen=True, slots=True)
class Var:
    type: T
    read: frozenset[str]
    write: frozenset[str]
    attr: str  # the Env attribute
    doc: str


def _v(t: T, read: frozenset[str], attr: str, doc: str, write: frozenset[str] = frozenset()) -> Var:
    return Var(t, read, write, attr, doc)


_OBJ = frozenset({"hit", "deliver"})
_FETCH = frozenset({"fetch"})
_RESP = frozenset({"deliver", "error"})

VARIABLES: dict[str, Var] = {
    "req.method": _v(T.STRING, _ALL, "method", "request method"),
    "req.url": _v(T.STRING, _ALL, "url", "target: path and query", frozenset({"recv"})),
    "req.path": _v(T.STRING, _ALL, "path", "target before '?'"),
    "req.query": _v(T.STRING, _ALL, "query", "target after '?' (empty if none)"),
    "req.backend": _v(T.STRING, _ALL, "backend", "backend to fetch from", _REQ_WRITE),
    "req.restarts": _v(T.INT, _ALL, "restarts", "restarts so far"),
    "client.ip": _v(T.STRING, _ALL, "client_ip", "client address"),
    "client.identity": _v(T.STRING, _ALL, "client_identity", "address or IPv6 /64 (trusted XFF)"),
    "client.ua_class": _v(T.STRING, _ALL, "ua_class", "User-Agent class: " + ", ".join(UA_CLASSES)),
    "obj.status": _v(T.INT, _OBJ, "obj_status", "stored status (0: no stored object)"),
    "obj.ttl": _v(T.DURATION, _OBJ, "obj_ttl", "remaining freshness (negative: stale)"),
    "obj.age": _v(T.DURATION, _OBJ, "obj_age", "age of the stored object"),
    "beresp.status": _v(T.INT, _FETCH, "beresp_status", "backend response status"),
    "beresp.ttl": _v(T.DURATION, _FETCH, "beresp_ttl", "freshness lifetime to store", _FETCH),
    "beresp.swr": _v(T.DURATION, _FETCH, "beresp_swr", "stale-while-revalidate window", _FETCH),
    "beresp.sie": _v(T.DURATION, _FETCH, "beresp_sie", "stale-if-error window", _FETCH),
    "resp.status": _v(T.INT, _RESP | {"log"}, "resp_status", "status sent to the client", _RESP),
    "cache.state": _v(
        T.STRING, frozenset({"deliver", "log"}), "cache_state", ", ".join(CACHE_STATES)
    ),
}

#: ``<scope>.http.<name>`` → (readable, writable, Env attribute, edit scope).
HEADERS: dict[str, Var] = {
    "req": _v(T.STRING, _ALL, "req_headers", "request header", _REQ_WRITE),
    "obj": _v(T.STRING, _OBJ, "obj_headers", "stored response header"),
    "beresp": _v(T.STRING, _FETCH, "beresp_headers", "backend response header", _FETCH),
    "resp": _v(T.STRING, _RESP, "resp_headers", "response header", _RESP),
}

#: Header fields the edge manages itself (framing, hop-by-hop): rules cannot change them.
MANAGED_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
     "trailer", "proxy-connection", "host"}
)  # fmt: skip

#: function → (argument types, result type). ``regsub``/``regsuball`` take a literal regex
#: and a literal replacement; ``defined`` takes a header.
FUNCTIONS: dict[str, tuple[tuple[T, ...], T]] = {
    "lower": ((T.STRING,), T.STRING),
    "upper": ((T.STRING,), T.STRING),
    "len": ((T.STRING,), T.INT),
    "starts_with": ((T.STRING, T.STRING), T.BOOL),
    "ends_with": ((T.STRING, T.STRING), T.BOOL),
    "contains": ((T.STRING, T.STRING), T.BOOL),
    "regsub": ((T.STRING, T.STRING, T.STRING), T.STRING),
    "regsuball": ((T.STRING, T.STRING, T.STRING), T.STRING),
    "defined": ((T.STRING,), T.BOOL),
}

#: ``return(action)`` allowed per phase.
RETURNS: dict[str, frozenset[str]] = {
    "recv": frozenset({"pass", "lookup"}),
    "hash": frozenset({"lookup"}),
    "hit": frozenset({"deliver", "pass", "fetch"}),
    "miss": frozenset({"fetch", "pass"}),
    "pass": frozenset({"fetch"}),
    "fetch": frozenset({"deliver", "pass", "restart"}),
    "deliver": frozenset({"deliver", "restart"}),
    "error": frozenset({"deliver", "restart"}),
    "log": frozenset(),
}

#: statement → the phases it is allowed in.
ACTION_PHASES: dict[str, frozenset[str]] = {
    "error": _BEFORE_DELIVER,
    "block": _BEFORE_DELIVER,
    "synthetic": _BEFORE_DELIVER | {"error"},
    "redirect": _BEFORE_DELIVER | {"error"},
    "ratelimit": frozenset({"recv", "miss", "pass"}),
    "restart": frozenset({"fetch", "deliver", "error"}),
    "add": _FETCH,
    "hash_data": frozenset({"hash"}),
    "log": _ALL,
}


def where(phases: frozenset[str] | set[str]) -> str:
    """Phases in pipeline order, for messages."""
    return ", ".join(p for p in PHASES if p in phases) or "no sub"


def table() -> str:
    """The variables as a Markdown table (docs/architecture.md holds a copy)."""
    rows = ["| variable | type | read in | set in | meaning |", "|---|---|---|---|---|"]

    def phases(ps: frozenset[str]) -> str:
        return "all" if ps == _ALL else ", ".join(p for p in PHASES if p in ps) or "—"

    for name, v in VARIABLES.items():
        rows.append(f"| `{name}` | {v.type} | {phases(v.read)} | {phases(v.write)} | {v.doc} |")
    for scope, v in HEADERS.items():
        rows.append(
            f"| `{scope}.http.NAME` | string | {phases(v.read)} | {phases(v.write)} | {v.doc} |"
        )
    return "\n".join(rows)
