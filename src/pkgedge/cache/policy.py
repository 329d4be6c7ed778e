"""Shared-cache policy: RFC 9111, RFC 5861 (stale-*) and Surrogate-Control. Pure functions.

Headers are ``Mapping[str, str]`` with lower-case names and repeated fields comma-joined; times
are plain float seconds passed in by the caller (no clock is read here).

Choices where the RFCs leave room:

* RFC 9213 targeted fields come first: ``Pkgedge-CDN-Cache-Control``, then ``CDN-Cache-Control``
  (:func:`pkgedge.cache.fields.effective`). The first with a valid, non-empty value replaces
  Cache-Control, and Expires and Surrogate-Control are then ignored. Targeted fields and
  Surrogate-* are edge-only: stored (a 304 may leave them out), never sent to clients.
* Surrogate-Control (edge-only, used when no targeted field is) outranks Cache-Control for the
  lifetime and stale-* windows; an invalid Surrogate-Control ``max-age`` is ignored (as RFC 9213
  does for targeted fields), an invalid ``max-age``/``s-maxage``/``Expires`` makes the response
  already stale (§4.2.1, §5.3).
* must-revalidate, proxy-revalidate and s-maxage (§5.2.2.10) forbid serving stale, except in
  stale-while-revalidate/stale-if-error windows the origin sent explicitly (RFC 5861 §4,
  "regardless of other freshness information"). ``Freshness.swr``/``sie`` are therefore non-zero
  only when explicit, and are authoritative; callers adding a configured default window must do
  so only when ``must_revalidate`` is false. ``max-stale`` never beats must_revalidate/no_cache.
* A bare ``private`` is unstorable. ``private="f"`` (§5.2.2.7) and ``no-cache="f"`` (§5.2.2.4)
  with field names neither forbid storing nor set ``no_cache``: the named fields are dropped
  from what is stored (:func:`pkgedge.cache.fields.stored_fields`), so they are never reused
  (the client whose request filled the cache does not get them either). A no-cache response
  with no other freshness is stored only with a validator, as it is only ever reused through a
  conditional request.
* ``must-understand`` (§5.2.2.3): with a status in :data:`UNDERSTOOD_STATUSES` the response's
  own ``no-store`` is ignored; with any other status it is never stored. Surrogate-Control
  ``no-store`` and request ``no-store`` still forbid storing.
* A 206 is never stored (the edge fetches whole objects and answers ranges itself); a 206 the
  origin sends anyway is passed to that client only.
* A 304 updates every stored field except framing (Content-Length, -Encoding, -Range),
  hop-by-hop and Connection-named fields, Set-Cookie and the fields its ``no-cache="f"`` /
  ``private="f"`` name; so does a revalidation the client asked for (``max-age=0``, ``no-cache``).
  A 304 whose entity tag is not the stored one's (§4.3.4) updates nothing: the object is
  fetched again, unconditionally. A 304 without an entity tag updates the stored response
  the edge asked about (stricter: only when that response has no validator either).
* Heuristic and default lifetimes apply to :data:`HEURISTIC_STATUSES` only, even when ``public``.
* Set-Cookie from a 304 is never merged into a stored response (it would be shared).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from pkgedge.cache.fields import effective
from pkgedge.http.cachecontrol import DELTA_SECONDS_MAX, delta_seconds, parse_cache_control
from pkgedge.http.conditional import client_not_modified, etag_of, if_range_matches
from pkgedge.http.dates import parse_http_date
from pkgedge.http.headers import HOP_BY_HOP

__all__ = [
    "HEURISTIC_STATUSES",
    "UNDERSTOOD_STATUSES",
    "Freshness",
    "RequestDirectives",
    "Verdict",
    "can_serve_stale_on_error",
    "client_not_modified",
    "conditional_headers",
    "freshness",
    "if_range_matches",
    "initial_age",
    "lookup_verdict",
    "merge_not_modified",
    "not_modified_selects",
    "request_directives",
    "stale_on_error",
    "storable",
]

#: RFC 9110 §15.1: status codes that are heuristically cacheable.
HEURISTIC_STATUSES: frozenset[int] = frozenset(
    {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}
)

#: RFC 9111 §5.2.2.3: final statuses whose caching requirements this cache implements (all
#: of RFC 9110 §15 except 206, which it never stores, and 304, which updates instead).
UNDERSTOOD_STATUSES: frozenset[int] = frozenset(
    {200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 307, 308}
    | set(range(400, 418))
    | {421, 422, 426, 500, 501, 502, 503, 504, 505}
)

_METHODS = frozenset({"GET", "HEAD"})
_HEURISTIC_FRACTION = 0.1  # RFC 9111 §4.2.2: "10% of the time since modification"
_HEURISTIC_CAP = 86400.0
#: RFC 9111 §3.2: never updated from a 304 (we keep the stored values).
_KEEP_STORED = HOP_BY_HOP | {"content-length", "content-encoding", "content-range"}
_NEVER_MERGE = frozenset({"set-cookie"})


@dataclass(frozen=True, slots=True)
class Freshness:
    """What a response's headers say about reusing it (all durations in seconds)."""

    lifetime: float
    swr: float
    sie: float
    must_revalidate: bool
    no_cache: bool
    heuristic: bool
    source: str


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    """Request Cache-Control (RFC 9111 §5.2.1); ``max_stale`` is 2^31 for a bare max-stale."""

    no_cache: bool
    no_store: bool
    max_age: int | None
    max_stale: int | None
    min_fresh: int | None
    only_if_cached: bool


