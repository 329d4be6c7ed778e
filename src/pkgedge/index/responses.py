"""The responses every origin handler builds: plain-text refusals, cacheable pages, redirects.

A refusal is one clear line of text that is also the status line's reason phrase (twine
prints only that; :mod:`pkgedge.index.reason` moves it there). A page carries the cache
policy of :mod:`pkgedge.index.cachepolicy`, its ETag and the serial it was rendered at, and
is a 304 to a matching ``If-None-Match``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from pkgedge.http.headers import REASON_FIELD, reason_phrase
from pkgedge.index import cachepolicy, simple

__all__ = ["SERIAL_HEADER", "cacheable_page", "moved", "text"]

SERIAL_HEADER = "X-PyPI-Last-Serial"


def text(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    """A plain-text error: a status and one clear reason (tools print it), which is also the
    status line's reason phrase (twine shows only that; :mod:`pkgedge.index.reason`)."""
    fields = {**cachepolicy.NO_STORE, **(headers or {})}
    if status >= 400:
        fields[REASON_FIELD] = reason_phrase(reason)
    return PlainTextResponse(reason.rstrip("\n") + "\n", status_code=status, headers=fields)


def moved(location: str) -> Response:
    """A permanent redirect to the canonical URL (a day in every cache)."""
    return Response(
        status_code=301, headers={"Location": location, "Cache-Control": "max-age=86400, public"}
    )


def cacheable_page(
    request: Request,
    body: bytes,
    media_type: str,
    keys: list[str],
    serial: int,
    *,
    edge_ttl: float,
    client_ttl: float,
    vary: bool = True,
    etag: str | None = None,
) -> Response:
    """A cacheable page with its ETag, tagged with the surrogate ``keys``; answers 304 to a
    matching If-None-Match."""
    etag = etag or simple.etag_for(body)
    headers = cachepolicy.page_headers(edge_ttl, client_ttl, keys)
    headers["ETag"] = etag
    headers[SERIAL_HEADER] = str(serial)
    if vary:
        headers["Vary"] = "Accept"
    inm = request.headers.get("if-none-match")
    if inm and etag in [t.strip() for t in inm.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
