"""Ranges (RFC 9110 §14) and If-Range (§13.1.5) at the edge.

The edge fetches whole objects (a fill never forwards Range) and answers ranges itself from
what it stored. If-Range with an entity tag uses the strong comparison (a weak tag on either
side never matches); with a date it must equal Last-Modified exactly and Last-Modified must be
strong (at least a second before Date, §8.8.2.2). When If-Range does not match, the whole
representation is sent (200). A 206 the origin sends anyway is passed to that client but never
stored (RFC 9111 §3.3 allows storing it; the edge keeps whole objects only).
"""

from __future__ import annotations

import time

import httpx
import pytest

from pkgedge.cache.policy import if_range_matches, storable
from pkgedge.http.dates import format_http_date
from support.scripted import Reply, ScriptedOrigin, hit, http_date

PATH = "/simple/r/"
BODY = b"0123456789"
NOW = 1_700_000_000.0
MODIFIED = format_http_date(NOW - 86400)
STORED = {"etag": '"abc"', "last-modified": MODIFIED, "date": format_http_date(NOW)}


# -- the pure comparison -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_range", "resp", "matches"),
    [
        ('"abc"', STORED, True),
        ('"abd"', STORED, False),
        ('W/"abc"', STORED, False),  # weak tags never match strongly
        ('W/"abc"', {**STORED, "etag": 'W/"abc"'}, False),
        ('"abc"', {**STORED, "etag": 'W/"abc"'}, False),
        ('"abc", "def"', STORED, False),  # If-Range holds one validator
        (MODIFIED, STORED, True),
        (format_http_date(NOW - 86399), STORED, False),  # not an exact match
        (MODIFIED, {**STORED, "date": MODIFIED}, False),  # Last-Modified not strong
        (MODIFIED, {"last-modified": MODIFIED}, True),  # no Date: taken as strong
        ("not a date", STORED, False),
    ],
)
def test_rfc9110_13_1_5_if_range(if_range: str, resp: dict[str, str], matches: bool) -> None:
    assert if_range_matches(if_range, resp) is matches


def test_rfc9111_3_3_a_206_is_not_stored() -> None:
    resp = {"cache-control": "max-age=60", "content-range": "bytes 0-3/10"}
    assert storable("GET", 206, {}, resp) == (False, "status")


# -- through a real edge -------------------------------------------------------------------


def _stored(origin: ScriptedOrigin, client: httpx.Client, etag: str = '"abc"') -> str:
    """Store BODY at the edge; return its Last-Modified (a day before its Date)."""
    now = time.time()
    modified = http_date(now - 86400)
    headers = [
        ("Date", http_date(now)),
        ("Cache-Control", "max-age=3600"),
        ("ETag", etag),
        ("Last-Modified", modified),
        ("Content-Type", "application/octet-stream"),
    ]
    origin.script("GET", PATH, Reply(200, headers, BODY))
    client.get(PATH)
    return modified


def test_rfc9110_14_edge_fetches_whole_objects_and_answers_ranges_itself(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    origin.script("GET", PATH, Reply(200, [("Cache-Control", "max-age=3600")], BODY))
    first = client.get(PATH, headers={"Range": "bytes=2-4"})
    assert origin.requests("GET", PATH)[0].get("range") is None
    assert first.status_code == 206 and first.content == b"234"
    second = client.get(PATH, headers={"Range": "bytes=-3"})
    assert hit(second) and second.status_code == 206 and second.content == b"789"
    assert second.headers["content-range"] == "bytes 7-9/10"


@pytest.mark.parametrize(
    ("if_range", "partial"),
    [('"abc"', True), ('"zzz"', False), ('W/"abc"', False)],
)
def test_rfc9110_13_1_5_edge_if_range_entity_tag_strong_comparison(
    origin: ScriptedOrigin, client: httpx.Client, if_range: str, partial: bool
) -> None:
    _stored(origin, client)
    resp = client.get(PATH, headers={"Range": "bytes=0-3", "If-Range": if_range})
    assert hit(resp)
    if partial:
        assert resp.status_code == 206 and resp.content == b"0123"
        assert resp.headers["content-range"] == "bytes 0-3/10"
    else:
        assert resp.status_code == 200 and resp.content == BODY
        assert "content-range" not in resp.headers


def test_rfc9110_13_1_5_edge_weak_stored_etag_never_matches(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _stored(origin, client, etag='W/"abc"')
    resp = client.get(PATH, headers={"Range": "bytes=0-3", "If-Range": 'W/"abc"'})
    assert resp.status_code == 200 and resp.content == BODY


def test_rfc9110_13_1_5_edge_if_range_date(origin: ScriptedOrigin, client: httpx.Client) -> None:
    modified = _stored(origin, client)
    same = client.get(PATH, headers={"Range": "bytes=0-3", "If-Range": modified})
    assert same.status_code == 206 and same.content == b"0123"
    other = client.get(
        PATH, headers={"Range": "bytes=0-3", "If-Range": http_date(time.time() - 7200)}
    )
    assert other.status_code == 200 and other.content == BODY


def test_rfc9110_14_edge_passes_an_origin_206_but_does_not_store_it(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    headers = [
        ("Date", http_date()),
        ("Cache-Control", "max-age=3600"),
        ("Content-Range", "bytes 0-3/10"),
    ]
    origin.script("GET", PATH, Reply(206, headers, b"0123"))
    first = client.get(PATH)
    assert first.status_code == 206 and first.content == b"0123"
    assert first.headers["content-range"] == "bytes 0-3/10"
    second = client.get(PATH)
    assert second.status_code == 206 and not hit(second)
    assert origin.count("GET", PATH) == 2
