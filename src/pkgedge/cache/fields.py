"""Which response fields a shared cache stores and forwards, and which field steers it (pure).

* RFC 9213 targeted fields: ``Pkgedge-CDN-Cache-Control`` (this edge's own) and then
  ``CDN-Cache-Control``. The first with a valid, non-empty value *is* the response's cache
  policy for the edge: Cache-Control, Expires and Surrogate-Control are then ignored
  (RFC 9213 §2.1). Without one, Surrogate-Control and Cache-Control apply as
  :mod:`pkgedge.cache.policy` describes. Targeted fields are edge-only, like Surrogate-*: they
  are stored (a 304 that leaves them out must not change the edge's policy, RFC 9111 §3.2) but
  never sent to clients (:data:`pkgedge.http.response.OWN_FIELDS` removes them from every
  response head; :func:`forwarded_fields` drops them too).
* RFC 9110 §7.6.1: fields named in Connection are hop-by-hop: never forwarded nor stored.
* RFC 9111 §5.2.2.4 / §5.2.2.7: fields named by ``no-cache="..."`` or ``private="..."`` are
  not stored, so they are never reused without revalidation (the rest of the response is).
* RFC 9110 §6.6.1: a response without Date gets one (the time it was received) when it is
  stored or forwarded; an invalid Date (or several) is replaced likewise (the RFC's MAY).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pkgedge.http.cachecontrol import parse_cache_control
from pkgedge.http.dates import format_http_date, parse_http_date
from pkgedge.http.headers import EDGE_ONLY, TARGETED, Headers, as_map, end_to_end

__all__ = [
    "EDGE_ONLY",
    "TARGETED",
    "effective",
    "forwarded_fields",
    "stored_fields",
    "unstored_names",
]

#: Never stored: framing (the edge writes its own), Age (recomputed), Set-Cookie (shared).
_NOT_STORED = frozenset({"content-length", "age", "transfer-encoding", "set-cookie"})
_IGNORED_WHEN_TARGETED = frozenset({"cache-control", "expires", "surrogate-control"})


def effective(resp: Mapping[str, str]) -> Mapping[str, str]:
    """The response as the edge's cache policy reads it (RFC 9213 §2.1).

    With a targeted field holding a valid, non-empty directive list, the result has that value
    as its Cache-Control and no Expires or Surrogate-Control; otherwise ``resp`` itself.
    """
    for name in TARGETED:
        value = resp.get(name)
        if value is not None and parse_cache_control(value):
            out = {k: v for k, v in resp.items() if k not in _IGNORED_WHEN_TARGETED}
            out["cache-control"] = value
            return out
    return resp


def _names(value: str | None) -> set[str]:
    return {n.strip().lower() for n in (value or "").split(",") if n.strip()}


def unstored_names(resp: Mapping[str, str]) -> set[str]:
    """Field names a cache must not store for this response: those listed in Connection and in
    qualified ``no-cache="..."`` / ``private="..."`` (read from the effective Cache-Control)."""
    cc = parse_cache_control(effective(resp).get("cache-control"))
    return _names(resp.get("connection")) | _names(cc.get("no-cache")) | _names(cc.get("private"))


def stored_fields(headers: Iterable[tuple[str, str]], received: float) -> Headers:
    """The fields to store from a response head (lower-case names) received at ``received``."""
    headers = end_to_end(headers)
    drop = _NOT_STORED | unstored_names(as_map(headers))
    out = [(n, v) for n, v in headers if n not in drop]
    return _with_date(out, received)


def forwarded_fields(headers: Iterable[tuple[str, str]], received: float) -> Headers:
    """The fields to forward to a client from an origin response that is not stored."""
    out = [(n, v) for n, v in end_to_end(headers) if n not in EDGE_ONLY]
    return _with_date(out, received)


def _with_date(headers: Headers, received: float) -> Headers:
    dates = [v for n, v in headers if n == "date"]
    if len(dates) == 1 and parse_http_date(dates[0]) is not None:
        return headers
    # missing (MUST add), or invalid or repeated (MAY replace): the time it was received
    return [*(h for h in headers if h[0] != "date"), ("date", format_http_date(received))]
