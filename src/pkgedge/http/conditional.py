"""Conditional requests: If-None-Match, If-Modified-Since (RFC 9110 §13.1.2/§13.1.3) and
If-Range (§13.1.5), against a stored response's validators. Pure.

Headers are ``Mapping[str, str]`` with lower-case names and repeated fields comma-joined.
"""

from __future__ import annotations

from collections.abc import Mapping

from pkgedge.http.dates import parse_http_date

__all__ = ["client_not_modified", "etag_of", "if_range_matches"]

_METHODS = frozenset({"GET", "HEAD"})


def _date(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    return None if value is None else parse_http_date(value)


def _etags(value: str) -> list[tuple[bool, str]]:
    """Entity tags in a field value → [(weak, opaque)]. Commas inside quotes are kept; a bare
    (unquoted) tag from a non-conforming peer is taken as its own opaque value."""
    tags: list[tuple[bool, str]] = []
    i, n = 0, len(value)
    while i < n:
        if value[i] in " \t,":
            i += 1
            continue
        weak = value.startswith(("W/", "w/"), i)
        if weak:
            i += 2
        if i < n and value[i] == '"':
            end = value.find('"', i + 1)
            end = n if end < 0 else end
            tags.append((weak, value[i + 1 : end]))
            i = end + 1
        else:
            end = value.find(",", i)
            end = n if end < 0 else end
            tags.append((weak, value[i:end].strip()))
            i = end
    return tags


def etag_of(resp: Mapping[str, str]) -> tuple[bool, str] | None:
    """The response's entity tag as (weak, opaque), or None."""
    tags = _etags(resp.get("etag", ""))
    return tags[0] if tags else None


def client_not_modified(method: str, req: Mapping[str, str], resp: Mapping[str, str]) -> bool:
    """RFC 9110 §13.1.2/§13.1.3: should this GET/HEAD be answered with 304?

    If-None-Match uses weak comparison (``*`` matches any stored response); If-Modified-Since is
    looked at only without If-None-Match. The caller applies this to 2xx responses only.
    """
    if method not in _METHODS:
        return False
    inm = req.get("if-none-match", "").strip()
    if inm:
        if inm == "*":
            return True
        etag = etag_of(resp)
        return etag is not None and any(opaque == etag[1] for _, opaque in _etags(inm))
    since = _date(req, "if-modified-since")
    modified = _date(resp, "last-modified")
    return since is not None and modified is not None and modified <= since


def if_range_matches(if_range: str, resp: Mapping[str, str]) -> bool:
    """RFC 9110 §13.1.5: may a Range be honoured for this If-Range value?

    An entity tag must match strongly (weak tags never match). A date must equal Last-Modified
    exactly, and Last-Modified must be strong: at least one second before Date when Date is
    present (RFC 9110 §8.8.2.2).
    """
    value = if_range.strip()
    if value.startswith(('"', 'W/"', 'w/"')):
        tags = _etags(value)
        etag = etag_of(resp)
        if len(tags) != 1 or tags[0][0] or etag is None or etag[0]:
            return False
        return tags[0][1] == etag[1]
    since = parse_http_date(value)
    modified = _date(resp, "last-modified")
    if since is None or modified is None or since != modified:
        return False
    date = _date(resp, "date")
    return date is None or date - modified >= 1.0
