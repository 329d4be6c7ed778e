"""Which fields the edge stores, forwards and obeys.

* RFC 9110 §7.6.1: fields named in Connection are hop-by-hop: never forwarded (either
  direction) nor stored.
* RFC 9111 §5.2.2.4 ``no-cache="f"`` and §5.2.2.7 ``private="f"``: the named fields are not
  stored (so never reused without revalidation); the rest of the response is. A bare
  ``private`` is not stored by a shared cache.
* RFC 9111 §5.2.2.3 ``must-understand``: with a status the cache understands, ``no-store`` is
  ignored; with a status it does not, the response is not stored.
* RFC 9213 targeted fields: ``Pkgedge-CDN-Cache-Control``, then ``CDN-Cache-Control``, replace
  Cache-Control (and Expires, Surrogate-Control) for the edge; they never reach clients.
"""

from __future__ import annotations

import httpx
import pytest

from pkgedge.cache.fields import effective, stored_fields, unstored_names
from pkgedge.cache.policy import UNDERSTOOD_STATUSES, freshness, storable
from pkgedge.http.headers import as_map
from support.scripted import Reply, ScriptedOrigin, hit, http_date

PATH = "/simple/f/"
EDGE_ONLY = ("pkgedge-cdn-cache-control", "cdn-cache-control", "surrogate-control")


def _serve(origin: ScriptedOrigin, headers: list[tuple[str, str]], status: int = 200) -> None:
    origin.script("GET", PATH, Reply(status, [("Date", http_date()), *headers], b"body"))


def _twice(origin: ScriptedOrigin, client: httpx.Client) -> tuple[httpx.Response, httpx.Response]:
    first = client.get(PATH)
    second = client.get(PATH)
    return first, second


# -- Connection (RFC 9110 §7.6.1) ----------------------------------------------------------


def test_rfc9110_7_6_1_connection_named_fields_are_not_stored() -> None:
    raw = [("connection", "X-Hop, keep-alive"), ("x-hop", "1"), ("keep-alive", "t=5"), ("a", "1")]
    assert [n for n, _ in stored_fields(raw, 0.0)] == ["a", "date"]


