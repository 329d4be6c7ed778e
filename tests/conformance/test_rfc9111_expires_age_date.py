"""Expires (RFC 9111 §5.3), Age (§5.1) and Date (RFC 9110 §6.6.1).

* An invalid Expires (e.g. ``0``) means "already expired"; a valid one in the future gives a
  lifetime; Cache-Control max-age outranks it (§4.2.1).
* A malformed Age is ignored; a large one is honoured (clamped at 2^31, §1.2.2), making the
  response stale at once.
* A response without Date gets one, the time it was received, when stored or forwarded.
"""

from __future__ import annotations

import time

import httpx
import pytest

from pkgedge.cache.fields import forwarded_fields, stored_fields
from pkgedge.cache.policy import freshness, initial_age, storable
from pkgedge.http.cachecontrol import DELTA_SECONDS_MAX
from pkgedge.http.dates import format_http_date, parse_http_date
from support.scripted import Reply, ScriptedOrigin, hit, http_date

NOW = 1_700_000_000.0
PATH = "/simple/e/"


# -- Expires -------------------------------------------------------------------------------


@pytest.mark.parametrize("expires", ["0", "-1", "never", "Thu, 32 Jan 2026 00:00:00 GMT", ""])
def test_rfc9111_5_3_invalid_expires_is_already_expired(expires: str) -> None:
    resp = {"date": format_http_date(NOW), "expires": expires}
    assert storable("GET", 200, {}, resp) == (True, "ok")
    fr = freshness(200, resp, response_time=NOW)
    assert fr.lifetime == 0.0 and fr.source == "expires"


def test_rfc9111_5_3_valid_expires_gives_the_lifetime_and_max_age_outranks_it() -> None:
    resp = {"date": format_http_date(NOW), "expires": format_http_date(NOW + 600)}
    assert freshness(200, resp, response_time=NOW).lifetime == 600.0
    resp["cache-control"] = "max-age=30"
    assert freshness(200, resp, response_time=NOW).lifetime == 30.0


# -- Age -----------------------------------------------------------------------------------


@pytest.mark.parametrize("age", ["abc", "-5", "1.5", "", "0x10", "١٢"])
def test_rfc9111_5_1_malformed_age_is_ignored(age: str) -> None:
    resp = {"date": format_http_date(NOW), "age": age}
    assert initial_age(resp, request_time=NOW, response_time=NOW) == 0.0


@pytest.mark.parametrize("age", ["2147483648", "99999999999999999999"])
def test_rfc9111_5_1_large_age_is_honoured_and_clamped(age: str) -> None:
    resp = {"date": format_http_date(NOW), "age": age}
    assert initial_age(resp, request_time=NOW, response_time=NOW) == float(DELTA_SECONDS_MAX)


# -- Date ----------------------------------------------------------------------------------


def test_rfc9110_6_6_1_date_is_added_when_missing_on_stored_and_forwarded() -> None:
    raw = [("content-type", "text/plain"), ("cache-control", "max-age=60")]
    for out in (stored_fields(raw, NOW), forwarded_fields(raw, NOW)):
        assert ("date", format_http_date(NOW)) in out


@pytest.mark.parametrize("bad", [["garbage"], ["0"], [format_http_date(NOW - 5)] * 2])
def test_rfc9110_6_6_1_an_invalid_date_is_replaced_by_the_time_received(bad: list[str]) -> None:
    raw = [("date", v) for v in bad] + [("x", "1")]
    for out in (stored_fields(raw, NOW), forwarded_fields(raw, NOW)):
        assert [v for n, v in out if n == "date"] == [format_http_date(NOW)]
        assert ("x", "1") in out


def test_rfc9110_6_6_1_an_origin_date_is_kept() -> None:
    origin_date = format_http_date(NOW - 100)
    raw = [("date", origin_date)]
    for out in (stored_fields(raw, NOW), forwarded_fields(raw, NOW)):
        assert [v for n, v in out if n == "date"] == [origin_date]


# -- through a real edge -------------------------------------------------------------------


@pytest.mark.parametrize("expires", ["0", "garbage"])
def test_rfc9111_5_3_edge_never_reuses_invalid_expires(
    origin: ScriptedOrigin, client: httpx.Client, expires: str
) -> None:
    origin.script("GET", PATH, Reply(200, [("Date", http_date()), ("Expires", expires)], b"x"))
    client.get(PATH)
    second = client.get(PATH)
    assert second.status_code == 200 and not hit(second)
    assert origin.count("GET", PATH) == 2


def test_rfc9111_5_3_edge_reuses_valid_future_expires(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    expires = http_date(time.time() + 3600)
    origin.script("GET", PATH, Reply(200, [("Date", http_date()), ("Expires", expires)], b"x"))
    client.get(PATH)
    assert hit(client.get(PATH))
    assert origin.count("GET", PATH) == 1


@pytest.mark.parametrize("age", ["abc", "-3", "1e3"])
def test_rfc9111_5_1_edge_ignores_malformed_age(
    origin: ScriptedOrigin, client: httpx.Client, age: str
) -> None:
    headers = [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Age", age)]
    origin.script("GET", PATH, Reply(200, headers, b"x"))
    client.get(PATH)
    second = client.get(PATH)
    assert hit(second)
    assert int(second.headers["age"]) < 3600


def test_rfc9111_5_1_edge_honours_a_huge_age(origin: ScriptedOrigin, client: httpx.Client) -> None:
    headers = [("Date", http_date()), ("Cache-Control", "max-age=3600"), ("Age", "2147483648")]
    origin.script("GET", PATH, Reply(200, headers, b"x"))
    first = client.get(PATH)
    assert int(first.headers["age"]) >= 2**31 - 1  # forwarded as the age it is
    second = client.get(PATH)
    assert not hit(second)  # already stale: fetched again
    assert origin.count("GET", PATH) == 2


def _received_between(resp: httpx.Response, before: float, after: float) -> None:
    assert "date" in resp.headers, resp.headers
    date = parse_http_date(resp.headers["date"])
    assert date is not None
    assert int(before) <= date <= after + 1


def test_rfc9110_6_6_1_edge_adds_date_to_stored_response(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    origin.script("GET", PATH, Reply(200, [("Cache-Control", "max-age=3600")], b"x"))
    before = time.time()
    first = client.get(PATH)
    after = time.time()
    _received_between(first, before, after)
    second = client.get(PATH)
    assert hit(second)
    assert second.headers["date"] == first.headers["date"]  # stored with the response


def test_rfc9110_6_6_1_edge_adds_date_to_forwarded_responses(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    origin.script("GET", PATH, Reply(200, [("Cache-Control", "no-store")], b"x"))
    origin.script("POST", PATH, Reply(201, [], b"created"))
    before = time.time()
    passed = client.get(PATH)
    posted = client.post(PATH, content=b"x")
    after = time.time()
    _received_between(passed, before, after)
    _received_between(posted, before, after)
    assert len(posted.headers.get_list("date")) == 1
