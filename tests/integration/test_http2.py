"""HTTP/2 to clients over TLS: a real edge process with a test CA's certificate, real curl,
and the h2 library as a client over a real TLS socket (multiplexing, flow control, floods)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import h2.errors
import h2.settings
import hpack
import pytest
from hyperframe.frame import ContinuationFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from support.edge import EdgeFactory, EdgeProcess, parse_cache_status
from support.h2client import H2Client, StreamResult, alpn_of
from support.tls import LocalCA, make_test_ca
from support.upstream import UpstreamIndex, expected_bytes

ENHANCE_YOUR_CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
MB = 1_000_000


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_edge(ca: LocalCA, edge_factory: EdgeFactory, tmp_path: Path) -> EdgeProcess:
    return edge_factory(extra_args=ca.edge_args(), access_log=str(tmp_path / "access.log"))


def client(edge: EdgeProcess, ca: LocalCA, **kwargs: object) -> H2Client:
    return H2Client(edge.url, str(ca.ca_cert), **kwargs)  # type: ignore[arg-type]


def access_records(edge: EdgeProcess, count: int) -> list[dict[str, object]]:
    """The access log's records once it holds ``count`` (it is flushed about once a second)."""
    path = Path(edge.access_log)
    deadline = time.monotonic() + 20
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            break
        time.sleep(0.1)
    return [json.loads(line) for line in lines]


