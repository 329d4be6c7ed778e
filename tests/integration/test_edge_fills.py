"""The fetch side with real processes: collapsing, streaming misses, large objects with flat
memory, stale-while-revalidate, stale-if-error, killed workers and graceful shutdown."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from support.edge import EdgeFactory, EdgeProcess, children_of, parse_cache_status
from support.upstream import UpstreamIndex, expected_bytes, sha256_of_big


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Download(threading.Thread):
    """A client that streams one URL and hashes what it receives."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers or {}
        self.status = 0
        self.size = 0
        self.sha = hashlib.sha256()
        self.cache_status = ""
        self.first_byte_at = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        try:
            conn.request(
                "GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=self.headers
            )
            resp = conn.getresponse()
            self.status = resp.status
            self.cache_status = resp.getheader("cache-status", "")
            while chunk := resp.read(1 << 20):
                if not self.size:
                    self.first_byte_at = time.monotonic()
                self.size += len(chunk)
                self.sha.update(chunk)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            conn.close()


def test_concurrent_misses_collapse_into_one_fetch_and_stream(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    """Varnish's busy object: 12 clients on 2 workers, one origin fetch, and every client
    receives bytes while the origin is still sending (the origin is throttled)."""
    edge: EdgeProcess = edge_factory(workers=2)
    size = 8 * 1024 * 1024
    path = f"/big/{size}"
    url = f"{edge.url}{path}?rate={4 * 1024 * 1024}"
    # the query string is part of the cache key, so every client asks the same URL
    clients = [Download(url) for _ in range(12)]
    for c in clients:
        c.start()
    # while the origin is still sending (2 s at 4 MiB/s), the first bytes have arrived
    deadline = time.monotonic() + 30
    while not all(c.size for c in clients) and time.monotonic() < deadline:
        time.sleep(0.02)
    streamed_before_end = edge.stats()["bytes_from_origin"]
    for c in clients:
        c.join(60)
    assert all(c.error is None for c in clients), [c.error for c in clients]
    assert all(c.status == 200 for c in clients)
    want = sha256_of_big(size)
    assert all(c.sha.hexdigest() == want for c in clients)
    assert upstream.count(path, "GET") == 1
    assert streamed_before_end < size, "clients only got bytes after the download ended"
    stats = edge.stats()
    assert stats["collapsed"] >= 1
    assert stats["origin_fetches"] == 1
    statuses = [parse_cache_status(c.cache_status) for c in clients]
    assert sum(1 for s in statuses if s.get("fwd") == "miss") == 12  # all joined the fill


@pytest.mark.slow
def test_one_gigabyte_streams_to_20_clients_with_one_fetch_and_flat_memory(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge: EdgeProcess = edge_factory(workers=2)
    size = 1 << 30
    path = f"/big/{size}"
    workers = edge.worker_pids()
    assert len(workers) == 2
    base_rss = {pid: _vm_rss_kib(pid) for pid in workers}
    clients = [Download(edge.url + path) for _ in range(20)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(600)
    assert all(c.error is None for c in clients), [c.error for c in clients]
    assert [c.size for c in clients] == [size] * 20
    want = sha256_of_big(size)
    assert {c.sha.hexdigest() for c in clients} == {want}
    assert upstream.count(path, "GET") == 1
    # peak resident memory of each worker grew by far less than the object (bounded buffers)
    for pid in workers:
        grown_mib = (_vm_hwm_kib(pid) - base_rss[pid]) / 1024
        assert grown_mib < 100, f"worker {pid} peak RSS grew {grown_mib:.0f} MiB"
    # and it is a hit now, served from the disk tier
    r = edge.get(path, headers={"Range": "bytes=-1000"})
    assert r.status_code == 206
    assert r.content == expected_bytes(size, size - 1000, size - 1)
    assert parse_cache_status(r.headers["cache-status"]).get("hit")


def test_stale_while_revalidate_serves_stale_and_refreshes_once(
    upstream: UpstreamIndex, edge: EdgeProcess
) -> None:
    upstream.set_headers("/simple/", {"Surrogate-Control": "max-age=1, stale-while-revalidate=60"})
    path = "/simple/alpha/"
    assert edge.get(path).status_code == 200
    time.sleep(1.2)  # let the object go stale (real clock: this is an integration test)
    upstream.reset_log()
    r = edge.get(path)
    assert r.status_code == 200
    cs = r.headers["cache-status"]
    assert "hit" in cs and "stale-while-revalidate" in cs, cs
    # the background revalidation reaches the origin exactly once, conditionally
    deadline = time.monotonic() + 10
    while not upstream.count(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    # once the refresh is stored, hits are fresh again (poll: the 304 is processed
    # asynchronously); the origin was asked exactly once, conditionally
    deadline = time.monotonic() + 10
    while "stale" in (cs := edge.get(path).headers["cache-status"]):
        assert time.monotonic() < deadline, cs
        time.sleep(0.05)
    assert "hit" in cs
    reqs = upstream.requests(path)
    assert len(reqs) == 1
    assert "if-none-match" in {k.lower() for k in reqs[0].headers}


def test_stale_if_error_when_the_origin_is_down_or_failing(
    upstream: UpstreamIndex, edge: EdgeProcess
) -> None:
    upstream.set_headers("/simple/", {"Surrogate-Control": "max-age=1, stale-if-error=600"})
    path = "/simple/beta/"
    body = edge.get(path).content
    time.sleep(1.2)
    upstream.fail(path, 503)
    r = edge.get(path)
    assert r.status_code == 200 and r.content == body
    assert "stale-if-error" in r.headers["cache-status"]
    upstream.clear_faults()
    upstream.stop()
    r = edge.get(path)
    assert r.status_code == 200 and r.content == body
    assert "stale-if-error" in r.headers["cache-status"]
    # without stale-if-error permission, an error is an error
    r = edge.get("/simple/never-fetched/")
    assert r.status_code in (502, 504)
    assert r.headers["content-type"].startswith("text/plain")


def test_a_killed_worker_never_leaves_a_partial_object(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge: EdgeProcess = edge_factory(workers=1)
    size = 16 * 1024 * 1024
    path = f"/big/{size}?rate={2 * 1024 * 1024}"
    client = Download(edge.url + path)
    client.start()
    deadline = time.monotonic() + 20
    while client.size < 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.02)
    (worker,) = edge.worker_pids()
    os.kill(worker, signal.SIGKILL)
    client.join(30)
    assert client.size < size  # the client saw a truncated response
    edge.wait_workers(1, exclude=[worker])
    r = edge.get(path.split("?", maxsplit=1)[0] + f"?rate={64 * 1024 * 1024}")
    assert r.status_code == 200
    # the URL above is another key; the killed one must be a clean miss, never a partial hit
    again = Download(edge.url + path.replace(str(2 * 1024 * 1024), str(64 * 1024 * 1024)))
    again.run()
    assert again.sha.hexdigest() == sha256_of_big(size)
    killed = Download(edge.url + path)
    killed.run()
    assert killed.size == size
    assert killed.sha.hexdigest() == sha256_of_big(size)
    assert "miss" in killed.cache_status or "hit" in killed.cache_status


def test_sigterm_lets_in_flight_responses_finish(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge: EdgeProcess = edge_factory(workers=1)
    size = 6 * 1024 * 1024
    client = Download(f"{edge.url}/big/{size}?rate={3 * 1024 * 1024}")
    client.start()
    deadline = time.monotonic() + 20
    while not client.size and time.monotonic() < deadline:
        time.sleep(0.02)
    assert edge.stop() == 0
    client.join(30)
    assert client.error is None
    assert client.size == size
    assert client.sha.hexdigest() == sha256_of_big(size)
    # no leftovers in tmp/ after a clean stop
    assert not [p for p in (edge.cache_dir / "tmp").iterdir() if p.is_file()]


def test_workers_share_one_cache(upstream: UpstreamIndex, edge_factory: EdgeFactory) -> None:
    edge: EdgeProcess = edge_factory(workers=2)
    path = "/simple/gamma/"
    for _ in range(40):  # new connections land on both workers
        r = httpx.get(edge.url + path, headers={"Pkgedge-Trace": "1"})
        assert r.status_code == 200
    assert upstream.count(path) == 1
    assert edge.stats()["hits"] >= 39
    assert len(children_of(edge.pid)) == 2


def test_upstream_timeouts_answer_504_and_the_edge_keeps_serving(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge = edge_factory(
        extra_args=["--first-byte-timeout", "0.5", "--between-bytes-timeout", "0.5"]
    )
    upstream.hang("/simple/alpha/", seconds=5)
    r = edge.get("/simple/alpha/")
    assert r.status_code == 504
    assert "timeout" in r.text
    upstream.clear_faults()
    # a response that stalls mid-body is cut off, and never stored
    size = 4 * 1024 * 1024
    stalled = Download(f"{edge.url}/big/{size}?rate=1")  # 1 byte/s: stalls at once
    stalled.run()
    assert stalled.size < size
    r = edge.get("/simple/beta/")
    assert r.status_code == 200
    assert edge.stats()["origin_errors"] >= 1
