"""RFC 9111 §3.2 and §4.3.4: a 304 updates the stored response's header fields.

Every field of the 304 replaces the stored one of the same name, except framing fields
(Content-Length), hop-by-hop fields and those its Connection names; the updated fields are what
the next hit shows, also when the client asked for the revalidation (``max-age=0``,
``no-cache``).
"""

from __future__ import annotations

import httpx
import pytest

from pkgedge.cache.fields import stored_fields
from pkgedge.cache.policy import freshness, merge_not_modified, not_modified_selects
from pkgedge.http.headers import as_map
from pkgedge.http.response import response_head
from support.scripted import Reply, ScriptedOrigin, Seen, hit, http_date

PATH = "/simple/p/"
STORED = [
    ("cache-control", "max-age=3600"),
    ("etag", '"v1"'),
    ("x-version", "1"),
    ("content-type", "text/plain"),
]


# -- the pure merge ------------------------------------------------------------------------


def test_rfc9111_3_2_every_field_but_framing_is_updated() -> None:
    merged = as_map(
        merge_not_modified(
            STORED,
            {
                "x-version": "2",
                "cache-control": "max-age=10",
                "content-length": "999",
                "content-type": "text/html",
                "x-new": "yes",
            },
        )
    )
    assert merged["x-version"] == "2"
    assert merged["cache-control"] == "max-age=10"
    assert merged["content-type"] == "text/html"
    assert merged["x-new"] == "yes"
    assert "content-length" not in merged


def test_rfc9111_3_2_connection_named_and_hop_by_hop_fields_are_not_merged() -> None:
    merged = as_map(
        merge_not_modified(
            STORED, {"connection": "x-hop", "x-hop": "1", "keep-alive": "timeout=5", "x-ok": "1"}
        )
    )
    assert "x-hop" not in merged and "keep-alive" not in merged and "connection" not in merged
    assert merged["x-ok"] == "1"


def test_rfc9111_3_2_updated_cache_control_drives_freshness() -> None:
    merged = merge_not_modified(STORED, {"cache-control": "no-cache"})
    fr = freshness(200, as_map(merged), response_time=1000.0)
    assert fr.no_cache and fr.lifetime == 0.0


def test_rfc9111_3_1_qualified_no_cache_field_of_a_304_is_not_stored() -> None:
    merged = merge_not_modified(
        STORED, {"cache-control": 'max-age=60, no-cache="x-secret"', "x-secret": "s"}
    )
    kept = as_map(stored_fields(merged, 1000.0))
    assert "x-secret" not in kept and kept["x-version"] == "1"


# -- through a real edge -------------------------------------------------------------------


def _script(origin: ScriptedOrigin, update: list[tuple[str, str]]) -> None:
    first = Reply(
        200,
        [
            ("Date", http_date()),
            ("Cache-Control", "max-age=3600"),
            ("ETag", '"v1"'),
            ("X-Version", "1"),
            ("Content-Type", "text/plain"),
        ],
        b"body",
    )

    def revalidate(seen: Seen) -> Reply:
        assert seen.get("if-none-match") == '"v1"', seen.headers
        return Reply(304, [("Date", http_date()), ("ETag", '"v1"'), *update])

    origin.script("GET", PATH, first, revalidate)


@pytest.mark.parametrize("directive", ["max-age=0", "no-cache"])
def test_rfc9111_4_3_4_client_triggered_revalidation_updates_stored_fields(
    origin: ScriptedOrigin, client: httpx.Client, directive: str
) -> None:
    _script(origin, [("X-Version", "2"), ("Cache-Control", "max-age=3600")])
    assert client.get(PATH).headers["x-version"] == "1"
    again = client.get(PATH, headers={"Cache-Control": directive})
    assert origin.count("GET", PATH) == 2  # the edge revalidated
    assert again.status_code == 200 and again.content == b"body"
    assert again.headers["x-version"] == "2"
    later = client.get(PATH)
    assert origin.count("GET", PATH) == 2  # a hit
    assert later.headers["x-version"] == "2"
    assert later.content == b"body"


