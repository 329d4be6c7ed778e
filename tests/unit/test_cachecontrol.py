"""Cache-Control / Surrogate-Control parsing (RFC 9111 §5.2, §1.2.2, §4.2.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pkgedge.http.cachecontrol import DELTA_SECONDS_MAX, delta_seconds, parse_cache_control


def test_rfc9111_5_2_basic_directives() -> None:
    assert parse_cache_control("public, max-age=60, s-maxage=120") == {
        "public": None,
        "max-age": "60",
        "s-maxage": "120",
    }


def test_rfc9111_5_2_names_lowercased_values_kept() -> None:
    assert parse_cache_control('Max-Age=60, No-Cache="Set-Cookie"') == {
        "max-age": "60",
        "no-cache": "Set-Cookie",
    }


def test_rfc9111_5_2_quoted_string_with_commas_and_escapes() -> None:
    parsed = parse_cache_control('no-cache="set-cookie, x-a", private="a\\"b", max-age=5')
    assert parsed == {"no-cache": "set-cookie, x-a", "private": 'a"b', "max-age": "5"}


@pytest.mark.parametrize("value", [None, "", "   ", ",,,", " , ,"])
def test_rfc9111_5_2_empty_fields(value: str | None) -> None:
    assert parse_cache_control(value) == {}


def test_rfc9111_4_2_1_first_occurrence_wins() -> None:
    assert parse_cache_control("max-age=10, MAX-AGE=20, max-age") == {"max-age": "10"}


def test_rfc9111_5_2_junk_is_skipped() -> None:
    parsed = parse_cache_control(
        ',, public ,, =5, max age=7, "quoted", ;x, max-age = 30 , no-store'
    )
    assert parsed == {"public": None, "max-age": "30", "no-store": None}


def test_rfc9111_5_2_empty_and_odd_arguments() -> None:
    assert parse_cache_control('max-age=, s-maxage=""') == {"max-age": "", "s-maxage": ""}
    # A token argument runs to the next comma; delta_seconds then rejects it.
    assert parse_cache_control("max-age=60 junk, public") == {
        "max-age": "60 junk",
        "public": None,
    }
    # Junk after a closing quote is dropped, the next member still parses.
    assert parse_cache_control('private="x"junk, public') == {"private": "x", "public": None}


def test_rfc9111_5_2_unterminated_quote_runs_to_end() -> None:
    assert parse_cache_control('no-cache="a, b') == {"no-cache": "a, b"}
    assert parse_cache_control('no-cache="a\\') == {"no-cache": "a\\"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("60", 60),
        (" 60\t", 60),
        ("007", 7),
        ("2147483647", 2147483647),
        ("2147483648", DELTA_SECONDS_MAX),
        ("99999999999999999999999", DELTA_SECONDS_MAX),
        ("0" * 5000 + "5", 5),
        ("9" * 5000, DELTA_SECONDS_MAX),
    ],
)
def test_rfc9111_1_2_2_delta_seconds_valid(value: str, expected: int) -> None:
    assert delta_seconds(value) == expected


@pytest.mark.parametrize("value", [None, "", " ", "-1", "+5", "1.5", "1e3", "abc", "٣", "6 0"])
def test_rfc9111_1_2_2_delta_seconds_invalid(value: str | None) -> None:
    assert delta_seconds(value) is None


def test_rfc9111_1_2_2_clamp_constant_is_2_pow_31() -> None:
    assert DELTA_SECONDS_MAX == 2**31


@settings(deadline=None, database=None)
@given(st.text(max_size=200))
def test_rfc9111_5_2_parse_never_raises_and_names_are_lowercase_tokens(value: str) -> None:
    parsed = parse_cache_control(value)
    for name, arg in parsed.items():
        assert name == name.lower()
        assert name
        assert "," not in name
        assert "=" not in name
        assert arg is None or isinstance(arg, str)


@settings(deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["max-age", "s-maxage", "public", "no-cache", "x-ext"]),
            st.one_of(st.none(), st.from_regex(r"[a-zA-Z0-9 ,=]{0,10}", fullmatch=True)),
        ),
        max_size=6,
    )
)
def test_rfc9111_5_2_quoted_round_trip(members: list[tuple[str, str | None]]) -> None:
    """Any argument serialised as a quoted-string parses back to itself (first wins)."""
    text = ", ".join(name if arg is None else f'{name}="{arg}"' for name, arg in members)
    expected: dict[str, str | None] = {}
    for name, arg in members:
        expected.setdefault(name, arg)
    assert parse_cache_control(text) == expected


@settings(deadline=None, database=None)
@given(st.text(max_size=30))
def test_rfc9111_1_2_2_delta_seconds_never_raises(value: str) -> None:
    result = delta_seconds(value)
    assert result is None or 0 <= result <= DELTA_SECONDS_MAX
