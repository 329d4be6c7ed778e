"""Protection with real slow clients, a looping downloader, and allow/deny lists that reload.

Deadlines here are the edge's own (set short with flags); the assertions are about what
happens (a connection is closed, a normal client is answered), not about how fast."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx

from support.clients import run_install
from support.edge import EdgeFactory, EdgeProcess
from support.upstream import UpstreamIndex

PIP_UA = 'pip/24.0 {"installer":{"name":"pip","version":"24.0"},"python":"3.11.7","ci":null}'


def _conn(edge: EdgeProcess, source: str = "127.0.0.1") -> socket.socket:
    host, port = edge.url.split("://", 1)[1].rsplit(":", 1)
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(10)
    s.connect((host, int(port)))
    return s


def _closed_by_peer(s: socket.socket, timeout: float) -> bytes:
    """Read until the edge closes the connection; ``<still open>`` is appended if it did not
    within ``timeout``. Returns what the edge sent."""
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except TimeoutError:
        return data + b"<still open>"
    except ConnectionResetError:
        pass
    return data


def test_slowloris_slow_post_and_slow_read_do_not_stop_other_clients(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge = edge_factory(
        extra_args=["--header-timeout", "1", "--body-timeout", "1", "--send-timeout", "1"]
    )
    assert edge.get("/simple/alpha/").status_code == 200
    # slowloris: many connections each dribbling a request head
    loris = [_conn(edge) for _ in range(50)]
    for s in loris:
        s.sendall(b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\n")
    # slow POST: a body that never completes
    slow_post = _conn(edge)
    slow_post.sendall(b"POST /legacy/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
    # slow read: asks for a large object and never reads it
    big = 64 * 1024 * 1024
    edge.get(f"/big/{big}")  # cache it first
    host, port = edge.url.split("://", 1)[1].rsplit(":", 1)
    slow_reader = socket.socket()
    slow_reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
    slow_reader.connect((host, int(port)))
    slow_reader.sendall(f"GET /big/{big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    # meanwhile, other clients are served
    for _ in range(20):
        r = httpx.get(edge.url + "/simple/alpha/", timeout=5)
        assert r.status_code == 200
    # and the slow ones are cut off by their deadlines
    for s in loris[:5]:
        s.sendall(b"X-a: b\r\n")
        answer = _closed_by_peer(s, 5)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
    assert _closed_by_peer(slow_post, 5).startswith(b"HTTP/1.1 408 ")
    time.sleep(4)  # past the send deadline: the edge has given up on this reader
    got = 0
    slow_reader.settimeout(10)
    try:
        while chunk := slow_reader.recv(1 << 20):  # what was in flight, then the end
            got += len(chunk)
    except ConnectionResetError:
        pass
    assert got < big
    assert edge.stats()["timeouts"] >= 7
    for s in [*loris, slow_post, slow_reader]:
        s.close()


def test_connection_cap_per_client_keeps_accept_working(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge = edge_factory(extra_args=["--max-connections-per-client", "20"])
    flood = [_conn(edge, "127.0.0.2") for _ in range(40)]
    time.sleep(0.3)
    refused = 0
    for s in flood:
        s.settimeout(0.5)
        try:
            s.sendall(b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\n\r\n")
            if s.recv(20) == b"":
                refused += 1
        except (ConnectionResetError, BrokenPipeError):
            refused += 1
        except TimeoutError:
            pass
    assert refused >= 20
    r = httpx.get(edge.url + "/simple/alpha/", timeout=5)  # another address: served
    assert r.status_code == 200
    assert edge.stats()["connections_refused"] >= 20
    for s in flood:
        s.close()


def _loop_download(
    edge: EdgeProcess, path: str, stop: threading.Event, statuses: list[int], retry_after: list[str]
) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10, headers={"User-Agent": PIP_UA}) as client:
        while not stop.is_set() and len(statuses) < 3000:
            r = client.get(edge.url + path)
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry_after.append(r.headers.get("retry-after", ""))
                assert "cache" in r.text  # the reason says how to get unblocked
                break


def test_a_looping_downloader_is_throttled_while_pip_elsewhere_completes(
    upstream: UpstreamIndex, edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    edge = edge_factory(workers=1, extra_args=["--throttled-rate-limit", "1/2"])
    wheel = upstream.file("beta-1.1-py3-none-any.whl")
    path = wheel.url_path
    stop = threading.Event()
    statuses: list[int] = []
    retry_after: list[str] = []
    looper = threading.Thread(
        target=_loop_download, args=(edge, path, stop, statuses, retry_after), daemon=True
    )
    looper.start()
    r = run_install("pip", edge.url + "/simple/", tmp_path / "t", "alpha")
    looper.join(60)
    stop.set()
    assert r.returncode == 0, r.stdout + r.stderr
    assert 429 in statuses, f"never throttled after {len(statuses)} downloads"
    assert retry_after and retry_after[0].isdigit() and int(retry_after[0]) >= 1
    stats = edge.stats()
    assert stats["rate_limited"] >= 1 and stats["signals"] >= 1


def test_deny_list_reloads_without_restart(
    upstream: UpstreamIndex, edge_factory: EdgeFactory, tmp_path: Path
) -> None:
    acl = tmp_path / "acl.txt"
    acl.write_text("# operators' list\ndeny 127.0.0.2\ndeny-ua (?i)badbot\n")
    edge = edge_factory(extra_args=["--acl-file", str(acl)])
    other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=5)
    r = other.get(edge.url + "/simple/alpha/")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/plain")
    r = httpx.get(edge.url + "/simple/alpha/", headers={"User-Agent": "BadBot/1.0"})
    assert r.status_code == 403
    assert httpx.get(edge.url + "/simple/alpha/").status_code == 200
    time.sleep(1.1)  # mtime granularity, and the file is checked at most once a second
    acl.write_text("deny-ua (?i)badbot\n")
    deadline = time.monotonic() + 10
    while other.get(edge.url + "/simple/alpha/").status_code == 403:
        assert time.monotonic() < deadline, "the edited list was never reloaded"
        time.sleep(0.2)
    acl.write_text("this is not a rule\n")  # a bad edit keeps the previous list
    time.sleep(1.5)
    assert (
        httpx.get(edge.url + "/simple/alpha/", headers={"User-Agent": "BadBot/1.0"}).status_code
        == 403
    )
    other.close()
    assert edge.stats()["denied"] >= 3


def test_observe_mode_counts_but_never_refuses(
    upstream: UpstreamIndex, edge_factory: EdgeFactory
) -> None:
    edge = edge_factory(extra_args=["--protection", "observe", "--rate-limit", "1/1"])
    for _ in range(10):
        assert httpx.get(edge.url + "/simple/alpha/", timeout=5).status_code == 200
    stats = edge.stats()
    assert stats["rate_limited"] >= 5 and stats["observed"] >= 5
