"""HTTP semantics of a real ``pkgedge edge`` in front of a real upstream index.

RFC 9110 (semantics: conditionals, ranges, redirects, hop-by-hop fields), RFC 9111 (caching:
Age, revalidation, request Cache-Control) and RFC 9211 (Cache-Status), as seen by clients on
127.0.0.1 and, through the upstream's request log, by the origin.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import brotli
import httpx
import pytest

from support.edge import EdgeFactory, EdgeProcess, parse_cache_status
from support.upstream import JSON_CT, PIP_ACCEPT, UpstreamIndex, expected_bytes

UpstreamFactory = Callable[..., UpstreamIndex]

#: The Accept header uv sends for index pages.
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
IDENTITY = {"Accept-Encoding": "identity"}
#: Surrogate-Control max-age of the upstream's index pages (DEFAULT_PAGE_HEADERS).
PAGE_SURROGATE_MAX_AGE = 3600
WHEEL = "gamma-0.1-py3-none-any.whl"
HOP_BY_HOP = ("keep-alive", "proxy-authenticate", "proxy-connection", "te", "trailer", "upgrade")


# -- helpers ---------------------------------------------------------------------------------


def cs(resp: httpx.Response) -> dict[str, str | bool]:
    """The pkgedge member of the response's Cache-Status (asserting there is one)."""
    value = resp.headers.get("cache-status")
    assert value, f"no Cache-Status on {resp.request.method} {resp.url}: {resp.headers}"
    params = parse_cache_status(value)
    assert value.strip().startswith("pkgedge"), value
    return params


def is_hit(resp: httpx.Response) -> bool:
    return cs(resp).get("hit") is True


def is_stored_miss(resp: httpx.Response) -> bool:
    params = cs(resp)
    return params.get("fwd") == "miss" and params.get("stored") is True


def raw_get(
    edge: EdgeProcess, path: str, headers: Mapping[str, str]
) -> tuple[httpx.Response, bytes]:
    """GET on a new connection; the body exactly as sent (no content decoding)."""
    hdrs = {"Connection": "close", **headers}
    with (
        httpx.Client(timeout=30.0) as client,
        client.stream("GET", edge.url + path, headers=hdrs) as resp,
    ):
        body = b"".join(resp.iter_raw())
    return resp, body


def decode(body: bytes, coding: str | None) -> bytes:
    if coding is None or coding == "identity":
        return body
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        return bytes(brotli.decompress(body))
    raise AssertionError(f"unexpected Content-Encoding {coding!r}")


def vary_names(resp: httpx.Response) -> set[str]:
    return {v.strip().lower() for v in resp.headers.get_list("vary", split_commas=True)}


def wait_stats(
    edge: EdgeProcess, ready: Callable[[dict[str, Any]], bool], timeout: float = 5.0
) -> dict[str, Any]:
    """/stats once *ready* holds (counters of the worker that answered may land a moment
    after its response); the last snapshot if it never does, for the caller to assert on."""
    deadline = time.monotonic() + timeout
    while True:
        stats = edge.stats()
        if ready(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.02)


