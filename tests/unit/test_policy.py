"""Shared-cache policy (RFC 9111, RFC 5861, Surrogate-Control) with a fake clock."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgedge.cache.policy import (
    HEURISTIC_STATUSES,
    Freshness,
    RequestDirectives,
    Verdict,
    can_serve_stale_on_error,
    client_not_modified,
    conditional_headers,
    freshness,
    if_range_matches,
    initial_age,
    lookup_verdict,
    merge_not_modified,
    request_directives,
    storable,
)
from pkgedge.http.dates import format_http_date

NOW = 1_700_000_000.0
FRESH, SWR, REVAL = Verdict.FRESH, Verdict.STALE_REVALIDATE_BACKGROUND, Verdict.REVALIDATE


def d(t: float) -> str:
    return format_http_date(t)


def fr(
    lifetime: float = 100.0,
    *,
    swr: float = 0.0,
    sie: float = 0.0,
    must_revalidate: bool = False,
    no_cache: bool = False,
) -> Freshness:
    return Freshness(lifetime, swr, sie, must_revalidate, no_cache, False, "max-age")


def rd(
    *,
    no_cache: bool = False,
    max_age: int | None = None,
    max_stale: int | None = None,
    min_fresh: int | None = None,
) -> RequestDirectives:
    return RequestDirectives(no_cache, False, max_age, max_stale, min_fresh, False)


def fresh_of(cc: str, **extra: str) -> Freshness:
    return freshness(200, {"cache-control": cc, "date": d(NOW), **extra}, response_time=NOW)


# --- storable (RFC 9111 §3) -------------------------------------------------------------------


def test_rfc9110_15_1_heuristic_statuses() -> None:
    assert frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}) == (
        HEURISTIC_STATUSES
    )


@pytest.mark.parametrize(
    ("method", "status", "req", "resp", "expected"),
    [
        ("GET", 200, {}, {"cache-control": "max-age=60"}, (True, "ok")),
        ("HEAD", 200, {}, {"cache-control": "max-age=60"}, (True, "ok")),
        ("POST", 200, {}, {"cache-control": "max-age=60"}, (False, "method")),
        ("get", 200, {}, {"cache-control": "max-age=60"}, (False, "method")),
        ("GET", 100, {}, {"cache-control": "max-age=60"}, (False, "status")),
        ("GET", 206, {}, {"cache-control": "max-age=60"}, (False, "status")),
        ("GET", 304, {}, {"cache-control": "max-age=60"}, (False, "status")),
        ("GET", 500, {}, {"cache-control": "max-age=60"}, (True, "ok")),
        ("GET", 500, {}, {}, (False, "no-freshness")),
        ("GET", 200, {}, {}, (False, "no-freshness")),
    ],
)
def test_rfc9111_3_method_and_status(
    method: str,
    status: int,
    req: dict[str, str],
    resp: dict[str, str],
    expected: tuple[bool, str],
) -> None:
    assert storable(method, status, req, resp) == expected


@pytest.mark.parametrize(
    ("req", "resp"),
    [
        ({"cache-control": "no-store"}, {"cache-control": "max-age=60"}),
        ({}, {"cache-control": "max-age=60, no-store"}),
        ({}, {"cache-control": "public, max-age=60", "surrogate-control": "no-store"}),
    ],
)
def test_rfc9111_5_2_1_5_and_5_2_2_5_no_store(req: dict[str, str], resp: dict[str, str]) -> None:
    assert storable("GET", 200, req, resp) == (False, "no-store")


@pytest.mark.parametrize("cc", ["private, max-age=60", 'private="", max-age=60'])
def test_rfc9111_5_2_2_7_private_not_stored_by_shared_cache(cc: str) -> None:
    assert storable("GET", 200, {}, {"cache-control": cc}) == (False, "private")


def test_rfc9111_5_2_2_7_private_with_field_names_stores_the_rest() -> None:
    # the named fields are dropped from what is stored (cache/fields.py), not the response
    assert storable("GET", 200, {}, {"cache-control": 'private="x-user", max-age=60'}) == (
        True,
        "ok",
    )


@pytest.mark.parametrize(
    ("cc", "expected"),
    [
        ("max-age=60", (False, "authorization")),
        ("public", (True, "ok")),
        ("s-maxage=60", (True, "ok")),
        ("max-age=60, must-revalidate", (True, "ok")),
    ],
)
def test_rfc9111_3_5_authorization(cc: str, expected: tuple[bool, str]) -> None:
    req = {"authorization": "Bearer x"}
    assert storable("GET", 200, req, {"cache-control": cc}) == expected
    assert storable("GET", 200, {}, {"cache-control": cc}) == (True, "ok")


def test_rfc9111_3_set_cookie_never_shared() -> None:
    resp = {"cache-control": "public, max-age=60", "set-cookie": "s=1"}
    assert storable("GET", 200, {}, resp) == (False, "set-cookie")


@pytest.mark.parametrize(
    ("vary", "expected"),
    [("*", False), ("accept-encoding, *", False), ("accept-encoding", True), ("", True)],
)
def test_rfc9111_4_1_vary_star(vary: str, expected: bool) -> None:
    resp = {"cache-control": "max-age=60", "vary": vary}
    ok, reason = storable("GET", 200, {}, resp)
    assert ok is expected
    assert reason == ("ok" if expected else "vary-star")


@pytest.mark.parametrize(
    "resp",
    [
        {"surrogate-control": "max-age=60"},
        {"cache-control": "s-maxage=60"},
        {"cache-control": "max-age=60"},
        {"expires": d(NOW + 60)},
        {"expires": "0"},  # invalid Expires: stored, but already stale
        {"cache-control": "public"},
    ],
)
def test_rfc9111_3_explicit_freshness_makes_any_final_status_storable(
    resp: dict[str, str],
) -> None:
    assert storable("GET", 500, {}, resp) == (True, "ok")


def test_surrogate_control_invalid_max_age_is_not_explicit() -> None:
    resp = {"surrogate-control": "max-age=soon"}
    assert storable("GET", 302, {}, resp) == (False, "no-freshness")


@pytest.mark.parametrize(
    ("status", "resp", "default_ttl", "ok"),
    [
        (200, {"last-modified": d(NOW - 1000)}, 0.0, True),
        (404, {"last-modified": d(NOW - 1000)}, 0.0, True),
        (200, {"last-modified": "yesterday"}, 0.0, False),
        (302, {"last-modified": d(NOW - 1000)}, 0.0, False),
        (404, {}, 60.0, True),
        (302, {}, 60.0, False),
        (200, {}, 0.0, False),
    ],
)
def test_rfc9111_4_2_2_heuristic_and_default_ttl_storability(
    status: int, resp: dict[str, str], default_ttl: float, ok: bool
) -> None:
    assert storable("GET", status, {}, resp, default_ttl=default_ttl) == (
        (True, "ok") if ok else (False, "no-freshness")
    )


@pytest.mark.parametrize(
    ("resp", "ok"),
    [
        ({"cache-control": "no-cache", "etag": '"a"'}, True),
        ({"surrogate-control": "no-cache", "etag": '"a"'}, True),
        ({"cache-control": "no-cache"}, False),
        ({"cache-control": "no-cache", "last-modified": "bogus"}, False),
    ],
)
def test_rfc9111_5_2_2_4_no_cache_is_storable_with_a_validator(
    resp: dict[str, str], ok: bool
) -> None:
    assert storable("GET", 200, {}, resp)[0] is ok


# --- freshness (RFC 9111 §4.2.1, §4.2.2, RFC 5861) --------------------------------------------

ALL_SOURCES = {
    "surrogate-control": "max-age=1000",
    "cache-control": "s-maxage=900, max-age=800",
    "expires": d(NOW + 700),
    "last-modified": d(NOW - 6000),
    "date": d(NOW),
}


@pytest.mark.parametrize(
    ("drop", "cc", "lifetime", "source"),
    [
        ((), None, 1000.0, "surrogate-control"),
        (("surrogate-control",), None, 900.0, "s-maxage"),
        (("surrogate-control",), "max-age=800", 800.0, "max-age"),
        (("surrogate-control", "cache-control"), None, 700.0, "expires"),
        (("surrogate-control", "cache-control", "expires"), None, 600.0, "heuristic"),
        (("surrogate-control", "cache-control", "expires", "last-modified"), None, 50.0, "default"),
    ],
)
def test_rfc9111_4_2_1_precedence_chain(
    drop: tuple[str, ...], cc: str | None, lifetime: float, source: str
) -> None:
    resp = {k: v for k, v in ALL_SOURCES.items() if k not in drop}
    if cc is not None:
        resp["cache-control"] = cc
    f = freshness(200, resp, response_time=NOW, default_ttl=50.0)
    assert (f.lifetime, f.source) == (lifetime, source)
    assert f.heuristic is (source in ("heuristic", "default"))


def test_rfc9111_4_2_1_nothing_gives_zero() -> None:
    f = freshness(200, {"date": d(NOW)}, response_time=NOW)
    assert (f.lifetime, f.source, f.heuristic) == (0.0, "none", False)


@pytest.mark.parametrize(
    ("cc", "source"),
    [("s-maxage=abc, max-age=60", "s-maxage"), ("max-age=-1", "max-age")],
)
def test_rfc9111_4_2_1_invalid_cache_control_lifetime_is_stale(cc: str, source: str) -> None:
    f = freshness(200, {"cache-control": cc, "expires": d(NOW + 999)}, response_time=NOW)
    assert (f.lifetime, f.source) == (0.0, source)


def test_surrogate_control_invalid_max_age_falls_back_to_cache_control() -> None:
    f = fresh_of("max-age=60", **{"surrogate-control": "max-age=-5"})
    assert (f.lifetime, f.source) == (60.0, "max-age")


@pytest.mark.parametrize("expires", ["0", "-1", "next week", ""])
def test_rfc9111_5_3_invalid_expires_is_already_stale(expires: str) -> None:
    f = freshness(200, {"expires": expires, "date": d(NOW)}, response_time=NOW)
    assert (f.lifetime, f.source) == (0.0, "expires")


def test_rfc9111_4_2_1_expires_minus_date_not_response_time() -> None:
    resp = {"date": d(NOW - 100), "expires": d(NOW + 200)}
    assert freshness(200, resp, response_time=NOW).lifetime == 300.0
    resp = {"date": d(NOW), "expires": d(NOW - 50)}
    assert freshness(200, resp, response_time=NOW).lifetime == 0.0


def test_rfc9111_4_2_1_missing_date_uses_response_time() -> None:
    resp = {"expires": d(NOW + 200)}
    assert freshness(200, resp, response_time=NOW).lifetime == 200.0
    resp = {"expires": d(NOW + 200), "date": "garbage"}
    assert freshness(200, resp, response_time=NOW - 50).lifetime == 250.0


def test_rfc9111_4_2_2_heuristic_ten_percent_capped_at_one_day() -> None:
    resp = {"date": d(NOW), "last-modified": d(NOW - 1000)}
    assert freshness(200, resp, response_time=NOW).lifetime == 100.0
    resp = {"date": d(NOW), "last-modified": d(NOW - 86400 * 365)}
    assert freshness(200, resp, response_time=NOW).lifetime == 86400.0
    # Date missing → response_time.
    resp = {"last-modified": d(NOW - 2000)}
    assert freshness(200, resp, response_time=NOW).lifetime == 200.0


def test_rfc9110_8_8_2_1_last_modified_after_date_gives_zero() -> None:
    resp = {"date": d(NOW), "last-modified": d(NOW + 500)}
    f = freshness(200, resp, response_time=NOW, default_ttl=60.0)
    assert (f.lifetime, f.source) == (0.0, "heuristic")


@pytest.mark.parametrize("status", [302, 307, 500, 503])
def test_rfc9111_4_2_2_no_heuristic_or_default_for_other_statuses(status: int) -> None:
    resp = {"date": d(NOW), "last-modified": d(NOW - 1000), "cache-control": "public"}
    f = freshness(status, resp, response_time=NOW, default_ttl=60.0)
    assert (f.lifetime, f.source) == (0.0, "none")


def test_default_ttl_for_heuristic_status_without_last_modified() -> None:
    f = freshness(404, {"date": d(NOW)}, response_time=NOW, default_ttl=30.0)
    assert (f.lifetime, f.source, f.heuristic) == (30.0, "default", True)


def test_rfc5861_windows_from_cache_control() -> None:
    f = fresh_of("max-age=60, stale-while-revalidate=30, stale-if-error=600")
    assert (f.swr, f.sie) == (30.0, 600.0)
    f = fresh_of("max-age=60")
    assert (f.swr, f.sie) == (0.0, 0.0)


def test_rfc5861_surrogate_control_windows_win_then_fall_back() -> None:
    f = fresh_of(
        "max-age=60, stale-while-revalidate=30, stale-if-error=600",
        **{"surrogate-control": "stale-while-revalidate=5, stale-if-error=bogus"},
    )
    assert (f.swr, f.sie) == (5.0, 600.0)


@pytest.mark.parametrize(
    ("cc", "expected"),
    [
        ("max-age=60", False),
        ("max-age=60, must-revalidate", True),
        ("max-age=60, proxy-revalidate", True),
        ("s-maxage=60", True),  # RFC 9111 §5.2.2.10: implies proxy-revalidate
    ],
)
def test_rfc9111_5_2_2_must_revalidate_flags(cc: str, expected: bool) -> None:
    assert fresh_of(cc).must_revalidate is expected


def test_rfc9111_4_2_4_must_revalidate_keeps_only_explicit_windows() -> None:
    f = fresh_of("s-maxage=60")
    assert (f.must_revalidate, f.swr, f.sie) == (True, 0.0, 0.0)
    f = fresh_of("s-maxage=60, stale-while-revalidate=30, stale-if-error=90")
    assert (f.must_revalidate, f.swr, f.sie) == (True, 30.0, 90.0)


@pytest.mark.parametrize(
    ("resp", "expected"),
    [
        ({"cache-control": "max-age=60, no-cache"}, True),
        ({"cache-control": 'no-cache=""'}, True),
        ({"cache-control": 'max-age=60, no-cache="set-cookie"'}, False),
        ({"surrogate-control": "no-cache", "cache-control": "max-age=60"}, True),
        ({"cache-control": "max-age=60", "pragma": "no-cache"}, False),
    ],
)
def test_rfc9111_5_2_2_4_no_cache(resp: dict[str, str], expected: bool) -> None:
    assert freshness(200, resp, response_time=NOW).no_cache is expected


@settings(deadline=None, database=None)
@given(st.text(max_size=60), st.text(max_size=60), st.integers(100, 599))
def test_freshness_total_on_junk(cc: str, sc: str, status: int) -> None:
    resp = {"cache-control": cc, "surrogate-control": sc, "expires": cc, "date": sc}
    f = freshness(status, resp, response_time=NOW)
    assert f.lifetime >= 0
    assert f.swr >= 0
    assert f.sie >= 0


# --- initial_age (RFC 9111 §4.2.3) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("resp", "request_time", "expected"),
    [
        ({}, NOW - 2, 2.0),  # response_delay only
        ({"date": d(NOW - 10)}, NOW - 1, 10.0),  # apparent_age wins
        ({"date": d(NOW), "age": "100"}, NOW - 2, 102.0),  # age_value + response_delay
        ({"date": d(NOW - 10), "age": "5"}, NOW - 1, 10.0),  # max(apparent, corrected)
        ({"date": d(NOW + 60)}, NOW - 0.5, 0.5),  # origin clock ahead: apparent_age is 0
        ({"date": d(NOW), "age": "abc"}, NOW, 0.0),
        ({"date": d(NOW), "age": "-5"}, NOW, 0.0),
        ({"date": d(NOW), "age": "30, 40"}, NOW, 30.0),
        ({"date": d(NOW), "age": "7"}, NOW + 3, 7.0),  # negative delay counts as 0
    ],
)
def test_rfc9111_4_2_3_initial_age(
    resp: dict[str, str], request_time: float, expected: float
) -> None:
    assert initial_age(resp, request_time=request_time, response_time=NOW) == expected


# --- request directives (RFC 9111 §5.2.1, §5.4) -----------------------------------------------


def test_rfc9111_5_2_1_request_directives() -> None:
    cc = "no-cache, no-store, max-age=5, max-stale=10, min-fresh=3, only-if-cached"
    got = request_directives({"cache-control": cc})
    assert got == RequestDirectives(True, True, 5, 10, 3, True)
    assert request_directives({}) == RequestDirectives(False, False, None, None, None, False)


def test_rfc9111_5_2_1_2_bare_max_stale_is_unlimited() -> None:
    assert request_directives({"cache-control": "max-stale"}).max_stale == 2**31
    assert request_directives({"cache-control": "max-stale=x"}).max_stale is None


def test_rfc9111_5_2_1_invalid_arguments_are_ignored() -> None:
    got = request_directives({"cache-control": "max-age=soon, min-fresh=-1"})
    assert (got.max_age, got.min_fresh) == (None, None)


def test_rfc9111_5_4_pragma_only_without_cache_control() -> None:
    assert request_directives({"pragma": "No-Cache"}).no_cache is True
    assert request_directives({"pragma": "x, no-cache"}).no_cache is True
    assert (
        request_directives({"pragma": "no-cache", "cache-control": "max-age=5"}).no_cache is False
    )
    assert request_directives({"pragma": "other"}).no_cache is False


# --- lookup_verdict (RFC 9111 §4.2, §5.2.1; RFC 5861 §3) --------------------------------------


def test_rfc9111_4_2_fresh_until_lifetime_exclusive() -> None:
    assert lookup_verdict(99.9, fr(100), rd()) == (FRESH, "fresh")
    assert lookup_verdict(100.0, fr(100), rd()) == (REVAL, "stale")
    assert lookup_verdict(0.0, fr(0), rd()) == (REVAL, "stale")


def test_rfc9111_5_2_1_4_request_no_cache_revalidates_fresh_object() -> None:
    assert lookup_verdict(0.0, fr(100, swr=50), rd(no_cache=True)) == (REVAL, "request-no-cache")
    pragma = request_directives({"pragma": "no-cache"})
    assert lookup_verdict(0.0, fr(100), pragma)[0] is REVAL


def test_rfc9111_5_2_1_1_request_max_age_zero_revalidates() -> None:
    assert lookup_verdict(0.0, fr(100), rd(max_age=0)) == (REVAL, "request-max-age=0")
    pip_like = request_directives({"cache-control": "max-age=0"})
    assert lookup_verdict(0.0, fr(100, swr=50), pip_like)[0] is REVAL


def test_rfc9111_5_2_1_1_request_max_age_bound() -> None:
    assert lookup_verdict(50.0, fr(100), rd(max_age=50)) == (FRESH, "fresh")
    assert lookup_verdict(50.5, fr(100), rd(max_age=50)) == (REVAL, "request-max-age")


def test_rfc9111_5_2_2_4_response_no_cache_always_revalidates() -> None:
    f = fr(100, swr=50, no_cache=True)
    assert lookup_verdict(0.0, f, rd()) == (REVAL, "no-cache")
    assert lookup_verdict(120.0, f, rd(max_stale=1000)) == (REVAL, "no-cache")


def test_rfc9111_5_2_1_3_min_fresh() -> None:
    assert lookup_verdict(80.0, fr(100), rd(min_fresh=20)) == (FRESH, "fresh")
    assert lookup_verdict(80.0, fr(100), rd(min_fresh=21)) == (REVAL, "request-min-fresh")
    # min-fresh never accepts stale, even inside a swr window.
    assert lookup_verdict(110.0, fr(100, swr=50), rd(min_fresh=0)) == (REVAL, "stale")


def test_rfc5861_3_swr_window_boundaries() -> None:
    f = fr(100, swr=30)
    assert lookup_verdict(100.0, f, rd()) == (SWR, "swr")
    assert lookup_verdict(129.9, f, rd()) == (SWR, "swr")
    assert lookup_verdict(130.0, f, rd()) == (REVAL, "stale")


def test_rfc5861_3_swr_with_zero_lifetime() -> None:
    assert lookup_verdict(0.0, fr(0, swr=30), rd()) == (SWR, "swr")


def test_rfc9111_5_2_1_1_request_max_age_refuses_stale_unless_max_stale() -> None:
    f = fr(100, swr=30)
    assert lookup_verdict(110.0, f, rd(max_age=200)) == (REVAL, "stale")
    assert lookup_verdict(110.0, f, rd(max_age=200, max_stale=5)) == (SWR, "swr")


def test_rfc9111_5_2_1_2_max_stale() -> None:
    assert lookup_verdict(110.0, fr(100), rd(max_stale=10)) == (FRESH, "max-stale")
    assert lookup_verdict(110.5, fr(100), rd(max_stale=10)) == (REVAL, "stale")
    unlimited = request_directives({"cache-control": "max-stale"})
    assert lookup_verdict(1e9, fr(100), unlimited) == (FRESH, "max-stale")


def test_rfc9111_5_2_2_2_must_revalidate_overrides_max_stale() -> None:
    f = fr(100, must_revalidate=True)
    assert lookup_verdict(101.0, f, rd(max_stale=1000)) == (REVAL, "stale")
    # … via freshness(): s-maxage implies proxy-revalidate.
    from_headers = fresh_of("s-maxage=100")
    assert lookup_verdict(101.0, from_headers, rd(max_stale=1000)) == (REVAL, "stale")


def test_rfc5861_explicit_swr_applies_under_s_maxage() -> None:
    f = fresh_of("s-maxage=100, stale-while-revalidate=30")
    assert f.must_revalidate
    assert lookup_verdict(110.0, f, rd()) == (SWR, "swr")
    assert lookup_verdict(130.0, f, rd()) == (REVAL, "stale")


def test_swr_is_preferred_over_max_stale_then_max_stale_beyond_window() -> None:
    f = fr(100, swr=30)
    assert lookup_verdict(105.0, f, rd(max_stale=100)) == (SWR, "swr")
    assert lookup_verdict(150.0, f, rd(max_stale=100)) == (FRESH, "max-stale")


def test_soft_purge_counts_as_stale() -> None:
    assert lookup_verdict(10.0, fr(100, swr=30), rd(), soft_purged=True) == (SWR, "soft-purged")
    assert lookup_verdict(10.0, fr(100), rd(), soft_purged=True) == (REVAL, "soft-purged")
    assert lookup_verdict(135.0, fr(100, swr=30), rd(), soft_purged=True) == (
        REVAL,
        "soft-purged",
    )
    assert lookup_verdict(10.0, fr(100), rd(max_stale=5), soft_purged=True) == (
        FRESH,
        "max-stale",
    )
    assert lookup_verdict(10.0, fr(100), rd(), soft_purged=False) == (FRESH, "fresh")


@settings(deadline=None, database=None)
@given(
    st.floats(0, 1e6, allow_nan=False),
    st.floats(0, 1e6, allow_nan=False),
    st.floats(0, 1e6, allow_nan=False),
)
def test_rfc9111_4_2_verdict_without_request_directives(
    age: float, lifetime: float, swr: float
) -> None:
    verdict, _ = lookup_verdict(age, fr(lifetime, swr=swr), rd())
    if age < lifetime:
        assert verdict is FRESH
    elif age < lifetime + swr:
        assert verdict is SWR
    else:
        assert verdict is REVAL


# --- stale-if-error (RFC 5861 §4) -------------------------------------------------------------


def test_rfc5861_4_stale_if_error_window_boundaries() -> None:
    f = fr(100, sie=50)
    assert can_serve_stale_on_error(149.9, f)
    assert not can_serve_stale_on_error(150.0, f)


def test_rfc5861_4_without_sie_only_fresh_objects() -> None:
    assert can_serve_stale_on_error(99.0, fr(100))
    assert not can_serve_stale_on_error(100.0, fr(100))


def test_rfc5861_4_must_revalidate_allows_only_explicit_sie() -> None:
    f = fresh_of("max-age=100, must-revalidate, stale-if-error=50")
    assert can_serve_stale_on_error(120.0, f)
    f = fresh_of("max-age=100, must-revalidate")
    assert not can_serve_stale_on_error(100.0, f)


def test_rfc9111_5_2_2_4_no_cache_needs_explicit_sie_on_error() -> None:
    assert not can_serve_stale_on_error(0.0, fr(100, no_cache=True))
    assert can_serve_stale_on_error(130.0, fr(100, sie=60, no_cache=True))


# --- validation (RFC 9111 §4.3) ---------------------------------------------------------------


def test_rfc9111_4_3_1_conditional_headers() -> None:
    lm = d(NOW - 100)
    assert conditional_headers({"etag": '"abc"', "last-modified": lm}) == {
        "if-none-match": '"abc"',
        "if-modified-since": lm,
    }
    assert conditional_headers({"etag": 'W/"abc"'}) == {"if-none-match": 'W/"abc"'}
    assert conditional_headers({"last-modified": lm}) == {"if-modified-since": lm}
    assert conditional_headers({"last-modified": "bogus", "etag": " "}) == {}
    assert conditional_headers({}) == {}


def test_rfc9111_4_3_4_merge_not_modified() -> None:
    stored = [
        ("content-type", "text/html"),
        ("etag", '"a"'),
        ("content-length", "10"),
        ("cache-control", "max-age=10"),
        ("x-a", "1"),
        ("x-a", "2"),
        ("content-encoding", "br"),
        ("content-range", "bytes 0-9/10"),
    ]
    original = list(stored)
    fresh304 = {
        "etag": '"b"',
        "cache-control": "max-age=60",
        "content-length": "0",
        "x-a": "3",
        "date": d(NOW),
        "content-encoding": "gzip",
        "content-range": "bytes 0-0/1",
        "transfer-encoding": "chunked",
        "connection": "x-hop, keep-alive",
        "keep-alive": "timeout=5",
        "x-hop": "h",
        "set-cookie": "s=1",
        "x-new": "n",
    }
    assert merge_not_modified(stored, fresh304) == [
        ("content-type", "text/html"),
        ("etag", '"b"'),
        ("content-length", "10"),
        ("cache-control", "max-age=60"),
        ("x-a", "3"),
        ("content-encoding", "br"),
        ("content-range", "bytes 0-9/10"),
        ("date", d(NOW)),
        ("x-new", "n"),
    ]
    assert stored == original


def test_rfc9111_4_3_4_empty_304_keeps_stored() -> None:
    stored = [("etag", '"a"'), ("x", "1")]
    merged = merge_not_modified(stored, {})
    assert merged == stored
    assert merged is not stored


def test_rfc9111_4_3_4_merged_headers_feed_freshness() -> None:
    stored = [("date", d(NOW - 1000)), ("cache-control", "max-age=60")]
    merged = dict(merge_not_modified(stored, {"date": d(NOW), "cache-control": "max-age=300"}))
    f = freshness(200, merged, response_time=NOW)
    assert f.lifetime == 300.0
    assert initial_age(merged, request_time=NOW, response_time=NOW) == 0.0


# --- client conditionals (RFC 9110 §13.1) -----------------------------------------------------


@pytest.mark.parametrize(
    ("inm", "etag", "expected"),
    [
        ('"a"', '"a"', True),
        ('W/"a"', '"a"', True),  # weak comparison
        ('"a"', 'W/"a"', True),
        ('"x", "a"', '"a"', True),
        ('"x",W/"a"', 'W/"a"', True),
        ('"b"', '"a"', False),
        ('"a,b"', '"a,b"', True),  # comma inside an opaque-tag
        ('"a"', '"a,b"', False),
        ("*", '"a"', True),
        (" * ", '"a"', True),
    ],
)
def test_rfc9110_13_1_2_if_none_match(inm: str, etag: str, expected: bool) -> None:
    assert client_not_modified("GET", {"if-none-match": inm}, {"etag": etag}) is expected


def test_rfc9110_13_1_2_if_none_match_without_etag_ignores_if_modified_since() -> None:
    req = {"if-none-match": '"a"', "if-modified-since": d(NOW)}
    assert not client_not_modified("GET", req, {"last-modified": d(NOW - 100)})


def test_rfc9110_13_1_3_if_modified_since_ignored_when_if_none_match_fails() -> None:
    req = {"if-none-match": '"x"', "if-modified-since": d(NOW)}
    assert not client_not_modified("GET", req, {"etag": '"a"', "last-modified": d(NOW - 100)})


@pytest.mark.parametrize(
    ("ims", "lm", "expected"),
    [
        (d(NOW), d(NOW - 100), True),
        (d(NOW), d(NOW), True),
        (d(NOW - 100), d(NOW), False),
        ("bogus", d(NOW - 100), False),
        (d(NOW), None, False),
    ],
)
def test_rfc9110_13_1_3_if_modified_since(ims: str, lm: str | None, expected: bool) -> None:
    resp = {} if lm is None else {"last-modified": lm}
    assert client_not_modified("GET", {"if-modified-since": ims}, resp) is expected
    assert client_not_modified("HEAD", {"if-modified-since": ims}, resp) is expected


def test_rfc9110_13_1_conditionals_only_for_get_and_head() -> None:
    req = {"if-none-match": '"a"'}
    assert not client_not_modified("POST", req, {"etag": '"a"'})
    assert client_not_modified("HEAD", req, {"etag": '"a"'})


@pytest.mark.parametrize(
    ("if_range", "etag", "expected"),
    [
        ('"a"', '"a"', True),
        ('"a"', '"b"', False),
        ('W/"a"', 'W/"a"', False),  # weak tags never match strongly
        ('W/"a"', '"a"', False),
        ('"a"', 'W/"a"', False),
        ('"a"', None, False),
        ('"a", "b"', '"a"', False),  # If-Range carries one validator
    ],
)
def test_rfc9110_13_1_5_if_range_entity_tag(
    if_range: str, etag: str | None, expected: bool
) -> None:
    resp = {"last-modified": d(NOW - 100), "date": d(NOW)}
    if etag is not None:
        resp["etag"] = etag
    assert if_range_matches(if_range, resp) is expected


@pytest.mark.parametrize(
    ("if_range", "lm", "date", "expected"),
    [
        (d(NOW - 100), d(NOW - 100), d(NOW), True),
        (d(NOW - 100), d(NOW - 100), None, True),
        (d(NOW - 99), d(NOW - 100), d(NOW), False),  # later date: not equal
        (d(NOW - 101), d(NOW - 100), d(NOW), False),
        (d(NOW), d(NOW), d(NOW), False),  # RFC 9110 §8.8.2.2: Last-Modified == Date is weak
        ("bogus", d(NOW - 100), d(NOW), False),
        (d(NOW - 100), None, d(NOW), False),
    ],
)
def test_rfc9110_13_1_5_if_range_date(
    if_range: str, lm: str | None, date: str | None, expected: bool
) -> None:
    resp = {"etag": '"a"'}
    if lm is not None:
        resp["last-modified"] = lm
    if date is not None:
        resp["date"] = date
    assert if_range_matches(if_range, resp) is expected


def test_freshness_is_frozen() -> None:
    f = fr(100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.lifetime = 5.0  # type: ignore[misc]
