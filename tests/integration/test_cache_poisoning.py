"""Cache poisoning: no request changes what another client receives.

Every test drives a fresh real edge (``edge`` / ``edge_factory``) in front of the real test
upstream (``upstream``), whose request log shows exactly what reached the origin. The pattern
is always the same: an attacker-shaped request first (usually on a miss, when it could decide
what is stored), then a normal client, who must get the normal answer.
"""

from __future__ import annotations

import re
import secrets
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from support.edge import EdgeProcess, parse_cache_status
from support.upstream import JSON_CT, PIP_ACCEPT, UpstreamIndex

ALPHA = "/simple/alpha/"
ALPHA_WHEEL = "alpha-1.0-py3-none-any.whl"
BETA_WHEELS = ["beta-1.0-py3-none-any.whl", "beta-1.1-py3-none-any.whl"]
HTML_ACCEPT = "text/html"


# -- helpers ---------------------------------------------------------------------------------


def cache_status(resp: httpx.Response) -> dict[str, str | bool]:
    value = resp.headers.get("cache-status")
    assert value, f"no Cache-Status on {resp.request.method} {resp.url}"
    return parse_cache_status(value)


def is_hit(resp: httpx.Response) -> bool:
    return cache_status(resp).get("hit") is True


def was_stored(resp: httpx.Response) -> bool:
    return cache_status(resp).get("stored") is True


def assert_project_page(resp: httpx.Response, project: str, files: list[str]) -> None:
    """*resp* is the normal HTML page of *project*: its title, exactly *files*, links that
    stay on the edge."""
    assert resp.status_code == 200, (resp.status_code, resp.text[:200])
    assert resp.headers["content-type"].startswith("text/html"), resp.headers["content-type"]
    body = resp.text
    assert f"<title>Links for {project}</title>" in body, body[:300]
    assert re.findall(r">([^<>]+)</a>", body) == files, body
    for href in re.findall(r'href="([^"]*)"', body):
        assert href.startswith("/files/"), f"link leaves the edge: {href}"
        assert "evil" not in href


def assert_alpha_page(resp: httpx.Response) -> None:
    assert_project_page(resp, "alpha", [ALPHA_WHEEL])