def raw_exchange(edge: EdgeProcess, data: bytes, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send *data* on a raw socket; (everything received, whether the edge closed)."""
    u = urlsplit(edge.url)
    assert u.hostname == "127.0.0.1"
    with socket.create_connection((u.hostname, u.port or 80), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            return out, True
        except TimeoutError:
            return out, False
    return out, True


def parse_multipart_byteranges(ctype: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) of each part of a multipart/byteranges body."""
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    assert m, ctype
    delim = b"--" + m.group(1).encode()
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        crange = re.search(rb"(?im)^content-range:\s*(.+?)\s*$", head)
        assert crange, head
        parts.append((crange.group(1).decode(), data.removesuffix(b"\r\n")))
    return parts


# -- 1. Cache-Status, Age, edge-only and hop-by-hop fields -----------------------------------


def test_cache_status_and_age_on_miss_then_hit(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    first = edge.get("/simple/beta/", headers=IDENTITY)
    assert first.status_code == 200
    assert is_stored_miss(first), first.headers["cache-status"]
    assert "hit" not in cs(first)
    assert first.headers["age"].isdigit()

    second = edge.get("/simple/beta/", headers=IDENTITY)
    assert second.status_code == 200
    assert second.content == first.content
    params = cs(second)
    assert params.get("hit") is True, second.headers["cache-status"]
    assert "fwd" not in params
    ttl = int(str(params["ttl"]))
    # The lifetime is Surrogate-Control's max-age=3600, not Cache-Control's max-age=60.
    assert PAGE_SURROGATE_MAX_AGE - 30 <= ttl <= PAGE_SURROGATE_MAX_AGE
    age = int(second.headers["age"])
    assert 0 <= age <= 30
    # the client-facing Cache-Control is the origin's, untouched
    assert second.headers["cache-control"] == "max-age=60, public"
    assert upstream.count("/simple/beta/", exact=True) == 1


def test_surrogate_fields_never_reach_the_client(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    # a stored page (miss, hit, HEAD, revalidated, encoded), a stored file, a redirect, an
    # unstorable (passed) page and an error page: the origin sends Surrogate-* on all of them
    upstream.set_headers("/simple/gamma/", {"Cache-Control": "private"})
    upstream.set_headers("/simple/", {"Surrogate-Key": "everything"})  # also on 301/404
    responses = [
        edge.get("/simple/alpha/", headers=IDENTITY),
        edge.get("/simple/alpha/", headers=IDENTITY),
        edge.get("/simple/alpha/", headers={"Accept-Encoding": "gzip"}),
        edge.head("/simple/alpha/"),
        edge.get("/simple/alpha/", headers={"Cache-Control": "no-cache"}),
        edge.get(f"/files/gamma/{WHEEL}"),
        edge.get(f"/files/gamma/{WHEEL}"),
        edge.get("/simple/Alpha/", follow_redirects=False),
        edge.get("/simple/gamma/"),
        edge.get("/simple/no-such-project/"),
    ]
    assert [r.status_code for r in responses] == [200] * 7 + [301, 200, 404]
    for r in responses:
        cs(r)
        assert "surrogate-control" not in r.headers, (r.url, r.headers)
        assert "surrogate-key" not in r.headers, (r.url, r.headers)
    # and the origin did send them (else this test would prove nothing)
    with httpx.Client(base_url=upstream.url) as direct:
        assert direct.get("/simple/alpha/").headers["surrogate-control"]
        assert direct.get("/simple/gamma/").headers["surrogate-key"]


def test_hop_by_hop_fields_from_origin_are_not_relayed(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    hop = {
        "Connection": "X-Hop-Secret",
        "X-Hop-Secret": "origin-private",
        "Keep-Alive": "timeout=30, max=100",
        "Proxy-Authenticate": 'Basic realm="origin"',
        "Proxy-Connection": "keep-alive",
        "X-End-To-End": "kept",
    }
    upstream.set_headers("/simple/beta/", hop)
    upstream.set_headers("/simple/gamma/", {**hop, "Cache-Control": "no-store"})  # a pass
    with httpx.Client(base_url=upstream.url) as direct:  # the origin really sends them
        assert direct.get("/simple/beta/").headers["x-hop-secret"] == "origin-private"
    miss = edge.get("/simple/beta/", headers=IDENTITY)
    hit = edge.get("/simple/beta/", headers=IDENTITY)
    revalidated = edge.get("/simple/beta/", headers={**IDENTITY, "Cache-Control": "max-age=0"})
    passed = edge.get("/simple/gamma/")
    assert is_stored_miss(miss) and is_hit(hit)
    assert "fwd-status" in cs(revalidated)
    assert cs(passed).get("fwd") == "miss" and "stored" not in cs(passed)
    for r in (miss, hit, revalidated, passed):
        assert r.status_code == 200
        assert r.headers["x-end-to-end"] == "kept"
        assert "x-hop-secret" not in r.headers, r.headers
        for name in HOP_BY_HOP:
            assert name not in r.headers, (name, r.headers)
        # only the edge's own connection management (we asked for close)
        assert r.headers.get("connection", "close").lower() == "close"


def test_age_from_origin_is_carried_on_miss_and_hit(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    # RFC 9111 §4.2.3 / §5.1: the response was already 100 s old when the edge got it
    upstream.set_headers("/simple/beta/", {"Age": "100"})
    miss = edge.get("/simple/beta/", headers=IDENTITY)
    hit = edge.get("/simple/beta/", headers=IDENTITY)
    assert is_stored_miss(miss) and is_hit(hit)
    assert int(hit.headers["age"]) >= 100
    assert int(str(cs(hit)["ttl"])) <= PAGE_SURROGATE_MAX_AGE - 100
    assert int(miss.headers["age"]) >= 100


# -- 2. one cached object per Accept variant --------------------------------------------------


def test_pip_and_uv_share_the_json_variant_and_html_clients_the_html_one(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    pip_json = edge.get("/simple/beta/", headers={**IDENTITY, "Accept": PIP_ACCEPT})
    uv_json = edge.get("/simple/beta/", headers={**IDENTITY, "Accept": UV_ACCEPT})
    old_pip_html = edge.get("/simple/beta/", headers={**IDENTITY, "Accept": "text/html"})
    browser_html = edge.get("/simple/beta/", headers={**IDENTITY, "Accept": BROWSER_ACCEPT})
    no_accept = edge.get("/simple/beta/", headers=IDENTITY)

    assert is_stored_miss(pip_json) and is_hit(uv_json)
    assert is_stored_miss(old_pip_html) and is_hit(browser_html) and is_hit(no_accept)

    for r in (pip_json, uv_json):
        assert r.status_code == 200
        assert r.headers["content-type"] == JSON_CT
        doc = r.json()
        assert doc["name"] == "beta"
        assert {f["filename"] for f in doc["files"]} == {
            "beta-1.0-py3-none-any.whl",
            "beta-1.1-py3-none-any.whl",
        }
        assert "accept" in vary_names(r)
    assert uv_json.content == pip_json.content
    for r in (old_pip_html, browser_html, no_accept):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert "beta-1.1-py3-none-any.whl</a>" in r.text
        assert "accept" in vary_names(r)
        assert r.content == old_pip_html.content
    assert pip_json.headers["etag"] != old_pip_html.headers["etag"]

    fetches = upstream.requests("/simple/beta/", "GET", exact=True)
    assert len(fetches) == 2, fetches
    kinds = sorted("json" if "json" in f.headers.get("accept", "") else "html" for f in fetches)
    assert kinds == ["html", "json"]


# -- 3. client conditional requests answered from cache ---------------------------------------


def test_client_conditionals_are_answered_from_cache(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    full = edge.get("/simple/alpha/", headers=IDENTITY)
    assert full.status_code == 200
    etag, modified = full.headers["etag"], full.headers["last-modified"]
    assert is_hit(edge.get("/simple/alpha/", headers=IDENTITY))
    fetched = upstream.count("/simple/alpha/")
    assert fetched == 1

    inm = edge.get("/simple/alpha/", headers={**IDENTITY, "If-None-Match": etag})
    assert inm.status_code == 304
    assert inm.content == b""
    assert inm.headers["etag"] == etag
    assert is_hit(inm)
    assert "surrogate-control" not in inm.headers

    inm_list = edge.get("/simple/alpha/", headers={**IDENTITY, "If-None-Match": f'"other", {etag}'})
    assert inm_list.status_code == 304

    ims = edge.get("/simple/alpha/", headers={**IDENTITY, "If-Modified-Since": modified})
    assert ims.status_code == 304
    assert ims.content == b""
    assert is_hit(ims)

    other = edge.get("/simple/alpha/", headers={**IDENTITY, "If-None-Match": '"not-it"'})
    assert other.status_code == 200
    assert other.content == full.content
    assert is_hit(other)

    old = edge.get(
        "/simple/alpha/", headers={**IDENTITY, "If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    )
    assert old.status_code == 200
    assert old.content == full.content

    # RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present
    both = edge.get(
        "/simple/alpha/",
        headers={**IDENTITY, "If-None-Match": '"not-it"', "If-Modified-Since": modified},
    )
    assert both.status_code == 200
    assert both.content == full.content

    assert upstream.count("/simple/alpha/") == fetched  # all of it from cache


def test_conditional_with_the_encoded_etag_the_edge_sent(edge: EdgeProcess) -> None:
    gz = {"Accept-Encoding": "gzip"}
    edge.get("/simple/beta/", headers=gz)  # miss: identity
    hit = edge.get("/simple/beta/", headers=gz)
    assert hit.headers.get("content-encoding") == "gzip"
    etag = hit.headers["etag"]
    # what pip (requests + cachecontrol) sends when revalidating the page it got
    again = edge.get("/simple/beta/", headers={**gz, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.headers["etag"] == etag


def test_conditionals_do_not_apply_to_stored_non_2xx(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    # RFC 9110 §13.2.1: preconditions are ignored when the response would not be 2xx
    upstream.set_headers("/simple/ghost/", {"Cache-Control": "public, max-age=300", "ETag": '"g"'})
    assert edge.get("/simple/ghost/").status_code == 404
    assert edge.get("/simple/Alpha/", follow_redirects=False).status_code == 301
    for inm in ('"g"', "*"):
        r = edge.get("/simple/ghost/", headers={"If-None-Match": inm})
        assert r.status_code == 404, inm
        assert r.content == b"no such project\n"
    moved = edge.get("/simple/Alpha/", headers={"If-None-Match": "*"}, follow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["location"] == "/simple/alpha/"


def test_only_if_cached_miss_is_504_without_origin_request(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    # RFC 9111 §5.2.1.7
    r = edge.get("/simple/gamma/", headers={"Cache-Control": "only-if-cached"})
    assert r.status_code == 504
    cs(r)
    assert upstream.count("/simple/gamma/") == 0


# -- 4. request Cache-Control: no-cache / max-age=0 -------------------------------------------


@pytest.mark.parametrize("directive", ["no-cache", "max-age=0"])
def test_request_no_cache_revalidates_with_a_conditional_request(
    edge: EdgeProcess, upstream: UpstreamIndex, directive: str
) -> None:
    headers = {**IDENTITY, "Accept": PIP_ACCEPT}
    first = edge.get("/simple/beta/", headers=headers)
    assert is_stored_miss(first)
    etag = first.headers["etag"]
    assert is_hit(edge.get("/simple/beta/", headers=headers))
    before = edge.stats()
    upstream.reset_log()

    r = edge.get("/simple/beta/", headers={**headers, "Cache-Control": directive})
    assert r.status_code == 200
    assert r.content == first.content
    assert r.headers["content-type"] == JSON_CT
    params = cs(r)
    assert params.get("fwd-status") == "304", r.headers["cache-status"]
    assert "hit" not in params
    assert "age" in r.headers

    log = upstream.requests("/simple/beta/", exact=True)
    assert len(log) == 1, log
    assert log[0].method == "GET"
    assert log[0].headers.get("if-none-match") == etag
    after = edge.stats()
    assert after["bytes_from_origin"] - before["bytes_from_origin"] < len(first.content)
    assert after["origin_fetches"] - before["origin_fetches"] == 1

    # the 304 refreshed the stored object: a plain request is a hit again, with the same body
    again = edge.get("/simple/beta/", headers=headers)
    assert is_hit(again)
    assert again.content == first.content
    assert upstream.count("/simple/beta/", exact=True) == 1


def test_request_max_age_0_picks_up_a_changed_page(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    headers = {**IDENTITY, "Accept": PIP_ACCEPT}
    first = edge.get("/simple/beta/", headers=headers)
    assert is_hit(edge.get("/simple/beta/", headers=headers))
    upstream.add_project("beta", "2.0")

    still_cached = edge.get("/simple/beta/", headers=headers)
    assert is_hit(still_cached) and still_cached.content == first.content  # fresh for the edge
    upstream.reset_log()

    changed = edge.get("/simple/beta/", headers={**headers, "Cache-Control": "max-age=0"})
    assert changed.status_code == 200
    assert "2.0" in changed.json()["versions"]
    assert changed.headers["etag"] != first.headers["etag"]
    assert "hit" not in cs(changed)
    assert cs(changed).get("fwd-status", "200") == "200"
    (reval,) = upstream.requests("/simple/beta/", exact=True)
    assert reval.headers.get("if-none-match") == first.headers["etag"]
    later = edge.get("/simple/beta/", headers=headers)
    assert is_hit(later)
    assert later.content == changed.content


# -- 5. ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10_000, 3_000_000], ids=["memory", "disk"])
def test_ranges_from_cache(edge: EdgeProcess, upstream: UpstreamIndex, size: int) -> None:
    path = f"/big/{size}"
    full = expected_bytes(size)
    first = edge.get(path)
    assert first.status_code == 200 and first.content == full
    etag = first.headers["etag"]
    assert first.headers.get("accept-ranges") == "bytes"

    cases = {
        "bytes=0-99": (0, 99),
        "bytes=-500": (size - 500, size - 1),
        "bytes=100-": (100, size - 1),
        f"bytes=5-{size + 1000}": (5, size - 1),  # last-pos beyond the end is clipped
        f"bytes=-{size * 2}": (0, size - 1),  # suffix longer than the object: all of it
    }
    for spec, (lo, hi) in cases.items():
        r = edge.get(path, headers={"Range": spec})
        assert r.status_code == 206, spec
        assert r.headers["content-range"] == f"bytes {lo}-{hi}/{size}", spec
        assert int(r.headers["content-length"]) == hi - lo + 1, spec
        assert r.content == full[lo : hi + 1], spec
        assert is_hit(r), spec

    if_range = edge.get(path, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert if_range.status_code == 206
    assert if_range.content == full[10:20]
    changed = edge.get(path, headers={"Range": "bytes=10-19", "If-Range": '"some-other-etag"'})
    assert changed.status_code == 200
    assert "content-range" not in changed.headers
    assert changed.content == full

    multi = edge.get(path, headers={"Range": "bytes=0-9,20-29"})
    if multi.status_code == 200:
        assert "content-range" not in multi.headers
        assert multi.content == full
    else:
        assert multi.status_code == 206
        ctype = multi.headers["content-type"]
        if ctype.startswith("multipart/byteranges"):
            parts = parse_multipart_byteranges(ctype, multi.content)
            assert parts == [
                (f"bytes 0-9/{size}", full[0:10]),
                (f"bytes 20-29/{size}", full[20:30]),
            ]
        else:  # a server may coalesce ranges into one
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", multi.headers["content-range"])
            assert m and int(m.group(3)) == size
            assert multi.content == full[int(m.group(1)) : int(m.group(2)) + 1]
            assert int(m.group(1)) <= 0 and int(m.group(2)) >= 29

    unsat = edge.get(path, headers={"Range": f"bytes={size}-"})
    assert unsat.status_code == 416
    assert unsat.headers["content-range"] == f"bytes */{size}"
    cs(unsat)

    assert upstream.count(path) == 1  # every answer above came from the one stored object


@pytest.mark.parametrize("size", [10_000, 3_000_000], ids=["memory", "disk"])
def test_range_request_as_the_first_request_caches_the_full_object(
    edge: EdgeProcess, upstream: UpstreamIndex, size: int
) -> None:
    path = f"/big/{size}"
    full = expected_bytes(size)
    lo, hi = size // 2, size // 2 + 999
    first = edge.get(path, headers={"Range": f"bytes={lo}-{hi}"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes {lo}-{hi}/{size}"
    assert first.content == full[lo : hi + 1]
    cs(first)

    # the fill may still be running: a plain GET now joins it (collapsed) or is a hit
    plain = edge.get(path)
    assert plain.status_code == 200
    assert plain.content == full
    assert is_hit(plain) or cs(plain).get("detail") == "collapsed", plain.headers["cache-status"]
    wait_stats(edge, lambda s: s["disk_objects"] >= 1)
    again = edge.get(path)
    assert again.content == full
    assert is_hit(again), again.headers["cache-status"]
    assert upstream.count(path) == 1


def test_ranges_on_a_compressible_page_are_identity_bytes(edge: EdgeProcess) -> None:
    body = edge.get("/simple/beta/", headers=IDENTITY).content
    size = len(body)
    r, raw = raw_get(edge, "/simple/beta/", {"Range": "bytes=0-9", "Accept-Encoding": "gzip, br"})
    assert r.status_code == 206
    assert "content-encoding" not in r.headers
    assert r.headers["content-range"] == f"bytes 0-9/{size}"
    assert raw == body[:10]
    # invalid ranges are ignored: the whole representation
    for spec in ("bytes=9-3", "items=0-3", "bytes=abc"):
        whole = edge.get("/simple/beta/", headers={**IDENTITY, "Range": spec})
        assert whole.status_code == 200, spec
        assert "content-range" not in whole.headers
        assert whole.content == body


# -- 6. compression ---------------------------------------------------------------------------


def test_pages_are_compressed_per_accept_encoding(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    for v in ("1.0", "1.1", "1.2", "2.0", "2.1", "3.0"):
        upstream.add_project("delta", v)
    path = "/simple/delta/"

    first, first_raw = raw_get(edge, path, {"Accept-Encoding": "gzip"})
    assert first.status_code == 200
    identity_body = decode(first_raw, first.headers.get("content-encoding"))
    assert len(identity_body) > 256
    assert b"delta-3.0-py3-none-any.whl" in identity_body

    ident, ident_raw = raw_get(edge, path, IDENTITY)
    assert is_hit(ident)
    assert "content-encoding" not in ident.headers
    assert ident_raw == identity_body
    assert "accept-encoding" in vary_names(ident)

    etags = {"identity": ident.headers["etag"]}
    for coding in ("gzip", "br"):
        r, raw = raw_get(edge, path, {"Accept-Encoding": coding})
        assert r.status_code == 200
        assert is_hit(r)
        assert r.headers["content-encoding"] == coding
        assert "accept-encoding" in vary_names(r)
        assert "accept" in vary_names(r)
        assert int(r.headers["content-length"]) == len(raw)
        assert len(raw) < len(identity_body)
        assert decode(raw, coding) == identity_body
        etags[coding] = r.headers["etag"]
    assert len(set(etags.values())) == 3, etags

    # q=0 refuses a coding
    r, raw = raw_get(edge, path, {"Accept-Encoding": "br;q=0, gzip"})
    assert r.headers["content-encoding"] == "gzip"
    assert decode(raw, "gzip") == identity_body
    r, raw = raw_get(edge, path, {"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in r.headers
    assert raw == identity_body

    assert upstream.count(path) == 1
    # the edge asked the origin for identity
    assert upstream.requests(path)[0].headers.get("accept-encoding", "identity") == "identity"


def test_wheels_are_never_compressed(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    path = f"/files/gamma/{WHEEL}"
    data = Path(str(upstream.file(WHEEL).path)).read_bytes()
    for _ in range(2):  # miss, then hit
        r, raw = raw_get(edge, path, {"Accept-Encoding": "gzip, br"})
        assert r.status_code == 200
        assert "content-encoding" not in r.headers
        assert raw == data
        assert r.headers["etag"] == upstream.file(WHEEL).etag
    assert is_hit(r)


# -- 7. HEAD ----------------------------------------------------------------------------------


def test_head_has_the_headers_of_get_and_no_body(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    for path in ("/simple/alpha/", f"/files/gamma/{WHEEL}"):
        get = edge.get(path, headers=IDENTITY)
        assert get.status_code == 200
        head = edge.head(path, headers=IDENTITY)
        assert head.status_code == 200
        assert head.content == b""
        assert is_hit(head), head.headers["cache-status"]
        for name in ("content-type", "content-length", "etag", "last-modified", "cache-control"):
            assert head.headers.get(name) == get.headers.get(name), name
        assert int(head.headers["content-length"]) == len(get.content)
        assert "age" in head.headers
        assert upstream.count(path, exact=True) == 1

        gz_get, gz_raw = raw_get(edge, path, {"Accept-Encoding": "gzip"})
        gz_head = edge.head(path, headers={"Accept-Encoding": "gzip"})
        assert gz_head.content == b""
        for name in ("content-encoding", "content-length", "etag", "vary"):
            assert gz_head.headers.get(name) == gz_get.headers.get(name), (path, name)
        assert int(gz_head.headers["content-length"]) == len(gz_raw)


def test_head_first_then_get(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    head = edge.head("/simple/gamma/", headers=IDENTITY)
    assert head.status_code == 200
    assert head.content == b""
    cs(head)
    get = edge.get("/simple/gamma/", headers=IDENTITY)
    assert get.status_code == 200
    assert get.headers["content-type"] == head.headers["content-type"]
    assert int(head.headers["content-length"]) == len(get.content)
    assert "gamma-0.1.tar.gz" in get.text
    assert upstream.count("/simple/gamma/") == 1


# -- 8. forwarded request fields --------------------------------------------------------------


def test_x_forwarded_for_and_connection_listed_fields(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    assert edge.get("/simple/alpha/").status_code == 200
    (plain,) = upstream.requests("/simple/alpha/")
    assert plain.headers["x-forwarded-for"] == "127.0.0.1"

    assert edge.get("/simple/beta/", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
    (chained,) = upstream.requests("/simple/beta/")
    assert chained.headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"

    r = edge.get(
        "/simple/gamma/",
        headers={"Connection": "close, X-Secret", "X-Secret": "1", "X-Public": "2"},
    )
    assert r.status_code == 200
    (secret,) = upstream.requests("/simple/gamma/")
    assert "x-secret" not in secret.headers
    assert secret.headers.get("x-public") == "2"
    assert "x-secret" not in secret.headers.get("connection", "").lower()


def test_non_get_requests_are_passed_with_x_forwarded_for(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    with edge.client() as c:
        r = c.post(
            "/simple/alpha/",
            content=b"x=1",
            headers={"X-Forwarded-For": "198.51.100.1", "Connection": "X-Secret", "X-Secret": "1"},
        )
    assert r.status_code == 405  # the origin's answer, relayed
    assert r.headers["allow"] == "GET, HEAD"
    assert cs(r).get("fwd") == "bypass"
    (post,) = upstream.requests("/simple/alpha/", "POST")
    assert post.headers["x-forwarded-for"] == "198.51.100.1, 127.0.0.1"
    assert "x-secret" not in post.headers


# -- 9. upstream redirects --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/simple/Alpha/", "/simple/alpha/"),
        ("/simple/alpha", "/simple/alpha/"),
        ("/simple", "/simple/"),
    ],
)
def test_redirects_stay_on_the_edge(
    edge: EdgeProcess, upstream: UpstreamIndex, path: str, target: str
) -> None:
    r = edge.get(path, follow_redirects=False)
    assert r.status_code == 301
    cs(r)
    location = r.headers["location"]
    absolute = urljoin(edge.url + path, location)
    assert absolute == edge.url + target, location
    assert f"127.0.0.1:{upstream.port}" not in location
    followed = edge.get(path, follow_redirects=True, headers=IDENTITY)
    assert followed.status_code == 200
    assert str(followed.url) == edge.url + target
    assert upstream.count(target, exact=True) == 1


# -- 10. errors -------------------------------------------------------------------------------


def test_unknown_paths_relay_the_upstreams_404(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    for path, body in (
        ("/simple/no-such-project/", b"no such project\n"),
        ("/nope", b"not found\n"),
    ):
        for _ in range(2):
            r = edge.get(path)
            assert r.status_code == 404
            assert r.content == body
            assert "hit" not in cs(r)
        # the origin said no-store: not cached
        assert upstream.count(path, exact=True) == 2


def test_a_cacheable_404_is_cached(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    upstream.set_headers("/simple/ghost/", {"Cache-Control": "public, max-age=300"})
    first = edge.get("/simple/ghost/")
    second = edge.get("/simple/ghost/")
    assert first.status_code == second.status_code == 404
    assert second.content == first.content == b"no such project\n"
    assert is_stored_miss(first)
    assert is_hit(second)
    assert upstream.count("/simple/ghost/") == 1


def _assert_plain_error(r: httpx.Response, statuses: tuple[int, ...]) -> None:
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("text/plain")
    assert "Traceback" not in r.text
    assert 'File "' not in r.text
    assert r.text.strip()
    cs(r)


def test_upstream_down_and_nothing_cached(
    edge_factory: EdgeFactory, upstream_factory: UpstreamFactory
) -> None:
    down = upstream_factory()
    port = down.port
    down.stop()
    edge = edge_factory(upstream=f"http://127.0.0.1:{port}/simple/")
    for path in ("/simple/alpha/", f"/files/gamma/{WHEEL}"):
        _assert_plain_error(edge.get(path), (502, 504))
        head = edge.head(path)
        assert head.status_code in (502, 504)
        assert head.content == b""
    assert edge.running


def test_upstream_that_never_answers_gives_504(
    edge_factory: EdgeFactory, upstream: UpstreamIndex
) -> None:
    edge = edge_factory(extra_args=["--first-byte-timeout", "1"])
    upstream.hang("/simple/alpha/")
    try:
        _assert_plain_error(edge.get("/simple/alpha/"), (504,))
    finally:
        upstream.clear_faults()
    assert edge.get("/simple/alpha/").status_code == 200  # nothing bad was cached


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /simple/ HTTX/1.1\r\nHost: x\r\n\r\n",
        b"GET /simple/ HTTP/1.1 junk\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello
    ],
    ids=["no-version", "bad-version", "trailing-junk", "tls"],
)
def test_malformed_request_line_gets_400_and_close(
    edge: EdgeProcess, upstream: UpstreamIndex, raw: bytes
) -> None:
    out, closed = raw_exchange(edge, raw)
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]
    head, _, body = out.partition(b"\r\n\r\n")
    assert re.search(rb"(?im)^content-type: text/plain", head)
    m = re.search(rb"(?im)^content-length: (\d+)", head)
    assert m and int(m.group(1)) == len(body)
    assert b"Traceback" not in body
    assert closed, "the edge kept the connection open after a 400"
    assert upstream.count() == 0
    assert edge.get("/simple/").status_code == 200  # and the worker still serves


def test_pipelined_valid_request_then_garbage(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    good = b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n"
    out, closed = raw_exchange(edge, good + b"BOGUS LINE\r\n\r\n")
    assert closed
    # the first request is answered (it is a miss: the answer is still pending when the
    # garbage is parsed), then the 400
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert b"Links for alpha" in out
    assert b"HTTP/1.1 400 " in out


# -- 11. admin --------------------------------------------------------------------------------


def test_admin_metrics_healthz_and_auth(edge: EdgeProcess) -> None:
    health = edge.admin_request("GET", "/healthz", token=None)
    assert health.status_code == 200

    assert edge.admin_request("GET", "/stats", token=None).status_code == 401
    assert edge.admin_request("GET", "/metrics", token="wrong").status_code == 401

    edge.get("/simple/")
    metrics = edge.admin_request("GET", "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    lines = metrics.text.splitlines()
    assert "# TYPE pkgedge_requests_total counter" in lines
    samples = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?", name), line
            samples[name] = float(value)
    assert samples["pkgedge_requests_total"] >= 1


def test_stats_count_a_miss_then_a_hit(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    edge.get("/simple/")  # warm up: the counters of the steps below are exact
    base = wait_stats(edge, lambda s: s["requests"] >= 1)

    miss = edge.get("/simple/beta/", headers=IDENTITY)
    assert is_stored_miss(miss)
    after_miss = wait_stats(edge, lambda s: s["misses"] > base["misses"])
    assert after_miss["misses"] - base["misses"] == 1
    assert after_miss["origin_fetches"] - base["origin_fetches"] == 1
    assert after_miss["hits"] == base["hits"]
    assert after_miss["bytes_from_origin"] - base["bytes_from_origin"] >= len(miss.content) - 64

    hit = edge.get("/simple/beta/", headers=IDENTITY)
    assert is_hit(hit)
    after_hit = wait_stats(edge, lambda s: s["hits"] > after_miss["hits"])
    assert after_hit["hits"] - after_miss["hits"] == 1
    assert after_hit["misses"] == after_miss["misses"]
    assert after_hit["origin_fetches"] == after_miss["origin_fetches"]
    assert after_hit["bytes_to_clients"] - after_miss["bytes_to_clients"] >= len(hit.content)
    assert upstream.count("/simple/beta/") == 1


def test_requests_counter_counts_client_requests_only(edge: EdgeProcess) -> None:
    edge.get("/simple/")
    base = edge.stats()
    edge.get("/simple/beta/")
    edge.get("/simple/beta/")
    edge.admin_request("GET", "/metrics")
    edge.admin_request("GET", "/healthz", token=None)
    after = wait_stats(edge, lambda s: s["hits"] >= 1)
    # "requests: client requests received": two client requests since base
    assert after["requests"] - base["requests"] == 2


# -- 12. access log ---------------------------------------------------------------------------


def test_access_log_lines(
    edge_factory: EdgeFactory, upstream: UpstreamIndex, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    edge = edge_factory(access_log=str(log))
    ua = "pkgedge-test/1.0 (access-log)"
    requests = [
        ("GET", "/simple/beta/", 200),
        ("GET", "/simple/beta/", 200),
        ("HEAD", "/simple/beta/", 200),
        ("GET", "/simple/no-such-project/", 404),
        ("GET", "/big/1000", 206),
    ]
    sent = []
    for method, path, _ in requests:
        headers = {"User-Agent": ua, **IDENTITY}
        if path.startswith("/big/"):
            headers["Range"] = "bytes=0-9"
        r = (
            edge.head(path, headers=headers)
            if method == "HEAD"
            else edge.get(path, headers=headers)
        )
        sent.append(r)
    assert [r.status_code for r in sent] == [s for _, _, s in requests]
    assert edge.stop() == 0

    lines = log.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(requests), lines
    keys = {
        "time",
        "client",
        "method",
        "path",
        "status",
        "bytes",
        "cache",
        "duration_ms",
        "user_agent",
    }
    start = time.time() - 600
    for rec, (method, path, status), resp in zip(records, requests, sent, strict=True):
        assert keys <= set(rec), rec
        assert rec["method"] == method
        assert rec["path"] == path
        assert rec["status"] == status
        assert rec["client"] == "127.0.0.1"
        assert rec["user_agent"] == ua
        assert isinstance(rec["bytes"], int)
        # bytes written: head and body (a HEAD: the head only)
        assert rec["bytes"] > len(resp.content) if method == "GET" else rec["bytes"] > 0
        assert isinstance(rec["duration_ms"], (int, float)) and rec["duration_ms"] >= 0
        assert start < rec["time"] <= time.time()
        assert rec["cache"] == resp.headers["cache-status"]
    assert "fwd=miss" in records[0]["cache"]
    assert "hit" in records[1]["cache"]


def test_access_log_cache_field_of_repeated_hits(
    edge_factory: EdgeFactory, upstream: UpstreamIndex, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    edge = edge_factory(access_log=str(log))
    sent = [edge.get("/simple/beta/", headers=IDENTITY) for _ in range(4)]
    assert edge.stop() == 0
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [r["cache"] for r in records] == [r.headers["cache-status"] for r in sent]