def test_rfc9111_3_2_framing_fields_of_a_304_are_not_taken(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    # a 304 may carry Content-Length; the stored body (4 bytes) is what counts
    _script(origin, [("X-Version", "2"), ("Content-Length", "999")])
    client.get(PATH)
    again = client.get(PATH, headers={"Cache-Control": "max-age=0"})
    assert again.headers["content-length"] == "4" and again.content == b"body"
    assert again.headers["x-version"] == "2"


def test_rfc9111_4_3_4_updated_cache_control_is_used_for_later_requests(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    # the 304 turns the response into no-cache: every later request is revalidated
    _script(origin, [("Cache-Control", "no-cache")])
    client.get(PATH)
    client.get(PATH, headers={"Cache-Control": "max-age=0"})
    assert origin.count("GET", PATH) == 2
    later = client.get(PATH)
    assert later.headers["cache-control"] == "no-cache"
    assert origin.count("GET", PATH) == 3


def test_rfc9111_3_2_edge_only_fields_are_stored_but_never_sent() -> None:
    raw = [("cdn-cache-control", "max-age=60"), ("surrogate-control", "max-age=9"), ("a", "1")]
    kept = stored_fields(raw, 1000.0)
    assert ("cdn-cache-control", "max-age=60") in kept and (
        "surrogate-control",
        "max-age=9",
    ) in kept
    head = response_head(200, kept, length=0, age=0, cache_status="pkgedge; hit").lower()
    assert b"cdn-cache-control" not in head and b"surrogate-control" not in head
    assert b"\r\na: 1\r\n" in head


@pytest.mark.parametrize(
    "edge_field",
    [
        ("CDN-Cache-Control", "max-age=3600"),
        ("Pkgedge-CDN-Cache-Control", "max-age=3600"),
        ("Surrogate-Control", "max-age=3600"),
    ],
)
def test_rfc9111_3_2_a_304_without_edge_fields_keeps_the_stored_ones(
    origin: ScriptedOrigin, client: httpx.Client, edge_field: tuple[str, str]
) -> None:
    # Cache-Control alone would make every request a revalidation; the stored edge-only
    # field gives an hour, and a 304 that does not repeat it does not take it away
    first = Reply(
        200,
        [("Date", http_date()), ("Cache-Control", "max-age=0"), ("ETag", '"v1"'), edge_field],
        b"body",
    )
    origin.script("GET", PATH, first, Reply(304, [("Date", http_date()), ("ETag", '"v1"')]))
    client.get(PATH)
    assert hit(client.get(PATH))
    client.get(PATH, headers={"Cache-Control": "max-age=0"})  # revalidated: 304
    assert origin.count("GET", PATH) == 2
    later = client.get(PATH)
    assert hit(later) and origin.count("GET", PATH) == 2
    assert edge_field[0].lower() not in later.headers


@pytest.mark.parametrize(
    ("stored_etag", "etag304", "selects"),
    [
        ('"v1"', '"v1"', True),
        ('"v1"', '"v2"', False),
        ('"v1"', 'W/"v1"', True),  # weak comparison for a weak validator
        ('W/"v1"', 'W/"v1"', True),
        ('W/"v1"', '"v1"', False),  # a strong validator needs the same strong one stored
        (None, '"v1"', False),
        ('"v1"', None, True),  # no validator in the 304: the edge asked about this one
    ],
)
def test_rfc9111_4_3_4_which_stored_response_a_304_selects(
    stored_etag: str | None, etag304: str | None, selects: bool
) -> None:
    stored = {"etag": stored_etag} if stored_etag else {}
    fresh = {"etag": etag304} if etag304 else {}
    assert not_modified_selects(stored, fresh) is selects


def test_rfc9111_4_3_4_edge_refetches_when_the_304_is_for_another_representation(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    def headers(etag: str, version: str) -> list[tuple[str, str]]:
        return [
            ("Date", http_date()),
            ("Cache-Control", "max-age=3600"),
            ("ETag", etag),
            ("X-Version", version),
        ]

    origin.script(
        "GET",
        PATH,
        Reply(200, headers('"v1"', "1"), b"old"),
        Reply(304, headers('"v2"', "2")),
        Reply(200, headers('"v2"', "2"), b"new"),
    )
    client.get(PATH)
    again = client.get(PATH, headers={"Cache-Control": "max-age=0"})
    assert again.content == b"new" and again.headers["x-version"] == "2"
    seen = origin.requests("GET", PATH)
    assert len(seen) == 3
    assert seen[1].get("if-none-match") == '"v1"'
    assert seen[2].get("if-none-match") is None  # the whole object, unconditionally
    later = client.get(PATH)
    assert hit(later) and later.content == b"new"
