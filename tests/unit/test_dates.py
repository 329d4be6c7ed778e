"""HTTP-date parsing and formatting (RFC 9110 §5.6.7)."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgedge.http.dates import format_http_date, parse_http_date

#: The RFC 9110 §5.6.7 example instant: Sun, 06 Nov 1994 08:49:37 GMT.
EXAMPLE = 784111777.0
IMF_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT"
)


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # ANSI C asctime()
    ],
)
def test_rfc9110_5_6_7_all_three_formats_parse(value: str) -> None:
    assert parse_http_date(value) == EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        "sun, 06 nov 1994 08:49:37 gmt",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun,  06  Nov 1994 08:49:37 GMT",
        "  Sun, 06 Nov 1994 08:49:37 GMT\t",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 06 08:49:37 1994",
    ],
)
def test_rfc9110_5_6_7_lenient_variants(value: str) -> None:
    assert parse_http_date(value) == EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0",
        "-1",
        "garbage",
        "Sun, 06 Nov 1994",
        "Sun, 06 Nov 1994 08:49:37",  # zone missing
        "Sun, 06 Nov 1994 08:49:37 PST",
        "Sun, 06 Nov 1994 08:49:37 GMT trailing",
        "Foo, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Wed, 29 Feb 1995 00:00:00 GMT",  # not a leap year
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT" + " " * 100,
        "Sun, ٠٦ Nov 1994 08:49:37 GMT",  # non-ASCII digits
        "Sun, 06-Nov-94 08:49:37 GMT",  # RFC 850 layout needs the long weekday
    ],
)
def test_rfc9110_5_6_7_invalid_dates_give_none(value: str) -> None:
    assert parse_http_date(value) is None


def test_rfc9110_5_6_7_leap_year_and_leap_second() -> None:
    assert parse_http_date("Thu, 29 Feb 1996 00:00:00 GMT") == 825552000.0
    # Second 60 is allowed by the grammar and rolls into the next minute.
    assert parse_http_date("Sun, 06 Nov 1994 08:49:60 GMT") == EXAMPLE + 23


def test_rfc9110_5_6_7_rfc850_two_digit_year_near_past() -> None:
    assert parse_http_date("Saturday, 01-Jan-05 00:00:00 GMT") == 1104537600.0


def test_rfc9110_5_6_7_rfc850_year_more_than_50_years_ahead_is_last_century() -> None:
    now = time.gmtime().tm_year
    far = (now + 60) % 100  # 60 years ahead → must be read as 40 years ago
    value = f"Monday, 01-Jan-{far:02d} 00:00:00 GMT"
    parsed = parse_http_date(value)
    assert parsed is not None
    assert time.gmtime(parsed).tm_year == now + 60 - 100
    near = (now + 10) % 100  # 10 years ahead stays in the future
    parsed = parse_http_date(f"Monday, 01-Jan-{near:02d} 00:00:00 GMT")
    assert parsed is not None
    assert time.gmtime(parsed).tm_year == now + 10


def test_rfc9110_5_6_7_parse_never_raises_on_wrong_type() -> None:
    assert parse_http_date(None) is None  # type: ignore[arg-type]
    assert parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT") is None  # type: ignore[arg-type]


def test_rfc9110_5_6_7_format_imf_fixdate() -> None:
    assert format_http_date(EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(EXAMPLE + 0.999) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(EXAMPLE + 1) == "Sun, 06 Nov 1994 08:49:38 GMT"
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_format_cache_is_per_second_and_never_stale() -> None:
    first = format_http_date(1_700_000_000.2)
    assert format_http_date(1_700_000_000.9) is first  # served from the one-entry cache
    other = format_http_date(1_700_000_001.0)
    assert other != first
    assert format_http_date(1_700_000_000.0) == first
    assert parse_http_date(other) == 1_700_000_001.0


def test_format_clamps_out_of_range_values() -> None:
    assert format_http_date(-5.0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(float("nan")) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(float("inf")) == "Fri, 31 Dec 9999 23:59:59 GMT"
    assert format_http_date(1e20) == "Fri, 31 Dec 9999 23:59:59 GMT"


@settings(deadline=None, database=None)
@given(st.integers(min_value=0, max_value=253402300799))
def test_rfc9110_5_6_7_format_parse_round_trip(t: int) -> None:
    text = format_http_date(t + 0.5)
    assert IMF_RE.fullmatch(text)
    assert parse_http_date(text) == float(t)


@settings(deadline=None, database=None)
@given(st.text(max_size=80))
def test_parse_never_raises(value: str) -> None:
    result = parse_http_date(value)
    assert result is None or isinstance(result, float)
