"""Header helpers shared by the server, the pipeline and the upstream client (pure)."""

from __future__ import annotations

from collections.abc import Iterable

#: RFC 9110 §7.6.1 hop-by-hop fields, never forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: Edge-only response fields: they steer the edge and are removed before clients see them.
SURROGATE = frozenset({"surrogate-control", "surrogate-key"})
#: RFC 9213 targeted cache-control fields this edge obeys, most specific first.
TARGETED = ("pkgedge-cdn-cache-control", "cdn-cache-control")
#: Every edge-only response field: stored (a 304 may leave them out), never sent to clients.
EDGE_ONLY = SURROGATE | frozenset(TARGETED)

Headers = list[tuple[str, str]]


def connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Field names listed in Connection (they are hop-by-hop too)."""
    tokens: set[str] = set()
    for name, value in headers:
        if name == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def end_to_end(headers: Iterable[tuple[str, str]]) -> Headers:
    """Drop hop-by-hop fields, including those named by Connection."""
    headers = list(headers)
    drop = HOP_BY_HOP | connection_tokens(headers)
    return [(n, v) for n, v in headers if n not in drop]


def as_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case name → value, repeated fields joined with ", " (Set-Cookie kept apart)."""
    out: dict[str, str] = {}
    for name, value in headers:
        if name in out:
            out[name] = out[name] + ", " + value
        else:
            out[name] = value
    return out


def header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialise header fields as ``name: value\\r\\n`` lines (latin-1)."""
    return "".join(f"{n}: {v}\r\n" for n, v in headers).encode("latin-1")


REASONS: dict[int, str] = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    206: "Partial Content",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


#: A response field that carries a reason phrase of its own (an explanation, e.g. why an
#: upload was refused, which twine prints): the upstream client records a non-standard
#: phrase it received under this name, an origin may set it; the status line uses it and it
#: is never sent on (``pkgedge.http.response.OWN_FIELDS``).
REASON_FIELD = "pkgedge-reason"
_REASON_MAX = 300


def reason_phrase(text: str) -> str:
    """``text`` as a reason phrase (RFC 9112: SP and visible ASCII only): the first line,
    accents dropped, other characters ``?``, runs of blanks one space, at most 300
    characters."""
    import unicodedata

    first = text.strip().split("\n", 1)[0]
    plain = unicodedata.normalize("NFKD", first)
    out = "".join(
        c if " " <= c <= "~" else (" " if c.isspace() else "?")
        for c in plain
        if not unicodedata.combining(c)
    )
    out = " ".join(out.split())
    return out if len(out) <= _REASON_MAX else out[: _REASON_MAX - 3].rstrip() + "..."


def status_line(status: int, reason: str | None = None) -> bytes:
    phrase = reason_phrase(reason) if reason else ""
    phrase = phrase or REASONS.get(status, "Unknown")
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
