"""Origin down: the edge serves what it has cached past its freshness (the grace), for an
upstream that sends no stale-if-error. Real edge processes in front of the real test upstream,
stopped, killed mid-response, answering 500 and 503, or hanging past the first-byte timeout."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.edge import EdgeFactory, EdgeProcess, parse_cache_status
from support.upstream import UpstreamIndex

PAGE = "/simple/gamma/"
FILES = ("/files/gamma/gamma-0.1-py3-none-any.whl", "/files/gamma/gamma-0.1.tar.gz")
#: short upstream timeouts, so a hanging upstream fails fast
TIMEOUTS = [
    "--connect-timeout",
    "1s",
    "--first-byte-timeout",
    "1s",
    "--between-bytes-timeout",
    "1s",
]


def static_upstream(upstream: UpstreamIndex, cache_control: str = "max-age=0, public") -> None:
    """Every answer is stale at once and carries no stale-if-error (validators only)."""
    upstream.set_headers("/", {"Cache-Control": cache_control, "Surrogate-Control": None})


def warm(edge: EdgeProcess) -> dict[str, bytes]:
    bodies = {}
    for path in (PAGE, *FILES):
        r = edge.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text)
        bodies[path] = r.content
    return bodies


def change_gamma(upstream: UpstreamIndex) -> None:
    """New bytes under the same file names: revalidations get 200 with a whole new body."""
    upstream.add_project("gamma", "0.1", sdist=True, extra_files={"gamma/new.py": "X = 2\n"})


FAULTS: dict[str, Callable[[UpstreamIndex], None]] = {
    "stopped": lambda u: u.stop(),
    "500": lambda u: u.fail("/", 500) and None,
    "503": lambda u: u.fail("/", 503) and None,
    "hang": lambda u: u.hang("/") and None,
    "killed-mid-response": lambda u: (change_gamma(u), u.truncate("/", after_bytes=20))[0],
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_every_cached_object_is_served_stale_while_the_origin_fails(
    upstream: UpstreamIndex, edge_factory: EdgeFactory, fault: str
) -> None:
    static_upstream(upstream)
    edge = edge_factory(extra_args=TIMEOUTS, access_log="-")
    bodies = warm(edge)
    FAULTS[fault](upstream)
    # twice, the second time as pip asks (max-age=0): nothing cached was replaced by an error
    # or a partial body
    for headers in ({}, {"Cache-Control": "max-age=0"}):
        for path, body in bodies.items():
            r = edge.get(path, headers=headers)
            assert r.status_code == 200, (fault, path, r.status_code, r.text)
            assert r.content == body, (fault, path)
            cs = parse_cache_status(r.headers["cache-status"])
            assert cs.get("fwd") == "stale" and cs.get("detail") == "grace", (fault, cs)
    # the access log says so for every one of them
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logged = [
            json.loads(line)
            for line in edge.output
            if line.startswith("{") and "detail=grace" in line
        ]
        if len(logged) >= 2 * len(bodies):
            break
        time.sleep(0.1)
    assert {rec["path"] for rec in logged} == set(bodies), list(edge.output)[-20:]
    # and the edge's log says why
    assert "failed" in edge.log_path.read_text() and "the stored copy is kept" in (
        edge.log_path.read_text()
    )
    # the origin is back: the edge revalidates and serves what the origin has now
    upstream.clear_faults()
    if not upstream.running:
        upstream.start()
    r = edge.get(PAGE)
    assert r.status_code == 200
    assert parse_cache_status(r.headers["cache-status"]).get("detail") != "grace"
    if fault == "killed-mid-response":
        assert r.content != bodies[PAGE]  # the new page, whole


@pytest.mark.parametrize(
    "cache_control",
    ["max-age=0, must-revalidate", "max-age=0, proxy-revalidate", "no-cache"],
)
def test_must_revalidate_and_no_cache_get_504_when_the_origin_is_down(
    upstream: UpstreamIndex, edge_factory: EdgeFactory, cache_control: str
) -> None:
    static_upstream(upstream, cache_control)
    edge = edge_factory(extra_args=TIMEOUTS)
    warm(edge)
    upstream.stop()
    for path in (PAGE, *FILES):
        r = edge.get(path)
        assert r.status_code == 504, (path, r.status_code)
        assert r.headers["content-type"].startswith("text/plain")
        assert "revalidated" in r.text


def test_grace_is_configurable_per_kind_of_object(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    static_upstream(upstream)
    edge = edge_factory(extra_args=[*TIMEOUTS, "--grace", "0"])
    bodies = warm(edge)
    upstream.stop()
    r = edge.get(PAGE)  # no grace for index pages: the origin's error
    assert r.status_code == 502, r.text
    for path in FILES:  # files keep the default: unlimited
        r = edge.get(path)
        assert r.status_code == 200 and r.content == bodies[path]
        assert parse_cache_status(r.headers["cache-status"]).get("detail") == "grace"


def test_concurrent_requests_in_two_workers_all_get_the_stale_copy(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    """Collapsed waiters, in the worker that fetches and in the other one, fall back too."""
    static_upstream(upstream)
    edge = edge_factory(workers=2, extra_args=TIMEOUTS)
    bodies = warm(edge)
    upstream.hang("/")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda path: (path, edge.get(path)), list(bodies) * 4))
    for path, r in answers:
        assert r.status_code == 200 and r.content == bodies[path], (path, r.status_code)
        assert parse_cache_status(r.headers["cache-status"]).get("fwd") == "stale"