def curl(ca: LocalCA, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--cacert", str(ca.ca_cert), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def goaway_code(c: H2Client) -> int | None:
    """The error code of the GOAWAY the edge sent before it closed (None: no GOAWAY)."""
    goaways = [f for f in c.raw_frames() if isinstance(f, GoAwayFrame)]
    return goaways[-1].error_code if goaways else None


def no_traceback(edge: EdgeProcess) -> None:
    assert "Traceback" not in edge.stderr_text(), edge.stderr_text()[-3000:]


# ---------------------------------------------------------------------------------------------


def test_curl_speaks_http2_and_gets_a_hit(tls_edge: EdgeProcess, ca: LocalCA) -> None:
    url = tls_edge.url + "/simple/alpha/"
    first = curl(ca, "--http2", "-D", "-", "-o", os.devnull, url)
    second = curl(ca, "--http2", "-D", "-", "-o", os.devnull, url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("HTTP/2 200"), first.stdout
    assert second.stdout.startswith("HTTP/2 200"), second.stdout
    heads = [
        dict(line.split(": ", 1) for line in r.stdout.splitlines()[1:] if ": " in line)
        for r in (first, second)
    ]
    assert parse_cache_status(heads[0]["cache-status"]).get("fwd") == "miss"
    assert parse_cache_status(heads[1]["cache-status"]).get("hit") is True
    assert "connection" not in heads[1] and "transfer-encoding" not in heads[1]
    old = curl(ca, "--http1.1", "-w", "%{http_version}", "-o", os.devnull, url)
    assert old.stdout == "1.1"
    records = access_records(tls_edge, 3)
    assert [r["http"] for r in records] == ["2", "2", "1.1"]
    no_traceback(tls_edge)


def test_alpn_offers_h2_and_http11_and_http2_can_be_turned_off(
    ca: LocalCA, edge_factory: EdgeFactory
) -> None:
    on = edge_factory(extra_args=ca.edge_args())
    off = edge_factory(extra_args=[*ca.edge_args(), "--http2", "false"])
    cafile = str(ca.ca_cert)
    assert alpn_of(on.url, cafile, ["h2", "http/1.1"]) == "h2"
    assert alpn_of(on.url, cafile, ["http/1.1"]) == "http/1.1"
    assert alpn_of(off.url, cafile, ["h2", "http/1.1"]) == "http/1.1"
    assert (
        curl(ca, "--http2", "-w", "%{http_version}", "-o", os.devnull, off.url + "/simple/").stdout
        == "1.1"
    )


def test_multiplexed_streams_on_one_connection(
    tls_edge: EdgeProcess, ca: LocalCA, upstream: UpstreamIndex
) -> None:
    paths = ["/simple/alpha/", "/simple/beta/", "/simple/gamma/", "/big/200000", "/big/70000"]
    with client(tls_edge, ca) as c:
        # every request is sent before any response is read: all streams are open at once
        ids = {c.request(p): p for p in paths * 4}
        c.read_until(lambda: all(c.streams[i].done for i in ids))
        for sid, path in ids.items():
            res = c.streams[sid]
            assert res.status == 200 and res.ended, (path, res)
            if path.startswith("/big/"):
                assert bytes(res.body) == expected_bytes(int(path.rsplit("/", 1)[1]))
            else:
                assert path.split("/")[2].encode() in res.body
        assert len(set(ids)) == 20 and c.goaway is None
    assert upstream.count("/big/200000") == 1  # the others joined the fill or hit
    no_traceback(tls_edge)


def test_flow_control_with_a_body_larger_than_the_window(
    tls_edge: EdgeProcess, ca: LocalCA
) -> None:
    small = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16384}
    with client(tls_edge, ca, settings=small) as c:
        miss = c.get(f"/big/{MB}")
        hit = c.get(f"/big/{MB}")  # from the disk tier, read in chunks (no sendfile here)
    for res in (miss, hit):
        assert res.status == 200 and res.ended
        assert hashlib.sha256(res.body).digest() == hashlib.sha256(expected_bytes(MB)).digest()
        assert res.data_frames >= MB // 16384
    assert parse_cache_status(hit.headers["cache-status"]).get("hit") is True


def test_head_gets_headers_and_no_data(tls_edge: EdgeProcess, ca: LocalCA) -> None:
    with client(tls_edge, ca) as c:
        c.get("/big/50000")
        res = c.get("/big/50000", method="HEAD")
        page = c.get("/simple/alpha/", method="HEAD")
    assert res.status == 200 and res.ended and res.data_frames == 0 and not res.body
    assert res.headers["content-length"] == "50000"
    assert page.status == 200 and page.data_frames == 0


def test_post_body_reaches_the_upstream(
    tls_edge: EdgeProcess, ca: LocalCA, upstream: UpstreamIndex
) -> None:
    with client(tls_edge, ca) as c:
        res = c.get(
            "/simple/", method="POST", headers=[("content-type", "text/plain")], body=b"x" * 300_000
        )
    assert res.status == 405  # the test upstream reads the body, then refuses the method
    assert upstream.count("/simple/", method="POST") == 1


def test_requests_are_checked_like_http11(tls_edge: EdgeProcess, ca: LocalCA) -> None:
    with client(tls_edge, ca) as c:
        assert c.get("/", method="TRACE").status == 405
        assert c.get("*", method="OPTIONS").status == 400
        assert c.get("/simple/" + "a" * 9000).status == 414
        big = [(f"x-filler-{i}", "v" * 1000) for i in range(70)]  # 70 KiB > 64 KiB
        assert c.get("/simple/alpha/", headers=big).status == 431
        many = [(f"x-n{i}", "1") for i in range(120)]
        assert c.get("/simple/alpha/", headers=many).status == 431
        ok = c.get("/simple/alpha/")  # the connection goes on
        assert ok.status == 200 and c.goaway is None


def test_header_list_far_too_large_closes_the_connection(
    tls_edge: EdgeProcess, ca: LocalCA
) -> None:
    with client(tls_edge, ca) as c:
        huge = [(f"x-filler-{i}", "v" * 1000) for i in range(200)]  # 200 KiB
        sid = c.request("/simple/alpha/", headers=huge)
        c.read_to_eof()
        assert c.goaway is not None and c.goaway.error_code == ENHANCE_YOUR_CALM
        assert c.streams[sid].status is None
    with client(tls_edge, ca) as other:
        assert other.get("/simple/alpha/").status == 200


def test_rapid_reset_flood_gets_goaway(tls_edge: EdgeProcess, ca: LocalCA) -> None:
    enc = hpack.Encoder()
    head = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "127.0.0.1"),
        (":path", "/simple/alpha/"),
    ]
    with client(tls_edge, ca) as c:
        c.read_until(lambda: bool(c.remote_settings))
        flood = bytearray()
        for sid in range(1, 2001, 2):
            flood += HeadersFrame(
                sid, enc.encode(head), flags=["END_HEADERS", "END_STREAM"]
            ).serialize()
            flood += RstStreamFrame(sid, error_code=8).serialize()  # CANCEL
        try:
            c.send_raw(bytes(flood))
        except OSError:
            pass  # the edge may close before it read everything
        assert goaway_code(c) == ENHANCE_YOUR_CALM
    with client(tls_edge, ca) as other:
        assert other.get("/simple/alpha/").status == 200
    no_traceback(tls_edge)


@pytest.mark.parametrize(("frames", "size"), [(1000, 0), (40, 16000)])
def test_continuation_flood_gets_goaway_and_others_are_served(
    tls_edge: EdgeProcess, ca: LocalCA, frames: int, size: int
) -> None:
    with client(tls_edge, ca) as bystander, client(tls_edge, ca) as c:
        c.read_until(lambda: bool(c.remote_settings))
        enc = hpack.Encoder()
        block = enc.encode([(":method", "GET"), (":scheme", "https"), (":path", "/")])
        flood = bytearray(HeadersFrame(1, block).serialize())  # no END_HEADERS
        for _ in range(frames):
            flood += ContinuationFrame(1, b"\x00" * size).serialize()
        try:
            c.send_raw(bytes(flood))
        except OSError:
            pass
        assert goaway_code(c) == ENHANCE_YOUR_CALM
        assert bystander.get("/simple/beta/").status == 200
    no_traceback(tls_edge)


