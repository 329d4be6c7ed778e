"""RFC 9111 §4.4: invalidation after unsafe requests.

A non-error (2xx, 3xx) response to an unsafe method invalidates the stored responses for the
target URI, and for the Location and Content-Location URIs when they are on the same host; an
error response invalidates nothing, and neither does a safe method.
"""

from __future__ import annotations

import httpx
import pytest

from pkgedge.cache.invalidate import invalidated_paths
from pkgedge.edge.rewrite import Rewriter
from support.scripted import Reply, ScriptedOrigin, http_date

ORIGIN = "http://127.0.0.1:9"
REWRITER = Rewriter(ORIGIN + "/simple/")


def paths(method: str, status: int, resp: dict[str, str], target: str = "/simple/a/") -> list[str]:
    return invalidated_paths(
        method,
        status,
        target,
        resp,
        base=ORIGIN + target,
        host="edge.test:8080",
        to_edge=REWRITER.to_edge,
    )


# -- the pure decision ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "PROPFIND"])
@pytest.mark.parametrize("status", [200, 201, 204, 301, 303, 399])
def test_rfc9111_4_4_non_error_unsafe_invalidates_target(method: str, status: int) -> None:
    # methods whose safety is unknown (PROPFIND here) count as unsafe
    assert paths(method, status, {}) == ["/simple/a/"]


@pytest.mark.parametrize("status", [100, 400, 403, 404, 409, 500, 503])
def test_rfc9111_4_4_error_response_invalidates_nothing(status: int) -> None:
    assert paths("POST", status, {"location": "/simple/b/"}) == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE", "get"])
def test_rfc9111_4_4_safe_methods_invalidate_nothing(method: str) -> None:
    assert paths(method, 200, {"location": "/simple/b/"}) == []


def test_rfc9111_4_4_location_and_content_location_on_the_same_host() -> None:
    resp = {"location": "/simple/b/", "content-location": "../c/"}
    assert paths("POST", 303, resp) == ["/simple/a/", "/simple/b/", "/simple/c/"]


def test_rfc9111_4_4_absolute_uri_on_the_origin_or_the_edge_host_counts_as_same_host() -> None:
    resp = {
        "location": ORIGIN + "/simple/b/?x=1",
        "content-location": "http://EDGE.test:8080/simple/c/",
    }
    assert paths("PUT", 201, resp) == ["/simple/a/", "/simple/b/", "/simple/c/"]


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:10/simple/b/",  # same address, other port: another origin
        "http://other.test/simple/b/",
        "https://127.0.0.1:9/simple/b/",  # other scheme
        "mailto:someone@example.test",
        "",
    ],
)
def test_rfc9111_4_4_other_hosts_are_not_invalidated(location: str) -> None:
    assert paths("POST", 201, {"location": location}) == ["/simple/a/"]


def test_rfc9111_4_4_paths_are_cache_paths() -> None:
    resp = {"location": "/simple/./b/../%62/"}
    assert paths("DELETE", 200, resp, target="/simple/%61/") == ["/simple/a/", "/simple/b/"]


# -- through a real edge -------------------------------------------------------------------


def _cacheable(origin: ScriptedOrigin, path: str) -> None:
    origin.script(
        "GET",
        path,
        Reply(200, [("Date", http_date()), ("Cache-Control", "max-age=3600")], path.encode()),
    )


def _stored(origin: ScriptedOrigin, client: httpx.Client, *paths: str) -> None:
    for path in paths:
        _cacheable(origin, path)
        client.get(path)
        client.get(path)
        assert origin.count("GET", path) == 1, f"{path} should be stored"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_rfc9111_4_4_edge_invalidates_target_after_unsafe_success(
    origin: ScriptedOrigin, client: httpx.Client, method: str
) -> None:
    _stored(origin, client, "/simple/a/")
    origin.script(method, "/simple/a/", Reply(200, [("Content-Type", "text/plain")], b"done"))
    resp = client.request(method, "/simple/a/", content=b"payload")
    assert resp.status_code == 200 and resp.content == b"done"
    assert origin.requests(method, "/simple/a/")[0].body == b"payload"  # relayed to the origin
    client.get("/simple/a/")
    assert origin.count("GET", "/simple/a/") == 2  # fetched again


@pytest.mark.parametrize("status", [400, 403, 409, 500])
def test_rfc9111_4_4_edge_keeps_stored_response_after_failed_unsafe_request(
    origin: ScriptedOrigin, client: httpx.Client, status: int
) -> None:
    _stored(origin, client, "/simple/a/")
    origin.script("POST", "/simple/a/", Reply(status, [("Cache-Control", "no-store")], b"no"))
    assert client.post("/simple/a/", content=b"x").status_code == status
    client.get("/simple/a/")
    assert origin.count("GET", "/simple/a/") == 1  # still a hit


def test_rfc9111_4_4_edge_invalidates_same_host_location_and_content_location(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _stored(origin, client, "/simple/a/", "/simple/b/", "/simple/c/", "/simple/d/")
    origin.script(
        "POST",
        "/simple/form/",
        Reply(
            303,
            [
                ("Location", "/simple/b/"),
                ("Content-Location", origin.url + "/simple/c/"),
            ],
        ),
    )
    assert client.post("/simple/form/", content=b"x").status_code == 303
    for path in ("/simple/b/", "/simple/c/", "/simple/a/", "/simple/d/"):
        client.get(path)
    assert origin.count("GET", "/simple/b/") == 2
    assert origin.count("GET", "/simple/c/") == 2
    assert origin.count("GET", "/simple/a/") == 1  # neither target nor named: kept
    assert origin.count("GET", "/simple/d/") == 1


def test_rfc9111_4_4_edge_ignores_location_on_another_host(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _stored(origin, client, "/simple/b/")
    origin.script(
        "POST", "/simple/form/", Reply(201, [("Location", "http://127.0.0.2:1/simple/b/")])
    )
    assert client.post("/simple/form/", content=b"x").status_code == 201
    client.get("/simple/b/")
    assert origin.count("GET", "/simple/b/") == 1


def test_rfc9111_4_4_safe_method_through_the_edge_invalidates_nothing(
    origin: ScriptedOrigin, client: httpx.Client
) -> None:
    _stored(origin, client, "/simple/a/")
    origin.script("OPTIONS", "/simple/a/", Reply(204, [("Allow", "GET, POST")]))
    assert client.options("/simple/a/").status_code == 204
    client.get("/simple/a/")
    assert origin.count("GET", "/simple/a/") == 1
