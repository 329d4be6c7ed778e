"""End to end: real pip and uv install through a real edge process in front of a real upstream.

The edge is started by the ``edge_factory`` fixture (``pkgedge edge ...`` as a subprocess), the
upstream is ``support.upstream.UpstreamIndex`` on 127.0.0.1. Nothing here leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.clients import clean_env, install
from support.edge import EdgeFactory, EdgeProcess, parse_cache_status
from support.upstream import PIP_ACCEPT, UpstreamIndex

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

#: The Accept header uv sends for index pages (pip's is ``PIP_ACCEPT``).
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
ACCEPT = {"pip": PIP_ACCEPT, "uv": UV_ACCEPT}
ALPHA_WHEEL = "/files/alpha/alpha-1.0-py3-none-any.whl"


def imported_versions(target: Path, *modules: str) -> list[str]:
    """``__version__`` of *modules* imported from *target* (PYTHONPATH) in a fresh interpreter."""
    code = (
        "import importlib, sys; "
        "print(*[importlib.import_module(m).__version__ for m in sys.argv[1:]])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *modules],
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=str(target)),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def cache_status(resp: httpx.Response) -> dict[str, Any]:
    return parse_cache_status(resp.headers.get("cache-status"))


def is_hit(resp: httpx.Response) -> bool:
    return bool(cache_status(resp).get("hit"))


def is_miss(resp: httpx.Response) -> bool:
    status = cache_status(resp)
    return status.get("fwd") == "miss" or bool(status.get("miss"))


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def file_links(page: httpx.Response) -> list[str]:
    """Absolute URLs of the files an index page links to (HTML or PEP 691 JSON)."""
    if "json" in page.headers.get("content-type", ""):
        urls = [f["url"] for f in page.json()["files"]]
    else:
        urls = [u.split("#", 1)[0] for u in re.findall(r'href="([^"]+)"', page.text)]
    return [str(page.url.join(u)) for u in urls]


def normalized(page: httpx.Response) -> dict[str, Any]:
    """A PEP 691 page with each file URL replaced by its resolved path (an edge may rewrite
    relative links to absolute paths)."""
    doc: dict[str, Any] = page.json()
    for f in doc["files"]:
        f["url"] = page.url.join(f["url"]).path
    return doc


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_install_through_misses_then_from_cache_with_origin_down(
    installer: str,
    upstream: UpstreamIndex,
    edge_factory: EdgeFactory,
    tmp_path: Path,
) -> None:
    edge = edge_factory()
    upstream.reset_log()

    # 1. cold cache: everything is fetched from the origin
    install(installer, edge.url + "/simple/", tmp_path / "first", "alpha")
    assert imported_versions(tmp_path / "first", "alpha", "beta") == ["1.0", "1.1"]
    for path in ("/simple/alpha/", "/simple/beta/", "/files/alpha/", "/files/beta/"):
        assert upstream.count(path) >= 1, (path, upstream.log)
    assert upstream.count(ALPHA_WHEEL, method="GET", exact=True) == 1
    first = edge.stats()
    assert first["misses"] >= 4
    assert first["origin_fetches"] >= 4

    # 2. the origin is gone: a fresh target installs from the edge's cache alone
    upstream.stop()
    upstream.reset_log()
    install(installer, edge.url + "/simple/", tmp_path / "second", "alpha")
    assert imported_versions(tmp_path / "second", "alpha", "beta") == ["1.0", "1.1"]
    second = edge.stats()
    # pip sends "Cache-Control: max-age=0" for index pages: an edge that honours it tries to
    # revalidate and serves them stale (stale-if-error); the files are plain hits
    served = (second["hits"] - first["hits"]) + (second["stale"] - first["stale"])
    assert served >= 6, (first, second)
    assert second["bytes_from_origin"] == first["bytes_from_origin"], (first, second)
    assert upstream.count() == 0

    # 3. and says so
    page = edge.get("/simple/alpha/", headers={"Accept": ACCEPT[installer]})
    assert page.status_code == 200
    assert is_hit(page), page.headers.get("cache-status")
    assert "age" in page.headers
    wheel = edge.get(ALPHA_WHEEL)
    assert wheel.status_code == 200
    assert is_hit(wheel), wheel.headers.get("cache-status")
    assert (
        hashlib.sha256(wheel.content).hexdigest()
        == upstream.file("alpha-1.0-py3-none-any.whl").sha256
    )


def test_second_worker_serves_what_the_first_fetched(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge = edge_factory(workers=2)
    assert len(edge.wait_workers(2)) == 2
    upstream.reset_log()
    expected_page = normalized(
        httpx.get(upstream.url + "/simple/alpha/", headers={"Accept": PIP_ACCEPT})
    )
    expected_wheel = upstream.file("alpha-1.0-py3-none-any.whl").sha256
    upstream.reset_log()

    statuses = []
    for _ in range(40):  # a new connection each time: the kernel spreads them over workers
        page = edge.get("/simple/alpha/", headers={"Accept": PIP_ACCEPT})
        assert page.status_code == 200
        assert normalized(page) == expected_page
        statuses.append(is_hit(page))
        wheel = edge.get(ALPHA_WHEEL)
        assert wheel.status_code == 200
        assert hashlib.sha256(wheel.content).hexdigest() == expected_wheel
        statuses.append(is_hit(wheel))
    assert upstream.count("/simple/alpha/") == 1, upstream.log
    assert upstream.count(ALPHA_WHEEL, exact=True) == 1, upstream.log
    assert statuses.count(False) == 2  # the two first requests, every other one a hit


def test_replacement_workers_serve_from_the_shared_cache(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge = edge_factory(workers=2)
    old = edge.wait_workers(2)
    upstream.reset_log()
    assert edge.get("/simple/alpha/", headers={"Accept": PIP_ACCEPT}).status_code == 200
    assert edge.get(ALPHA_WHEEL).status_code == 200
    # no worker that saw the first requests is left
    for pid in old:
        edge.kill_worker(pid)
    new = edge.wait_workers(2, exclude=old)
    assert not set(new) & set(old)
    for _ in range(10):
        page = edge.get("/simple/alpha/", headers={"Accept": PIP_ACCEPT})
        assert page.status_code == 200
        assert is_hit(page), page.headers.get("cache-status")
        assert edge.get(ALPHA_WHEEL).status_code == 200
    assert upstream.count("/simple/alpha/") == 1
    assert upstream.count(ALPHA_WHEEL, exact=True) == 1


def test_purge_by_key_makes_the_next_request_a_miss(
    upstream: UpstreamIndex, edge: EdgeProcess
) -> None:
    accept = {"Accept": PIP_ACCEPT}
    upstream.reset_log()
    first = edge.get("/simple/alpha/", headers=accept)
    assert is_miss(first), first.headers.get("cache-status")
    assert is_hit(edge.get("/simple/alpha/", headers=accept))
    assert edge.get("/simple/beta/", headers=accept).status_code == 200
    assert upstream.count("/simple/alpha/") == 1

    upstream.add_project("alpha", "2.0", requires_dist=["beta"])
    stale = edge.get("/simple/alpha/", headers=accept)
    assert is_hit(stale)
    assert "2.0" not in stale.json()["versions"]  # cached for max-age=60

    purges = edge.stats()["purges"]
    edge.purge(keys=["project/alpha"])
    after = edge.get("/simple/alpha/", headers=accept)
    assert is_miss(after), after.headers.get("cache-status")
    assert "2.0" in after.json()["versions"]
    assert upstream.count("/simple/alpha/") == 2
    assert edge.stats()["purges"] > purges
    # another project's key was not purged
    assert is_hit(edge.get("/simple/beta/", headers=accept))
    assert upstream.count("/simple/beta/") == 1


def test_purge_by_url_and_all(upstream: UpstreamIndex, edge: EdgeProcess) -> None:
    accept = {"Accept": PIP_ACCEPT}
    for path in ("/simple/alpha/", "/simple/beta/", ALPHA_WHEEL):
        assert edge.get(path, headers=accept).status_code == 200
        assert is_hit(edge.get(path, headers=accept))

    edge.purge(urls=[edge.url + ALPHA_WHEEL])
    assert is_miss(edge.get(ALPHA_WHEEL))
    assert is_hit(edge.get("/simple/alpha/", headers=accept))

    edge.purge(all=True)
    assert is_miss(edge.get("/simple/alpha/", headers=accept))
    assert is_miss(edge.get("/simple/beta/", headers=accept))
    assert upstream.count(ALPHA_WHEEL, exact=True) == 2


def test_soft_purge_revalidates(upstream: UpstreamIndex, edge: EdgeProcess) -> None:
    accept = {"Accept": PIP_ACCEPT}
    first = edge.get("/simple/alpha/", headers=accept)
    assert first.status_code == 200
    upstream.reset_log()
    edge.purge(keys=["project/alpha"], soft=True)
    again = edge.get("/simple/alpha/", headers=accept)
    assert again.status_code == 200
    assert normalized(again) == normalized(first)
    # served stale while revalidating, or revalidated first: either way a conditional request
    assert wait_for(lambda: upstream.count("/simple/alpha/") >= 1), upstream.log
    conditional = upstream.requests("/simple/alpha/")[0].headers
    assert "if-none-match" in conditional or "if-modified-since" in conditional


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_file_host_urls_are_rewritten_through_the_edge(
    installer: str,
    upstream_factory: Callable[..., UpstreamIndex],
    edge_factory: EdgeFactory,
    tmp_path: Path,
) -> None:
    origin = upstream_factory(file_host=True)
    assert origin.file_server is not None
    edge = edge_factory(origin.index_url)
    file_host = origin.files_url
    assert file_host != origin.url

    install(installer, edge.url + "/simple/", tmp_path / "first", "alpha")
    assert imported_versions(tmp_path / "first", "alpha", "beta") == ["1.0", "1.1"]
    assert origin.count("/files/alpha/", server="files") >= 1
    assert origin.count("/files/beta/", server="files") >= 1

    # the edge's pages point at the edge, never at the file host
    for accept in ("text/html", PIP_ACCEPT):
        page = edge.get("/simple/alpha/", headers={"Accept": accept})
        assert page.status_code == 200
        links = file_links(page)
        assert links
        assert all(link.startswith(edge.url + "/") for link in links), links

    # with the file host gone, a fresh install still works from the edge's cache
    origin.file_server.stop()
    install(installer, edge.url + "/simple/", tmp_path / "second", "alpha")
    assert imported_versions(tmp_path / "second", "alpha", "beta") == ["1.0", "1.1"]


def test_graceful_stop_and_restart_keeps_the_disk_cache(
    upstream: UpstreamIndex, edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    edge = edge_factory(workers=2)
    edge.wait_workers(2)
    install("pip", edge.url + "/simple/", tmp_path / "first", "alpha")
    assert edge.stop() == 0, edge.diagnostics()
    assert not edge.leaked_workers

    upstream.stop()
    edge.restart()
    install("pip", edge.url + "/simple/", tmp_path / "second", "alpha")
    assert imported_versions(tmp_path / "second", "alpha", "beta") == ["1.0", "1.1"]
    assert edge.stats()["hits"] >= 4


def test_admin_requires_the_token(edge: EdgeProcess) -> None:
    assert edge.admin_request("GET", "/stats", token=None).status_code in (401, 403)
    assert edge.admin_request("POST", "/purge", token="wrong", json={"all": True}).status_code in (
        401,
        403,
    )
    stats = edge.stats()
    for name in (
        "requests",
        "hits",
        "misses",
        "stale",
        "passes",
        "bytes_to_clients",
        "bytes_from_origin",
        "origin_fetches",
        "collapsed",
        "purges",
        "memory_objects",
        "memory_bytes",
        "disk_objects",
        "disk_bytes",
    ):
        assert name in stats, json.dumps(stats)
