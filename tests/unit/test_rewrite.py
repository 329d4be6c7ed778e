"""File-host rewriting of index pages."""

from __future__ import annotations

import json

from pkgedge.edge.rewrite import Rewriter

R = Rewriter("http://index.test:8000/simple/")
PAGE = "http://index.test:8000/simple/foo/"


def test_relative_links_resolve_to_edge_paths() -> None:
    assert R.to_edge("../../files/foo-1.0.tar.gz#sha256=ab", PAGE) == (
        "/files/foo-1.0.tar.gz#sha256=ab",
        None,
    )


def test_foreign_file_host_goes_through_the_edge() -> None:
    new, origin = R.to_edge("https://files.test/packages/ab/foo.whl#sha256=00", PAGE)
    assert new == "/+f/https/files.test/packages/ab/foo.whl#sha256=00"
    assert origin == "https://files.test"


def test_upstream_url_round_trips_the_rewritten_route() -> None:
    assert R.upstream_url("/+f/https/files.test/packages/ab/foo.whl") == (
        "https://files.test",
        "/packages/ab/foo.whl",
    )
    assert R.upstream_url("/simple/foo/") == ("http://index.test:8000", "/simple/foo/")
    assert R.upstream_url("/+f/ftp/x/y") is None


def test_index_under_another_path_maps_to_simple() -> None:
    r = Rewriter("http://h.test/root/pypi/+simple/")
    assert r.upstream_url("/simple/foo/") == ("http://h.test", "/root/pypi/+simple/foo/")
    assert r.to_edge("http://h.test/root/pypi/+simple/bar/", "http://h.test/x") == (
        "/simple/bar/",
        None,
    )


def test_rewrite_html_body() -> None:
    body = (
        b'<a href="https://files.test/p/a.whl#sha256=1" data-requires-python="&gt;=3">a</a>'
        b'<a href="../../files/b.tar.gz">b</a>'
    )
    new, origins = R.rewrite_body(body, "text/html", PAGE)
    assert b'href="/+f/https/files.test/p/a.whl#sha256=1"' in new
    assert b'href="/files/b.tar.gz"' in new
    assert origins == {"https://files.test"}


def test_rewrite_json_body_stays_valid_json() -> None:
    doc = {"files": [{"filename": "a.whl", "url": "https://files.test/p/a.whl"}]}
    new, origins = R.rewrite_body(
        json.dumps(doc).encode(), "application/vnd.pypi.simple.v1+json", PAGE
    )
    assert json.loads(new)["files"][0]["url"] == "/+f/https/files.test/p/a.whl"
    assert origins == {"https://files.test"}