class Verdict(enum.Enum):
    """What to do with a stored response for one request."""

    FRESH = "fresh"
    STALE_REVALIDATE_BACKGROUND = "stale-revalidate-background"
    REVALIDATE = "revalidate"


def _cc(headers: Mapping[str, str]) -> dict[str, str | None]:
    return parse_cache_control(headers.get("cache-control"))


def _sc(headers: Mapping[str, str]) -> dict[str, str | None]:
    return parse_cache_control(headers.get("surrogate-control"))


def _date(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    return None if value is None else parse_http_date(value)


def storable(
    method: str,
    status: int,
    req: Mapping[str, str],
    resp: Mapping[str, str],
    *,
    default_ttl: float = 0.0,
) -> tuple[bool, str]:
    """RFC 9111 §3 for a shared cache: may this response be stored? → (decision, reason)."""
    if method not in _METHODS:
        return False, "method"
    # 1xx are not final, 206 is partial (we store full objects), 304 updates instead (§4.3.4).
    if status < 200 or status > 599 or status in (206, 304):
        return False, "status"
    resp = effective(resp)
    cc, sc = _cc(resp), _sc(resp)
    understood = "must-understand" in cc and status in UNDERSTOOD_STATUSES
    if "must-understand" in cc and not understood:
        return False, "must-understand"  # §5.2.2.3
    if "no-store" in _cc(req) or ("no-store" in cc and not understood) or "no-store" in sc:
        return False, "no-store"
    if "private" in cc and not (cc["private"] or "").strip():
        return False, "private"  # private="f": stored without f (cache/fields.py)
    if "authorization" in req and not (
        "public" in cc or "s-maxage" in cc or "must-revalidate" in cc
    ):
        return False, "authorization"  # §3.5
    if "set-cookie" in resp:
        return False, "set-cookie"
    if "*" in (v.strip() for v in resp.get("vary", "").split(",")):
        return False, "vary-star"  # §4.1: a Vary of * never matches
    explicit = (
        delta_seconds(sc.get("max-age")) is not None
        or "s-maxage" in cc
        or "max-age" in cc
        or "expires" in resp
    )
    if explicit or "public" in cc:
        return True, "ok"
    if status in HEURISTIC_STATUSES:
        if _date(resp, "last-modified") is not None or default_ttl > 0:
            return True, "ok"
        if ("no-cache" in cc or "no-cache" in sc) and resp.get("etag", "").strip():
            return True, "ok"  # (a valid Last-Modified was accepted just above)
    return False, "no-freshness"


def _lifetime(
    status: int,
    resp: Mapping[str, str],
    *,
    cc: dict[str, str | None],
    sc: dict[str, str | None],
    date: float,
    default_ttl: float,
) -> tuple[float, str]:
    """RFC 9111 §4.2.1 (with Surrogate-Control first) and §4.2.2 → (lifetime, source)."""
    surrogate = delta_seconds(sc.get("max-age"))
    if surrogate is not None:
        return float(surrogate), "surrogate-control"
    for name in ("s-maxage", "max-age"):
        if name in cc:
            value = delta_seconds(cc[name])
            return (0.0 if value is None else float(value)), name
    if "expires" in resp:
        expires = _date(resp, "expires")
        return (0.0 if expires is None else max(0.0, expires - date)), "expires"
    if status in HEURISTIC_STATUSES:
        modified = _date(resp, "last-modified")
        if modified is not None:
            # RFC 9110 §8.8.2.1: a Last-Modified later than Date is taken as Date.
            since = max(0.0, date - modified)
            return min(since * _HEURISTIC_FRACTION, _HEURISTIC_CAP), "heuristic"
        if default_ttl > 0:
            return float(default_ttl), "default"
    return 0.0, "none"


def _window(name: str, cc: dict[str, str | None], sc: dict[str, str | None]) -> float:
    """An RFC 5861 window, Surrogate-Control first; 0 when not (validly) given."""
    for directives in (sc, cc):
        if name in directives:
            value = delta_seconds(directives[name])
            if value is not None:
                return float(value)
    return 0.0


def freshness(
    status: int,
    resp: Mapping[str, str],
    *,
    response_time: float,
    default_ttl: float = 0.0,
) -> Freshness:
    """Freshness lifetime, stale windows and revalidation flags of a response.

    Precedence: Surrogate-Control ``max-age`` > ``s-maxage`` > ``max-age`` > ``Expires - Date``
    > heuristic (10% of ``Date - Last-Modified``, ≤ 1 day) > ``default_ttl``; the last two only
    for :data:`HEURISTIC_STATUSES`. A missing or invalid Date is taken as ``response_time``.
    """
    resp = effective(resp)
    cc, sc = _cc(resp), _sc(resp)
    date = _date(resp, "date")
    if date is None:
        date = response_time
    lifetime, source = _lifetime(status, resp, cc=cc, sc=sc, date=date, default_ttl=default_ttl)
    must_revalidate = "must-revalidate" in cc or "proxy-revalidate" in cc or "s-maxage" in cc
    swr = _window("stale-while-revalidate", cc, sc)
    sie = _window("stale-if-error", cc, sc)
    # Only windows the origin sent exist: without them stale is never served, which is also what
    # must_revalidate demands. Explicit windows apply even under must_revalidate (see module doc).
    qualifier = cc.get("no-cache")
    no_cache = ("no-cache" in cc and not (qualifier or "").strip()) or "no-cache" in sc
    heuristic = source in ("heuristic", "default")
    return Freshness(lifetime, swr, sie, must_revalidate, no_cache, heuristic, source)


def initial_age(resp: Mapping[str, str], *, request_time: float, response_time: float) -> float:
    """RFC 9111 §4.2.3 ``corrected_initial_age``; add ``now - response_time`` for current_age.

    A missing or invalid Date gives an apparent age of 0; a missing or invalid Age counts as 0
    (with repeated Age fields the first wins). A negative response delay is taken as 0.
    """
    date = _date(resp, "date")
    apparent_age = 0.0 if date is None else max(0.0, response_time - date)
    age_value = delta_seconds(resp.get("age", "").split(",")[0]) or 0
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = age_value + response_delay
    return max(apparent_age, corrected_age_value)


def request_directives(req: Mapping[str, str]) -> RequestDirectives:
    """RFC 9111 §5.2.1; ``Pragma: no-cache`` counts only without Cache-Control (§5.4).

    Directives with an invalid argument are ignored.
    """
    cc = _cc(req)
    no_cache = "no-cache" in cc
    if not cc and "no-cache" in (t.strip().lower() for t in req.get("pragma", "").split(",")):
        no_cache = True
    max_stale: int | None = None
    if "max-stale" in cc:
        raw = cc["max-stale"]
        max_stale = DELTA_SECONDS_MAX if raw is None else delta_seconds(raw)
    return RequestDirectives(
        no_cache=no_cache,
        no_store="no-store" in cc,
        max_age=delta_seconds(cc.get("max-age")),
        max_stale=max_stale,
        min_fresh=delta_seconds(cc.get("min-fresh")),
        only_if_cached="only-if-cached" in cc,
    )


def lookup_verdict(
    age: float, fr: Freshness, rd: RequestDirectives, *, soft_purged: bool = False
) -> tuple[Verdict, str]:
    """Decide how to answer from a stored response of current age ``age`` → (verdict, reason).

    Fresh means ``age < lifetime`` (RFC 9111 §4.2); a soft-purged object counts as stale with
    ``age >= lifetime``. A stale object is served while revalidating in the background when
    ``age < lifetime + swr`` (RFC 5861 §3) and the request accepts stale (no ``max-age`` without
    ``max-stale``, no ``min-fresh``). Request ``max-stale`` serves it without revalidation (reason
    ``"max-stale"``) unless ``must_revalidate``. ``REVALIDATE`` means a conditional request to
    the origin; an ``only-if-cached`` request should then get a 504 from the caller.
    """
    if rd.no_cache:
        return Verdict.REVALIDATE, "request-no-cache"
    if rd.max_age == 0:
        return Verdict.REVALIDATE, "request-max-age=0"
    if fr.no_cache:
        return Verdict.REVALIDATE, "no-cache"
    eff = max(age, fr.lifetime) if soft_purged else age
    if rd.max_age is not None and eff > rd.max_age:
        return Verdict.REVALIDATE, "request-max-age"
    if eff < fr.lifetime:
        if rd.min_fresh is not None and fr.lifetime - eff < rd.min_fresh:
            return Verdict.REVALIDATE, "request-min-fresh"
        return Verdict.FRESH, "fresh"
    accepts_stale = rd.min_fresh is None and (rd.max_age is None or rd.max_stale is not None)
    if accepts_stale and eff < fr.lifetime + fr.swr:
        return Verdict.STALE_REVALIDATE_BACKGROUND, "soft-purged" if soft_purged else "swr"
    if (
        accepts_stale
        and rd.max_stale is not None
        and not fr.must_revalidate
        and eff - fr.lifetime <= rd.max_stale
    ):
        return Verdict.FRESH, "max-stale"
    return Verdict.REVALIDATE, "soft-purged" if soft_purged else "stale"


def can_serve_stale_on_error(age: float, fr: Freshness) -> bool:
    """RFC 5861 §4: may the stored response answer when the origin fails? (``age < lifetime +
    sie``). A ``no-cache`` response needs an explicit ``stale-if-error`` for this."""
    if fr.no_cache and fr.sie <= 0:
        return False
    return age < fr.lifetime + fr.sie


def stale_on_error(age: float, fr: Freshness, grace: float) -> str | None:
    """Why the stored response may answer when the origin fails (unreachable, timed out,
    5xx), or None: ``"stale-if-error"`` within the origin's window, else ``"grace"`` within the
    edge's configured grace past the lifetime (``math.inf``: no limit). No grace for
    must-revalidate / proxy-revalidate / s-maxage or no-cache (RFC 9111 §5.2.2.2: an error)."""
    if can_serve_stale_on_error(age, fr):
        return "stale-if-error"
    if fr.must_revalidate or fr.no_cache or age >= fr.lifetime + grace:
        return None
    return "grace"


def conditional_headers(stored: Mapping[str, str]) -> dict[str, str]:
    """RFC 9111 §4.3.1 validators for revalidating ``stored``: send both when both exist."""
    out: dict[str, str] = {}
    etag = stored.get("etag", "").strip()
    if etag:
        out["if-none-match"] = etag
    modified = stored.get("last-modified", "").strip()
    if modified and parse_http_date(modified) is not None:
        out["if-modified-since"] = modified
    return out


def not_modified_selects(stored: Mapping[str, str], fresh304: Mapping[str, str]) -> bool:
    """RFC 9111 §4.3.4: does a 304 update the stored response it revalidated?

    With a strong entity tag the stored one must be the same strong tag; with a weak one the
    opaque tags must match (weak comparison). A 304 without an entity tag updates it: the
    edge's conditional request carried only this stored response's validators (the RFC's
    stricter rule for validator-less 304s would refetch for origins that omit them).
    """
    new = etag_of(fresh304)
    if new is None:
        return True
    old = etag_of(stored)
    return old is not None and old[1] == new[1] and (new[0] or not old[0])


def merge_not_modified(
    stored: list[tuple[str, str]], fresh304: Mapping[str, str]
) -> list[tuple[str, str]]:
    """RFC 9111 §3.2/§4.3.4: update stored header fields from a 304.

    A 304 field replaces all stored fields of its name (at the first one's place), except
    Content-Length/-Encoding/-Range, hop-by-hop fields (also those its Connection lists) and
    Set-Cookie. Stored order is kept; fields new in the 304 are appended.
    """
    connection = {t.strip().lower() for t in fresh304.get("connection", "").split(",")}
    updates: dict[str, str] = {}
    for name, value in fresh304.items():
        lname = name.lower()
        if lname in _KEEP_STORED or lname in _NEVER_MERGE or lname in connection:
            continue
        updates[lname] = value
    out: list[tuple[str, str]] = []
    done: set[str] = set()
    for name, value in stored:
        if name in updates:
            if name not in done:
                out.append((name, updates[name]))
                done.add(name)
            continue
        out.append((name, value))
    out.extend((name, value) for name, value in updates.items() if name not in done)
    return out