def test_graceful_stop_sends_goaway_and_finishes_streams_in_flight(
    tls_edge: EdgeProcess, ca: LocalCA
) -> None:
    size = 600_000
    with client(tls_edge, ca) as c, client(tls_edge, ca) as idle:
        assert idle.get("/simple/alpha/").status == 200
        sid = c.request(f"/big/{size}?rate=200000")  # about 3 s from the upstream
        c.read_until(lambda: c.streams[sid].status is not None)
        os.kill(tls_edge.pid, signal.SIGTERM)
        c.read_to_eof()
        idle.read_to_eof()
        res = c.streams[sid]
        assert c.goaway is not None and c.goaway.error_code == 0
        assert c.goaway.last_stream_id == sid
        assert c.after_goaway_frames > 0  # the stream went on after the GOAWAY
        assert res.ended and bytes(res.body) == expected_bytes(size)
        assert idle.goaway is not None and idle.goaway.error_code == 0
    assert tls_edge.stop() == 0
    no_traceback(tls_edge)


def test_requests_wait_while_responses_wait_for_windows(tls_edge: EdgeProcess, ca: LocalCA) -> None:
    with client(tls_edge, ca) as warm:
        assert warm.get(f"/big/{MB}").status == 200  # the fill
        assert warm.get(f"/big/{MB}").status == 200  # a disk hit that fills the memory tier
    # now each request is a synchronous hit written in one piece: after four, the edge holds
    # the others back until the client opens its windows
    closed = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with client(tls_edge, ca, settings=closed) as c:
        c.read_until(lambda: bool(c.remote_settings))
        ids = [c.request(f"/big/{MB}") for _ in range(8)]  # 8 MB: twice the output backlog
        c.read_until(lambda: all(c.streams[i].status is not None for i in ids[:4]))
        c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4 * MB})
        c.flush()
        c.read_until(lambda: all(c.streams[i].done for i in ids))
        expected = hashlib.sha256(expected_bytes(MB)).digest()
        for sid in ids:
            res = c.streams[sid]
            assert res.status == 200 and res.ended
            assert hashlib.sha256(res.body).digest() == expected
    no_traceback(tls_edge)


def test_silent_clients_are_closed_at_the_head_deadline(
    ca: LocalCA, edge_factory: EdgeFactory
) -> None:
    edge = edge_factory(extra_args=[*ca.edge_args(), "--header-timeout", "1s"])
    host, port = edge.url.rsplit("/", 1)[1].rsplit(":", 1)
    # no TLS handshake at all
    with socket.create_connection((host, int(port)), timeout=60) as raw:
        assert raw.recv(1024) == b""
    # a handshake, then no HTTP/2 preface
    ctx = ssl.create_default_context(cafile=str(ca.ca_cert))
    ctx.set_alpn_protocols(["h2"])
    with ctx.wrap_socket(
        socket.create_connection((host, int(port)), timeout=60), server_hostname=host
    ) as sock:
        assert sock.selected_alpn_protocol() == "h2"
        while sock.recv(65536):  # the edge's SETTINGS, then the end
            pass
    # a header block left open
    with client(edge, ca) as c:
        c.read_until(lambda: bool(c.remote_settings))
        c.send_raw(HeadersFrame(1, hpack.Encoder().encode([(":method", "GET")])).serialize())
        c.read_to_eof()
        assert c.eof
    assert edge.stats()["timeouts"] >= 2


def test_a_bad_certificate_is_one_clear_error(ca: LocalCA, tmp_path: Path) -> None:
    from support.edge import edge_command

    for cert, key in ((tmp_path / "missing.pem", ca.key), (ca.key, ca.key)):
        proc = subprocess.run(
            [
                *edge_command(),
                "edge",
                "--upstream",
                "http://127.0.0.1:9/simple/",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--tls-cert",
                str(cert),
                "--tls-key",
                str(key),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("pkgedge: cannot load TLS certificate"), proc.stderr
        assert "Traceback" not in proc.stderr and "listening" not in proc.stdout


def test_stream_deadlines_body_and_send(ca: LocalCA, edge_factory: EdgeFactory) -> None:
    edge = edge_factory(
        extra_args=[*ca.edge_args(), "--body-timeout", "1s", "--send-timeout", "1s"]
    )
    with client(edge, ca) as c:
        # a request body that never comes: 408 on the stream, the connection goes on
        sid = c.conn.get_next_available_stream_id()
        head = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", c.authority),
            (":path", "/simple/"),
            ("content-length", "10"),
        ]
        c.conn.send_headers(sid, head)
        c.streams[sid] = StreamResult()
        c.flush()
        assert c.response(sid).status == 408
        assert c.get("/simple/alpha/").status == 200
    closed = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    with client(edge, ca, settings=closed) as c:
        # a response the client never opens a window for: the stream is cancelled
        res = c.get("/big/100000")
        assert res.reset == h2.errors.ErrorCodes.CANCEL and not res.body
        assert c.goaway is None
