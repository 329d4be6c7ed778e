"""Building responses for clients: heads, ranges, Cache-Status, compression (pure)."""

from __future__ import annotations

import gzip
import re

import brotli

from pkgedge.http.headers import EDGE_ONLY, REASON_FIELD, Headers, header_block, status_line

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)

#: Content types worth compressing (index pages, JSON, core metadata, text).
COMPRESSIBLE = (
    "text/",
    "application/json",
    "application/vnd.pypi.simple",
    "application/xml",
    "application/javascript",
)
MIN_COMPRESS = 256

#: Fields never sent to clients: the edge writes its own, and edge-only fields (Surrogate-*,
#: RFC 9213 targeted fields) are kept in stored objects but are for the edge alone.
OWN_FIELDS = (
    frozenset({"content-length", "age", "cache-status", "transfer-encoding", REASON_FIELD})
    | EDGE_ONLY
)


class RangeNotSatisfiable(Exception):
    pass


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """A single byte range as (first, last) inclusive, or None to send the whole object.

    ``bytes=0-99``, ``bytes=100-``, ``bytes=-500`` (suffix). Multiple ranges and anything
    unparseable are ignored (the full object is sent, as RFC 9110 §14.2 allows).
    Raises :class:`RangeNotSatisfiable` for a valid range that lies outside the object.
    """
    if not value or "," in value:
        return None
    m = _RANGE.match(value)
    if not m:
        return None
    first_s, last_s = m.groups()
    if not first_s:
        if not last_s:
            return None
        n = int(last_s)
        if n == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if last_s and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable
    return first, min(last, size - 1)


def compressible(headers: Headers) -> bool:
    ctype = ""
    for name, value in headers:
        if name == "content-encoding":
            return False
        if name == "content-type":
            ctype = value.lower()
    return ctype.startswith(COMPRESSIBLE)


def choose_encoding(accept_encoding: str | None) -> str | None:
    """``br`` if accepted, else ``gzip``, else None (q=0 excludes a coding)."""
    if not accept_encoding:
        return None
    accepted: dict[str, float] = {}
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        accepted[coding.strip().lower()] = q
    for coding in ("br", "gzip"):
        if accepted.get(coding, accepted.get("*", 0.0)) > 0:
            return coding
    return None


def compress(body: bytes, coding: str) -> bytes:
    if coding == "br":
        return bytes(brotli.compress(body, quality=5))
    return gzip.compress(body, compresslevel=6, mtime=0)


def encoded_etag(etag: str, coding: str) -> str:
    """A distinct strong validator per encoding: ``"abc"`` → ``"abc-gzip"``."""
    if etag.endswith('"'):
        return etag[:-1] + "-" + coding + '"'
    return etag


def representation(headers: Headers, coding: str | None) -> Headers:
    """The stored fields as a client gets them: ``Vary: Accept-Encoding`` on compressible
    types, and for an encoded body its Content-Encoding and its own strong ETag."""
    if not compressible(headers):
        return headers
    out = add_vary(headers, "Accept-Encoding")
    if coding is None:
        return out
    out = [*out, ("content-encoding", coding)]
    for n, v in headers:
        if n == "etag":
            out = replace_header(out, "etag", encoded_etag(v, coding))
    return out


def head_prefix(status: int, headers: Headers) -> bytes:
    """The status line and the stored fields of a response head (the edge's own fields,
    which change per request, follow it: see :func:`head_tail`)."""
    reason = next((v for n, v in headers if n == REASON_FIELD), None)
    return status_line(status, reason) + header_block(h for h in headers if h[0] not in OWN_FIELDS)


def head_tail(
    *,
    length: int | None,
    age: int | None,
    cache_status: str,
    extra: Headers = (),  # type: ignore[assignment]
    close: bool = False,
) -> bytes:
    """The per-request end of a head: extra fields, Age, Cache-Status, framing, blank line."""
    tail = list(extra) if extra else []
    if age is not None:
        tail.append(("age", str(age)))
    tail.append(("cache-status", cache_status))
    if length is None:
        tail.append(("transfer-encoding", "chunked"))
    else:
        tail.append(("content-length", str(length)))
    if close:
        tail.append(("connection", "close"))
    return header_block(tail) + b"\r\n"


def hit_head(prefix: bytes, age: int, ttl: int, length: int, close: bool) -> bytes:
    """The head of a fresh hit: ``prefix + head_tail(...)`` for Cache-Status ``pkgedge; hit;
    ttl=N``, formatted in one step (the fast path replays it; byte-identical to
    :func:`head_tail`)."""
    return b"%sage: %d\r\ncache-status: pkgedge; hit; ttl=%d\r\ncontent-length: %d\r\n%s\r\n" % (
        prefix,
        age,
        ttl,
        length,
        b"connection: close\r\n" if close else b"",
    )


def response_head(
    status: int,
    headers: Headers,
    *,
    length: int | None,
    age: int | None,
    cache_status: str,
    extra: Headers = (),  # type: ignore[assignment]
    close: bool = False,
) -> bytes:
    """Serialise a response head. ``length=None`` means chunked transfer coding."""
    return head_prefix(status, headers) + head_tail(
        length=length, age=age, cache_status=cache_status, extra=extra, close=close
    )


def replace_header(headers: Headers, name: str, value: str | None) -> Headers:
    out = [(n, v) for n, v in headers if n != name]
    if value is not None:
        out.append((name, value))
    return out


def add_vary(headers: Headers, field: str) -> Headers:
    for i, (n, v) in enumerate(headers):
        if n == "vary":
            names = [x.strip().lower() for x in v.split(",")]
            if field.lower() in names or "*" in names:
                return headers
            out = list(headers)
            out[i] = (n, v + ", " + field)
            return out
    return [*headers, ("vary", field)]


def error_response(status: int, reason: str, *, close: bool = False, extra: Headers = ()) -> bytes:  # type: ignore[assignment]
    body = (reason.rstrip("\n") + "\n").encode("utf-8")
    head = response_head(
        status,
        [("content-type", "text/plain; charset=utf-8"), ("cache-control", "no-store"), *extra],
        length=len(body),
        age=None,
        cache_status="pkgedge; fwd=bypass; detail=edge-error",
        close=close,
    )
    return head + body
