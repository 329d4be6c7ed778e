"""RFC 9111 §4.1: Vary.

``Vary: *`` never matches, so such a response is never served from cache; field names are
case-insensitive, whitespace around list members is insignificant, and several Vary field lines
are one list (RFC 9110 §5.3). Selecting field values match after combining lines and removing
optional whitespace.
"""

from __future__ import annotations

import httpx
import pytest

from pkgedge.cache.keys import secondary_key, vary_names
from pkgedge.cache.policy import storable
from support.scripted import Reply, ScriptedOrigin, Seen, hit, http_date

PATH = "/simple/v/"


# -- pure pieces ---------------------------------------------------------------------------


@pytest.mark.parametrize("vary", ["*", " * ", "accept, *", "X-Flavor ,*"])
def test_rfc9111_4_1_vary_star_is_never_stored(vary: str) -> None:
    assert storable("GET", 200, {}, {"cache-control": "max-age=60", "vary": vary}) == (
        False,
        "vary-star",
    )


def test_rfc9111_4_1_vary_names_case_insensitive_with_odd_spacing() -> None:
    assert vary_names("X-Flavor") == vary_names("  x-FLAVOR , ") == ("x-flavor",)
    # two field lines, joined as a recipient must (RFC 9110 §5.3)
    assert (
        vary_names("X-Flavor, x-size")
        == vary_names("x-size ,\tX-FLAVOR")
        == (
            "x-flavor",
            "x-size",
        )
    )


def test_rfc9111_4_1_selecting_values_match_after_whitespace_and_line_combining() -> None:
    names = ("x-flavor",)

    def key(value: str) -> bytes:
        return secondary_key(b"/p", names, {"x-flavor": value}, "/p")

    assert key("a, b") == key("a,b") == key(" a ,\tb ")
    assert key("a") != key("b")
    assert key("a, b") != key("b, a")  # order is significant in a list


# -- through a real edge -------------------------------------------------------------------


def _vary(origin: ScriptedOrigin, *vary_lines: str) -> None:
    def answer(seen: Seen) -> Reply:
        flavor = seen.get("x-flavor") or "-"
        headers = [("Date", http_date()), ("Cache-Control", "max-age=3600")]
        headers += [("Vary", v) for v in vary_lines]
        return Reply(200, headers, flavor.encode())

    origin.script("GET", PATH, answer)


@pytest.mark.parametrize("vary", ["*", "X-Flavor, *"])
def test_rfc9111_4_1_vary_star_is_never_served_from_cache(
    origin: ScriptedOrigin, client: httpx.Client, vary: str
) -> None:
    _vary(origin, vary)
    first = client.get(PATH, headers={"X-Flavor": "a"})
    second = client.get(PATH, headers={"X-Flavor": "a"})
    assert first.status_code == second.status_code == 200
    assert not hit(second)
    assert origin.count("GET", PATH) == 2


def test_rfc9111_4_1_vary_field_name_case_and_spacing(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _vary(origin, "  x-FLAVOR  ,  ")
    assert client.get(PATH, headers={"X-Flavor": "a"}).content == b"a"
    b = client.get(PATH, headers={"X-Flavor": "b"})
    assert b.content == b"b" and not hit(b)
    again = client.get(PATH, headers={"x-flavor": "a"})
    assert again.content == b"a" and hit(again)
    assert origin.count("GET", PATH) == 2


def test_rfc9111_4_1_several_vary_lines_are_one_list(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _vary(origin, "X-Flavor", "X-Size")
    client.get(PATH, headers={"X-Flavor": "a", "X-Size": "s"})
    other_size = client.get(PATH, headers={"X-Flavor": "a", "X-Size": "m"})
    assert not hit(other_size)  # the second line counts too
    same = client.get(PATH, headers={"X-Flavor": "a", "X-Size": "s"})
    assert hit(same)
    assert origin.count("GET", PATH) == 2


def test_rfc9111_4_1_selecting_values_match_across_line_combining(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _vary(origin, "X-Flavor")
    client.get(PATH, headers={"X-Flavor": "a ,b"})
    # the same list sent as two field lines: semantically the same request
    again = client.get(PATH, headers=[("X-Flavor", "a"), ("X-Flavor", "b")])
    assert hit(again)
    assert origin.count("GET", PATH) == 1
