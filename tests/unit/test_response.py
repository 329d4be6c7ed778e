"""Response building: ranges, encodings, heads."""

from __future__ import annotations

import gzip

import brotli
import pytest

from pkgedge.http import response as dl


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-99", 1000, (0, 99)),
        ("bytes=100-", 1000, (100, 999)),
        ("bytes=-500", 1000, (500, 999)),
        ("bytes=-5000", 1000, (0, 999)),  # suffix longer than the object: whole object
        ("bytes=990-2000", 1000, (990, 999)),  # last clipped to the object
        ("bytes=0-0", 1, (0, 0)),
        ("bytes=0-1,5-9", 1000, None),  # multi-range: send the whole object
        ("items=0-1", 1000, None),
        ("bytes=9-5", 1000, None),  # invalid: ignored
        (None, 1000, None),
    ],
)
def test_parse_range(value: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert dl.parse_range(value, size) == expected


@pytest.mark.parametrize("value", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_ranges(value: str) -> None:
    with pytest.raises(dl.RangeNotSatisfiable):
        dl.parse_range(value, 1000)


@pytest.mark.parametrize(
    ("header", "coding"),
    [
        ("gzip, deflate, br", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("identity", None),
        ("*", "br"),
        (None, None),
        ("gzip;q=0", None),
    ],
)
def test_choose_encoding(header: str | None, coding: str | None) -> None:
    assert dl.choose_encoding(header) == coding


def test_compress_round_trips() -> None:
    body = b"<a href='x'>x</a>\n" * 200
    assert gzip.decompress(dl.compress(body, "gzip")) == body
    assert brotli.decompress(dl.compress(body, "br")) == body


def test_compressible_by_type_and_not_twice() -> None:
    assert dl.compressible([("content-type", "application/vnd.pypi.simple.v1+json")])
    assert dl.compressible([("content-type", "text/html; charset=utf-8")])
    assert not dl.compressible([("content-type", "application/octet-stream")])
    assert not dl.compressible([("content-type", "text/html"), ("content-encoding", "gzip")])


def test_encoded_etag_differs_per_coding() -> None:
    assert dl.encoded_etag('"abc"', "gzip") == '"abc-gzip"'
    assert dl.encoded_etag('W/"abc"', "br") == 'W/"abc-br"'


def test_add_vary() -> None:
    assert dl.add_vary([], "Accept-Encoding") == [("vary", "Accept-Encoding")]
    assert dl.add_vary([("vary", "Accept")], "Accept-Encoding") == [
        ("vary", "Accept, Accept-Encoding")
    ]
    assert dl.add_vary([("vary", "accept-encoding")], "Accept-Encoding") == [
        ("vary", "accept-encoding")
    ]


def test_response_head_writes_own_fields_last_and_drops_stored_ones() -> None:
    head = dl.response_head(
        200,
        [("content-type", "text/plain"), ("content-length", "999"), ("age", "5")],
        length=3,
        age=7,
        cache_status="pkgedge; hit; ttl=1",
    )
    text = head.decode()
    assert text.startswith("HTTP/1.1 200 OK\r\n")
    assert "content-length: 3\r\n" in text and "999" not in text
    assert "age: 7\r\n" in text and "age: 5" not in text
    assert text.endswith("\r\n\r\n")


def test_error_response_is_plain_text_and_not_cacheable() -> None:
    data = dl.error_response(404, "not found", close=True).decode()
    assert data.startswith("HTTP/1.1 404 Not Found\r\n")
    assert "content-type: text/plain" in data
    assert "cache-control: no-store" in data
    assert "connection: close" in data
    assert data.endswith("not found\n")