def raw(edge: EdgeProcess, payload: bytes, timeout: float = 10.0) -> bytes:
    """*payload* on a raw socket; everything the edge sends until it closes."""
    u = urlsplit(edge.url)
    assert u.hostname == "127.0.0.1"
    with socket.create_connection((u.hostname, u.port or 80), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while data := sock.recv(65536):
                out += data
        except (ConnectionResetError, TimeoutError):
            pass
    return out


def origin_requests(upstream: UpstreamIndex, path: str) -> list[tuple[str, dict[str, str]]]:
    return [(r.path, r.headers) for r in upstream.requests(path, exact=True)]


# -- 1. unkeyed headers ------------------------------------------------------------------------

UNKEYED = [
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Scheme", "nothttps"),
    ("X-Forwarded-Proto", "nothttps"),
    ("X-Forwarded-Port", "1337"),
    ("X-Original-URL", "/simple/gamma/"),
    ("X-Rewrite-URL", "/simple/gamma/"),
    ("X-HTTP-Method-Override", "POST"),
    ("X-HTTP-Method-Override", "PURGE"),
    ("X-Method-Override", "PURGE"),
    ("X-Host", "evil.example"),
    ("X-Original-Host", "evil.example"),
    ("x-FORWARDED-host", "evil.example"),  # field names are case-insensitive
]
UNKEYED_UNDERSCORE = [
    ("X_Forwarded_Host", "evil.example"),
    ("X_Original_URL", "/simple/gamma/"),
    ("X_HTTP_Method_Override", "PURGE"),
]


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


@pytest.mark.parametrize(
    ("name", "value"),
    [pytest.param(n, v, id=f"{n}:{v}") for n, v in UNKEYED]
    + [
        pytest.param(
            n,
            v,
            id=f"{n}:{v}",
        )
        for n, v in UNKEYED_UNDERSCORE
    ],
)
def test_unkeyed_header_on_a_miss_never_reaches_the_origin(
    edge: EdgeProcess, upstream: UpstreamIndex, name: str, value: str
) -> None:
    poisoned = edge.get(ALPHA, headers={name: value, "Accept": HTML_ACCEPT})
    assert_alpha_page(poisoned)
    assert was_stored(poisoned)
    seen = origin_requests(upstream, ALPHA)
    assert len(seen) == 1
    _, headers = seen[0]
    relayed = {n: v for n, v in headers.items() if _canonical(n) == _canonical(name)}
    assert not relayed, f"{name} reached the origin: {relayed}"
    assert value not in headers.values()
    assert not upstream.requests("/simple/gamma/"), "the origin was asked for the rewrite URL"
    assert [r.method for r in upstream.log] == ["GET"], "a method override was honoured"

    normal = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert is_hit(normal)
    assert_alpha_page(normal)
    assert normal.content == poisoned.content


def test_unkeyed_headers_never_reach_the_origin_on_a_pass(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    """A POST is relayed (the origin answers it), without the unkeyed fields either."""
    headers = {n: v for n, v in UNKEYED}
    with edge.client() as c:
        r = c.post("/simple/", content=b"x", headers=headers)
    assert r.status_code == 405  # the origin's own answer to an upload here
    [(path, seen)] = [(p, h) for p, h in origin_requests(upstream, "/simple/")]
    assert path == "/simple/"
    assert not {n for n in seen if _canonical(n) in {_canonical(k) for k, _ in UNKEYED}}


def test_host_and_forwarded_fields_do_not_shape_a_cached_redirect(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    """The origin redirects /simple/Alpha/ to the canonical name (cacheable, public). The
    client's Host, X-Forwarded-Host and Forwarded never reach it, so the stored Location cannot
    point elsewhere."""
    evil = {
        "Host": "evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Forwarded": "host=evil.example;proto=https",
    }
    first = edge.get("/simple/Alpha/", headers=evil, follow_redirects=False)
    assert first.status_code == 301
    [(_, seen)] = origin_requests(upstream, "/simple/Alpha/")
    assert "evil" not in " ".join(seen.values()), seen
    assert seen["host"] == f"127.0.0.1:{upstream.port}"
    assert "host=" not in seen.get("forwarded", "")

    normal = edge.get("/simple/Alpha/", follow_redirects=False)
    assert normal.status_code == 301
    assert is_hit(normal)
    assert normal.headers["location"] == "/simple/alpha/"
    assert "evil" not in first.headers["location"]


# -- 2. fat GET ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"Content-Length: %d\r\n\r\n%s", id="content-length"),
        pytest.param(b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", id="chunked"),
    ],
)
def test_fat_get_body_never_reaches_the_origin(
    edge: EdgeProcess, upstream: UpstreamIndex, framing: bytes
) -> None:
    body = b"format=json&x-original-url=/simple/gamma/"
    head = b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nConnection: close\r\n"
    out = raw(edge, head + framing % (len(body), body))
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert b"Links for alpha" in out
    [(_, seen)] = origin_requests(upstream, ALPHA)
    assert "content-length" not in seen and "transfer-encoding" not in seen, seen
    assert len(upstream.log) == 1, upstream.log  # the body was not taken for a request

    normal = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert is_hit(normal)
    assert_alpha_page(normal)

    # a fat GET on the cached page is answered from cache, unchanged
    out = raw(edge, head + framing % (len(body), body))
    assert out.startswith(b"HTTP/1.1 200 ") and b"hit" in out.partition(b"\r\n\r\n")[0]
    assert len(upstream.log) == 1


# -- 3. parameter cloaking -------------------------------------------------------------------


def test_query_strings_on_file_routes_are_hits_on_the_same_object(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    path = f"/files/alpha/{ALPHA_WHEEL}"
    expected = upstream.file(ALPHA_WHEEL).path.read_bytes()  # type: ignore[union-attr]
    first = edge.get(path + "?x=1")  # cold, with a query: the origin gets the bare path
    assert first.status_code == 200 and first.content == expected
    assert [r.path for r in upstream.requests("/files/")] == [path]
    for query in ("", "?x=1", f"?cb={secrets.token_hex(8)}", "?x=1&y=2", "?format=json", "?"):
        r = edge.get(path + query)
        assert r.status_code == 200 and r.content == expected, query
        assert is_hit(r), (query, r.headers.get("cache-status"))
    assert upstream.count("/files/") == 1, [r.path for r in upstream.requests("/files/")]


@pytest.mark.parametrize(
    "query",
    [
        "?utm=1;format=json",
        "?utm=1&format=json;x=1",
        "?x=1&format=json",
        "?format=json&format=html",
        "?cb=5f3a9c1e",  # a cache buster (fixed: the same tests in every xdist worker)
    ],
)
def test_cloaked_simple_query_never_changes_the_plain_page(
    edge: EdgeProcess, upstream: UpstreamIndex, query: str
) -> None:
    cloaked = edge.get(ALPHA + query, headers={"Accept": HTML_ACCEPT})
    assert cloaked.status_code == 200
    assert cloaked.headers["content-type"].startswith("text/html")
    for r in upstream.log:
        # at most the one format= parameter (PEP 691's only one) reaches the origin
        _, _, sent = r.path.partition("?")
        assert not sent or (sent.startswith("format=") and "&" not in sent), r.path
        assert "utm" not in r.path and "cb=" not in r.path, r.path

    normal = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert_alpha_page(normal)
    as_json = edge.get(ALPHA, headers={"Accept": PIP_ACCEPT})
    assert as_json.headers["content-type"].startswith(JSON_CT)
    assert as_json.json()["name"] == "alpha"
    again = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert is_hit(again)
    assert_alpha_page(again)


def test_a_query_without_format_shares_the_plain_page(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    first = edge.get(ALPHA + "?utm=1;format=json", headers={"Accept": HTML_ACCEPT})
    assert_alpha_page(first)
    assert [r.path for r in upstream.log] == [ALPHA]
    normal = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert is_hit(normal)
    assert normal.content == first.content


# -- 4. path confusion -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "same_as_alpha"),
    [
        ("/simple/alpha/..%2f..%2fbeta/", False),
        ("/simple/alpha/..%2F..%2Fbeta/", False),
        ("/simple/./alpha/", True),
        ("/simple/%61lpha/", True),
        ("/simple/%61%6C%70%68%61/", True),
        ("/simple//alpha/", False),
        ("/files/../simple/alpha/", True),
        ("/simple/beta/../alpha/", True),
        ("/simple/alpha/%2e%2e/beta/", False),
        ("/simple/alpha;x=1/", False),
    ],
)
def test_path_confusion_never_changes_the_normal_page(
    edge: EdgeProcess, upstream: UpstreamIndex, path: str, same_as_alpha: bool
) -> None:
    confused = edge.get(path, headers={"Accept": HTML_ACCEPT}, follow_redirects=False)
    assert confused.status_code < 500
    if same_as_alpha:
        assert_alpha_page(confused)

    normal = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert_alpha_page(normal)
    beta = edge.get("/simple/beta/", headers={"Accept": HTML_ACCEPT})
    assert_project_page(beta, "beta", BETA_WHEELS)
    if same_as_alpha:
        # a normalised-equivalent path shares the object: one origin fetch for both
        assert is_hit(normal)
        assert upstream.count(ALPHA, exact=True) == 1

    again = edge.get(path, headers={"Accept": HTML_ACCEPT}, follow_redirects=False)
    assert again.status_code == confused.status_code
    final = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert is_hit(final)
    assert final.content == normal.content


# -- 5. credentials and cookies --------------------------------------------------------------


def test_authorized_response_is_not_stored_for_others_unless_public(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    upstream.set_headers(
        "/simple/gamma/", {"Cache-Control": "max-age=60", "Surrogate-Control": None}
    )
    private = edge.get("/simple/gamma/", headers={"Authorization": "Bearer s3cret"})
    assert private.status_code == 200
    assert not was_stored(private)
    [(_, seen)] = origin_requests(upstream, "/simple/gamma/")
    assert seen.get("authorization") == "Bearer s3cret"  # the origin decides, with it

    anonymous = edge.get("/simple/gamma/")
    assert anonymous.status_code == 200
    assert not is_hit(anonymous)
    assert upstream.count("/simple/gamma/") == 2
    assert "authorization" not in origin_requests(upstream, "/simple/gamma/")[1][1]


def test_authorized_response_marked_public_may_be_shared(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    """Cache-Control: public (the default pages) lets a shared cache store it (RFC 9111 §3.5);
    the next client then gets that same page."""
    first = edge.get(ALPHA, headers={"Authorization": "Bearer s3cret", "Accept": HTML_ACCEPT})
    assert_alpha_page(first)
    normal = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert_alpha_page(normal)


def test_cookie_never_makes_a_personal_response_shared(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    """On a non-public page, a request with a Cookie must not leave a response made for that
    cookie in the cache. The edge drops Cookie from cache fills, so what it stores is the
    anonymous page: either nothing is stored, or the origin never saw the cookie."""
    upstream.set_headers(
        "/simple/gamma/", {"Cache-Control": "max-age=60", "Surrogate-Control": None}
    )
    first = edge.get("/simple/gamma/", headers={"Cookie": "session=s3cret"})
    assert first.status_code == 200
    [(_, seen)] = origin_requests(upstream, "/simple/gamma/")
    anonymous = edge.get("/simple/gamma/")
    assert anonymous.status_code == 200
    if was_stored(first) or is_hit(anonymous):
        assert "cookie" not in seen, "a response made for a cookie was stored for everyone"
        assert anonymous.content == first.content
    for _, headers in origin_requests(upstream, "/simple/gamma/"):
        assert "s3cret" not in " ".join(headers.values())


def test_set_cookie_response_is_never_stored(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    upstream.set_headers("/simple/beta/", {"Set-Cookie": "sid=abc; Path=/"})
    first = edge.get("/simple/beta/")
    assert first.status_code == 200
    assert not was_stored(first)
    second = edge.get("/simple/beta/")
    assert second.status_code == 200
    assert not is_hit(second), second.headers.get("cache-status")
    assert upstream.count("/simple/beta/") == 2
    upstream.clear_headers()
    third = edge.get("/simple/beta/")  # now storable: stored, and never with the old cookie
    assert "set-cookie" not in third.headers
    fourth = edge.get("/simple/beta/")
    assert is_hit(fourth)
    assert "set-cookie" not in fourth.headers


def test_set_cookie_still_reaches_the_client_it_was_made_for(
    edge: EdgeProcess, upstream: UpstreamIndex
) -> None:
    upstream.set_headers("/simple/beta/", {"Set-Cookie": "sid=abc; Path=/"})
    first = edge.get("/simple/beta/")
    assert first.status_code == 200
    assert first.headers.get("set-cookie") == "sid=abc; Path=/"


# -- 6. errors caused by one request's shape are never cached --------------------------------

BAD_SHAPES = [
    pytest.param(
        b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        id="cl-te-400",
    ),
    pytest.param(
        b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
        id="head-too-large-431",
    ),
    pytest.param(
        b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
        + b"\r\n",
        id="too-many-fields-431",
    ),
    pytest.param(
        b"POST /simple/alpha/ HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\nhello",
        id="body-too-large-413",
    ),
    pytest.param(b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", id="dup-host-400"),
    pytest.param(b"GET /simple/al\x01pha/ HTTP/1.1\r\nHost: x\r\n\r\n", id="ctl-in-target-400"),
]


@pytest.mark.parametrize("payload", BAD_SHAPES)
def test_error_from_a_bad_request_is_never_cached(
    edge: EdgeProcess, upstream: UpstreamIndex, payload: bytes
) -> None:
    out = raw(edge, payload)
    status = int(out[9:12])
    assert status in (400, 413, 431), out[:200]
    head = out.partition(b"\r\n\r\n")[0].lower()
    assert b"cache-control: no-store" in head
    assert upstream.count() == 0

    normal = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert_alpha_page(normal)
    assert was_stored(normal)
    assert is_hit(edge.get(ALPHA, headers={"Accept": HTML_ACCEPT}))


def test_unsatisfiable_range_is_never_cached(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    path = f"/files/alpha/{ALPHA_WHEEL}"
    expected = upstream.file(ALPHA_WHEEL).path.read_bytes()  # type: ignore[union-attr]
    r = edge.get(path, headers={"Range": "bytes=999999-"})
    assert r.status_code == 416
    full = edge.get(path)
    assert full.status_code == 200 and full.content == expected
    assert is_hit(edge.get(path))
    for logged in upstream.requests("/files/"):
        assert "range" not in logged.headers  # the edge fetches whole objects


# -- 7. Accept folding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        "application/vnd.pypi.simple.v1+json;q=0, */*",
        "*/*;q=0.1, application/vnd.pypi.simple.v1+json;q=0",
        "application/vnd.pypi.simple.v1+json;q=abc, text/html",
        "application/vnd.pypi.simple.v1+json;q=0, text/html;q=0",
        "application/vnd.pypi.simple.v1+json ; q=0 , text/html",
        "APPLICATION/VND.PYPI.SIMPLE.V1+JSON;Q=0, */*",
        "",
    ],
)
def test_weird_accept_cannot_put_json_in_the_html_slot(
    edge: EdgeProcess, upstream: UpstreamIndex, accept: str
) -> None:
    first = edge.get(ALPHA, headers={"Accept": accept})
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/html"), first.headers["content-type"]
    assert_alpha_page(first)
    # the origin is asked with the edge's own Accept for the variant, never the client's
    [(_, seen)] = origin_requests(upstream, ALPHA)
    assert seen["accept"] == "text/html", seen

    html = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert is_hit(html)
    assert_alpha_page(html)
    as_json = edge.get(ALPHA, headers={"Accept": PIP_ACCEPT})
    assert as_json.headers["content-type"].startswith(JSON_CT)
    assert as_json.json()["name"] == "alpha"
    again = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert_alpha_page(again)


def test_json_first_never_fills_the_html_slot(edge: EdgeProcess, upstream: UpstreamIndex) -> None:
    as_json = edge.get(ALPHA, headers={"Accept": PIP_ACCEPT})
    assert as_json.headers["content-type"].startswith(JSON_CT)
    for accept in ("text/html", "*/*", "text/html, */*;q=0.8"):
        r = edge.get(ALPHA, headers={"Accept": accept})
        assert_alpha_page(r)
    assert is_hit(edge.get(ALPHA, headers={"Accept": PIP_ACCEPT}))


# -- 8. the edge's own fields are never taken from clients -----------------------------------

INTERNAL = [
    pytest.param("Pkgedge-Trace", "1", id="pkgedge-trace"),
    pytest.param("Pkgedge-Purge", "all", id="pkgedge-other"),
    pytest.param("Surrogate-Capability", 'edge="ESI/1.0"', id="surrogate-capability"),
    pytest.param(
        "Cache-Status",
        "pkgedge; hit",
        id="cache-status",
    ),
]


@pytest.mark.parametrize(("name", "value"), INTERNAL)
@pytest.mark.parametrize("route", ["fill", "pass"])
def test_internal_fields_from_clients_are_not_forwarded(
    edge: EdgeProcess, upstream: UpstreamIndex, name: str, value: str, route: str
) -> None:
    if route == "fill":
        r = edge.get(ALPHA, headers={name: value, "Accept": HTML_ACCEPT})
        assert_alpha_page(r)
    else:
        with edge.client() as c:
            r = c.post("/simple/", content=b"x", headers={name: value})
        assert r.status_code == 405  # the origin's
    assert len(upstream.log) == 1
    seen = upstream.log[0].headers
    assert name.lower() not in seen, f"{name} reached the origin on a {route}: {seen}"
    normal = edge.get(ALPHA, headers={"Accept": HTML_ACCEPT})
    assert_alpha_page(normal)
