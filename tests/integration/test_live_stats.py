"""Live stats (issue 9): per-second series merged over the workers, exact under load; the
event stream; savings and the latency histogram in /metrics; rollups that survive restarts."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.edge import EdgeProcess
from support.upstream import UpstreamIndex, populate_default

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpstreamIndex]:
    up = UpstreamIndex(tmp_path_factory.mktemp("upstream"))
    populate_default(up)
    up.start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def edge2(index: UpstreamIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    base = tmp_path_factory.mktemp("edge2")
    edge = EdgeProcess(index.index_url, base / "cache", workers=2, log_path=base / "err.log")
    edge.start()
    yield edge
    edge.stop()


def live(edge: EdgeProcess, seconds: int = 600) -> dict[str, Any]:
    resp = edge.admin_request("GET", f"/stats/live?seconds={seconds}")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def settle(edge: EdgeProcess, want: int, *fields: str) -> dict[str, Any]:
    """The live view once the sum of ``fields`` (default: requests) since start reached
    ``want`` (the log phase of the last responses may run just after the client got them)."""
    for _ in range(200):
        data = live(edge)
        if sum(data["since_start"][f] for f in fields or ("requests",)) >= want:
            return data
        time.sleep(0.05)
    return live(edge)


def load(edge: EdgeProcess, paths: list[str], threads: int = 8) -> list[int]:
    """GET every path once, from ``threads`` threads, each request on a new connection (so
    the kernel spreads them over the workers); the statuses."""
    statuses: list[int] = []
    lock = threading.Lock()
    chunks = [paths[i::threads] for i in range(threads)]

    host, port = edge.url.split("://", 1)[1].rsplit(":", 1)

    def run(chunk: list[str]) -> None:
        for path in chunk:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                conn.request("GET", path, headers={"connection": "close"})
                resp = conn.getresponse()
                resp.read()
            finally:
                conn.close()
            with lock:
                statuses.append(resp.status)

    workers = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return statuses


def test_counts_are_exact_across_two_workers(edge2: EdgeProcess, index: UpstreamIndex) -> None:
    before = live(edge2)["since_start"]
    files = [f.url_path for name in index.projects() for f in index.files(name)]
    paths = (["/simple/alpha/", "/simple/beta/", *files] * 40)[:260] + ["/nowhere"] * 40
    statuses = load(edge2, paths)
    sent = len(paths)
    assert statuses.count(404) == 40
    settle(edge2, before["requests"] + sent)
    classes = [f"status_{k}xx" for k in range(1, 6)]
    # the fast path's hits join status_2xx at each worker's next sample (within a second)
    data = settle(edge2, sum(before[c] for c in classes) + sent, *classes)
    now = data["since_start"]
    grown = {k: now[k] - before[k] for k in now}
    assert grown["requests"] == sent  # sent = counted
    assert sum(data["series"]["requests"]) == now["requests"]  # the window holds all of it
    assert grown["status_2xx"] == statuses.count(200)
    assert grown["status_4xx"] == 40
    served = grown["hits"] + grown["misses"] + grown["stale"] + grown["passes"]
    assert served + grown["status_4xx"] >= sent - grown["collapsed"]
    assert data["workers"] == 2
    per_worker = data["requests_per_worker"]
    assert sum(per_worker) == now["requests"]
    assert all(n > 0 for n in per_worker), per_worker  # both workers served and were counted
    assert len(data["series"]["requests"]) == data["seconds"] == 600
    lat = data["latency_window_ms"]
    assert lat["count"] == sum(data["series"]["origin_fetches"]) > 0
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]
    assert data["savings"]["origin_requests_avoided"] == (
        data["totals"]["hits"] + data["totals"]["stale"] + data["totals"]["collapsed"]
    )
    assert 0 < data["savings"]["origin_bytes_avoided"] == data["totals"]["bytes_from_cache"]
    assert data["totals"]["bytes_from_cache"] < data["totals"]["bytes_to_clients"]


def test_event_stream_sends_a_second_at_a_time(edge2: EdgeProcess) -> None:
    headers = {"Authorization": f"Bearer {edge2.token}"}
    events: list[dict[str, Any]] = []
    with (
        httpx.Client(timeout=10) as c,
        c.stream("GET", edge2.admin_url + "/stats/stream", headers=headers) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == 2:
                    break
    assert events[1]["now"] > events[0]["now"]
    for key in ("second", "minute", "latency_ms", "savings_minute", "since_start"):
        assert key in events[0]


def test_metrics_have_savings_and_the_latency_histogram(edge2: EdgeProcess) -> None:
    edge2.get("/simple/gamma/")
    text = edge2.admin_request("GET", "/metrics").text
    assert 'pkgedge_origin_fetch_seconds_bucket{le="+Inf"}' in text
    assert "pkgedge_origin_requests_avoided_total" in text
    assert "pkgedge_egress_saved_total" in text
    assert "pkgedge_status_2xx_total" in text


def test_bad_queries_are_clear_errors(edge2: EdgeProcess) -> None:
    r = edge2.admin_request("GET", "/stats/live?seconds=lots")
    assert r.status_code == 400 and "seconds must be a number" in r.text
    r = edge2.admin_request("GET", "/stats/history?resolution=week")
    assert r.status_code == 400 and "minute or hour" in r.text
    assert edge2.admin_request("GET", "/stats/live", token=None).status_code == 401


def history(edge: EdgeProcess, resolution: str) -> dict[str, Any]:
    resp = edge.admin_request("GET", f"/stats/history?resolution={resolution}&hours=3")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def test_rollups_survive_a_restart(index: UpstreamIndex, tmp_path: Path) -> None:
    edge = EdgeProcess(index.index_url, tmp_path / "cache", workers=1, log_path=tmp_path / "e.log")
    try:
        edge.start()
        for _ in range(7):
            assert edge.get("/simple/alpha/").status_code == 200
        edge.restart()  # the parent stores what the last minute's rollup had not
        assert history(edge, "minute")["totals"]["requests"] == 7
        for _ in range(5):
            assert edge.get("/simple/beta/").status_code == 200
        edge.restart()
        minutes, hours = history(edge, "minute"), history(edge, "hour")
        assert minutes["totals"]["requests"] == hours["totals"]["requests"] == 12
        assert minutes["totals"]["status_2xx"] == 12
        assert minutes["savings"]["origin_requests_avoided"] == minutes["totals"]["hits"] > 0
        days = edge.admin_request("GET", "/stats/savings?days=2").json()
        assert (
            sum(d["origin_requests_avoided"] for d in days["per_day"]) == minutes["totals"]["hits"]
        )
        assert "egress_price_per_gb" in days["assumptions"]
    finally:
        edge.stop()