def test_rfc9110_7_6_1_edge_drops_connection_named_response_fields(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _serve(origin, [("Cache-Control", "max-age=3600"), ("Connection", "X-Hop"), ("X-Hop", "1")])
    first, second = _twice(origin, client)
    assert hit(second)
    for resp in (first, second):
        assert "x-hop" not in resp.headers
    origin.script("POST", PATH, Reply(200, [("Connection", "X-Hop"), ("X-Hop", "1")], b"ok"))
    assert "x-hop" not in client.post(PATH, content=b"x").headers


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_rfc9110_7_6_1_edge_drops_connection_named_request_fields(
    origin: ScriptedOrigin, client: httpx.Client, method: str
) -> None:
    origin.script(method, PATH, Reply(200, [("Cache-Control", "no-store")], b"ok"))
    client.request(
        method,
        PATH,
        headers={"Connection": "X-Req-Hop", "X-Req-Hop": "secret", "X-Kept": "1"},
        content=b"x" if method == "POST" else None,
    )
    seen = origin.requests(method, PATH)[0]
    assert seen.get("x-req-hop") is None
    assert seen.get("x-kept") == "1"


# -- qualified no-cache / private (RFC 9111 §5.2.2.4, §5.2.2.7) ------------------------------


@pytest.mark.parametrize(
    "cc",
    ['max-age=60, no-cache="X-Secret, X-Other"', 'max-age=60, private="x-secret,X-OTHER"'],
)
def test_rfc9111_5_2_2_4_and_5_2_2_7_named_fields_are_not_stored(cc: str) -> None:
    raw = [("cache-control", cc), ("x-secret", "s"), ("x-other", "o"), ("x-public", "p")]
    assert storable("GET", 200, {}, as_map(raw)) == (True, "ok")
    assert unstored_names(as_map(raw)) >= {"x-secret", "x-other"}
    kept = as_map(stored_fields(raw, 0.0))
    assert "x-secret" not in kept and "x-other" not in kept and kept["x-public"] == "p"
    # a qualified no-cache does not make the whole response need revalidation
    assert not freshness(200, as_map(raw), response_time=0.0).no_cache


@pytest.mark.parametrize(
    "cc", ['max-age=3600, no-cache="X-Secret"', 'max-age=3600, private="X-Secret"']
)
def test_rfc9111_5_2_2_4_and_5_2_2_7_edge_reuses_the_rest_without_named_fields(
    origin: ScriptedOrigin, client: httpx.Client, cc: str
) -> None:
    _serve(origin, [("Cache-Control", cc), ("X-Secret", "s"), ("X-Public", "p")])
    _, second = _twice(origin, client)
    assert hit(second) and origin.count("GET", PATH) == 1
    assert "x-secret" not in second.headers
    assert second.headers["x-public"] == "p"


def test_rfc9111_5_2_2_7_edge_never_stores_bare_private(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _serve(origin, [("Cache-Control", "private, max-age=3600"), ("X-User", "u")])
    first, second = _twice(origin, client)
    assert not hit(second) and origin.count("GET", PATH) == 2
    assert first.headers["x-user"] == "u"  # the one client it was for gets everything


# -- must-understand (RFC 9111 §5.2.2.3) ---------------------------------------------------


@pytest.mark.parametrize("status", [200, 301, 404, 410])
def test_rfc9111_5_2_2_3_understood_status_ignores_no_store(status: int) -> None:
    resp = {"cache-control": "max-age=60, no-store, must-understand"}
    assert status in UNDERSTOOD_STATUSES
    assert storable("GET", status, {}, resp) == (True, "ok")


@pytest.mark.parametrize(
    "cc", ["max-age=60, must-understand", "max-age=60, no-store, must-understand"]
)
@pytest.mark.parametrize("status", [299, 418, 599])
def test_rfc9111_5_2_2_3_unknown_status_is_never_stored(cc: str, status: int) -> None:
    assert storable("GET", status, {}, {"cache-control": cc}) == (False, "must-understand")


def test_rfc9111_5_2_2_3_other_no_store_sources_still_apply() -> None:
    resp = {"cache-control": "max-age=60, no-store, must-understand"}
    assert storable("GET", 200, {"cache-control": "no-store"}, resp)[0] is False
    assert storable("GET", 200, {}, {**resp, "surrogate-control": "no-store"})[0] is False
    # without must-understand: no-store forbids storing as usual, and an unknown final
    # status with explicit freshness may be stored (§3)
    assert storable("GET", 200, {}, {"cache-control": "max-age=60, no-store"})[0] is False
    assert storable("GET", 299, {}, {"cache-control": "max-age=60"}) == (True, "ok")


def test_rfc9111_5_2_2_3_edge_stores_understood_status_despite_no_store(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _serve(origin, [("Cache-Control", "max-age=3600, no-store, must-understand")])
    _, second = _twice(origin, client)
    assert hit(second) and origin.count("GET", PATH) == 1


@pytest.mark.parametrize(
    "cc", ["max-age=3600, must-understand", "max-age=3600, no-store, must-understand"]
)
def test_rfc9111_5_2_2_3_edge_does_not_store_status_it_does_not_understand(
    origin: ScriptedOrigin, client: httpx.Client, cc: str
) -> None:
    _serve(origin, [("Cache-Control", cc)], status=299)
    first, second = _twice(origin, client)
    assert first.status_code == 299 and first.content == b"body"
    assert not hit(second) and origin.count("GET", PATH) == 2


# -- targeted fields (RFC 9213) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("resp", "lifetime"),
    [
        ({"cache-control": "max-age=10", "cdn-cache-control": "max-age=20"}, 20.0),
        (
            {
                "cache-control": "max-age=10",
                "surrogate-control": "max-age=30",
                "cdn-cache-control": "max-age=20",
                "pkgedge-cdn-cache-control": "max-age=40",
            },
            40.0,
        ),
        ({"surrogate-control": "max-age=30", "cdn-cache-control": "max-age=20"}, 20.0),
        ({"expires": "0", "cdn-cache-control": "max-age=20"}, 20.0),
        # an empty or invalid targeted field is ignored: the next one (or Cache-Control) rules
        ({"cache-control": "max-age=10", "cdn-cache-control": ""}, 10.0),
        ({"cache-control": "max-age=10", "pkgedge-cdn-cache-control": " , "}, 10.0),
        ({"pkgedge-cdn-cache-control": ",", "cdn-cache-control": "max-age=20"}, 20.0),
    ],
)
def test_rfc9213_2_1_most_specific_targeted_field_wins(
    resp: dict[str, str], lifetime: float
) -> None:
    assert freshness(200, resp, response_time=0.0).lifetime == lifetime


def test_rfc9213_2_1_targeted_field_replaces_cache_control_for_storing() -> None:
    assert storable(
        "GET", 200, {}, {"cache-control": "no-store", "cdn-cache-control": "max-age=9"}
    )[0]
    assert storable("GET", 200, {}, {"cache-control": "private", "cdn-cache-control": "max-age=9"})[
        0
    ]
    assert not storable(
        "GET", 200, {}, {"cache-control": "max-age=9", "cdn-cache-control": "no-store"}
    )[0]
    assert effective({"cache-control": "x"}) == {"cache-control": "x"}


@pytest.mark.parametrize(
    ("headers", "stored"),
    [
        ([("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=3600")], True),
        ([("Cache-Control", "max-age=3600"), ("CDN-Cache-Control", "no-store")], False),
        (
            [
                ("Cache-Control", "no-store"),
                ("CDN-Cache-Control", "no-store"),
                ("Pkgedge-CDN-Cache-Control", "max-age=3600"),
            ],
            True,
        ),
        ([("Surrogate-Control", "max-age=3600"), ("CDN-Cache-Control", "no-store")], False),
    ],
)
def test_rfc9213_edge_obeys_the_most_specific_field_and_hides_them(
    origin: ScriptedOrigin, client: httpx.Client, headers: list[tuple[str, str]], stored: bool
) -> None:
    _serve(origin, headers)
    first, second = _twice(origin, client)
    assert hit(second) is stored
    assert origin.count("GET", PATH) == (1 if stored else 2)
    for resp in (first, second):
        for name in EDGE_ONLY:
            assert name not in resp.headers, (name, resp.headers)
    if stored:  # Cache-Control is for the clients: passed on as the origin sent it
        assert second.headers.get("cache-control") == dict(headers).get("Cache-Control")


def test_rfc9213_targeted_fields_are_stripped_from_passed_responses(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    origin.script(
        "POST",
        PATH,
        Reply(200, [("CDN-Cache-Control", "max-age=1"), ("Pkgedge-CDN-Cache-Control", "x")]),
    )
    resp = client.post(PATH, content=b"x")
    for name in EDGE_ONLY:
        assert name not in resp.headers
