"""A frame corpus for the edge's HTTP/2 protocol, in place of h2spec (not packaged by Debian).

Each case writes hand-made frames (hyperframe, hpack) to a real edge over TLS after the
connection preface and the SETTINGS exchange, and states what RFC 9113 asks for: a GOAWAY
with a given error code, a RST_STREAM, a PING ACK or a response. Where ``h2`` answers a
malformed request with a connection error rather than the stream error the RFC prefers, the
case says so. The edge must never log a traceback.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import hpack
import pytest
from h2.errors import ErrorCodes as E
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from support.edge import EdgeFactory, EdgeProcess
from support.h2client import H2Client
from support.tls import LocalCA, make_test_ca
from support.upstream import UpstreamIndex, populate_default

GET = [
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "127.0.0.1"),
    (":path", "/simple/"),
]


def raw(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    """A frame by hand (for frames hyperframe will not build: wrong lengths, odd types)."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes([frame_type, flags])
        + stream_id.to_bytes(4, "big")
        + payload
    )


def headers(sid: int, fields: list[tuple[str, str]], *, end: bool = True) -> bytes:
    """A HEADERS frame with a fresh HPACK encoder (each case sends one header block)."""
    flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
    return HeadersFrame(sid, hpack.Encoder().encode(fields), flags=flags).serialize()


@dataclass(frozen=True)
class Case:
    name: str
    send: bytes
    goaway: int | None = None  # expected GOAWAY error code (then the edge closes)
    rst: tuple[int, int] | None = None  # expected (stream, RST_STREAM code)
    status: tuple[int, int] | None = None  # expected (stream, :status)
    ping: bytes | None = None  # expected PING ACK payload
    closed: bool = False  # expected: the edge closes (GOAWAY or not)


CASES = [
    # -- frame-level rules (RFC 9113 section 6) --
    Case("DATA on stream 0", raw(0x0, 0, 0, b"x"), goaway=E.PROTOCOL_ERROR),
    Case(
        "HEADERS on stream 0",
        raw(0x1, 0x5, 0, hpack.Encoder().encode(GET)),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case("even client stream id", headers(2, GET), goaway=E.PROTOCOL_ERROR),
    Case(
        "stream id going down",
        headers(5, GET) + headers(3, GET),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case("SETTINGS of 5 bytes", raw(0x4, 0, 0, b"\x00" * 5), goaway=E.FRAME_SIZE_ERROR),
    Case("SETTINGS ACK with payload", raw(0x4, 1, 0, b"\x00" * 6), goaway=E.FRAME_SIZE_ERROR),
    Case("SETTINGS on stream 1", raw(0x4, 0, 1, b""), goaway=E.PROTOCOL_ERROR),
    Case(
        "ENABLE_PUSH 2",
        SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 2}).serialize(),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case(
        "INITIAL_WINDOW_SIZE above 2^31-1",
        SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 2**31}).serialize(),
        goaway=E.FLOW_CONTROL_ERROR,
    ),
    Case(
        "MAX_FRAME_SIZE below 16384",
        SettingsFrame(0, settings={SettingsFrame.MAX_FRAME_SIZE: 16383}).serialize(),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case("PING of 6 bytes", raw(0x6, 0, 0, b"\x00" * 6), goaway=E.FRAME_SIZE_ERROR),
    Case("PING on stream 1", raw(0x6, 0, 1, b"\x00" * 8), goaway=E.PROTOCOL_ERROR),
    Case("PING is answered", PingFrame(0, opaque_data=b"pkgedge!").serialize(), ping=b"pkgedge!"),
    Case(
        "WINDOW_UPDATE of 0 on the connection",
        raw(0x8, 0, 0, b"\x00\x00\x00\x00"),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case(
        "connection window beyond 2^31-1",
        WindowUpdateFrame(0, window_increment=2**31 - 1).serialize(),
        goaway=E.FLOW_CONTROL_ERROR,
    ),
    Case(
        "stream window beyond 2^31-1",
        headers(1, [*GET[:3], (":path", "/big/300000")])
        + WindowUpdateFrame(1, window_increment=2**31 - 1).serialize(),
        rst=(1, E.FLOW_CONTROL_ERROR),
    ),
    Case(
        "frame above MAX_FRAME_SIZE",
        headers(1, [*GET, ("content-length", "20000")], end=False) + raw(0x0, 1, 1, b"x" * 20000),
        goaway=E.FRAME_SIZE_ERROR,
    ),
    Case("CONTINUATION with no HEADERS", raw(0x9, 4, 1, b""), goaway=E.PROTOCOL_ERROR),
    Case(
        "another frame inside a header block",
        HeadersFrame(1, hpack.Encoder().encode(GET)).serialize()
        + PingFrame(0, opaque_data=b"12345678").serialize(),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case(
        "RST_STREAM on an idle stream", raw(0x3, 0, 1, b"\x00\x00\x00\x08"), goaway=E.PROTOCOL_ERROR
    ),
    Case(
        "RST_STREAM of 3 bytes",
        headers(1, [*GET[:3], (":path", "/big/300000")]) + raw(0x3, 0, 1, b"\x00\x00\x08"),
        goaway=E.FRAME_SIZE_ERROR,
    ),
    Case(
        "PUSH_PROMISE from a client",
        PushPromiseFrame(1, promised_stream_id=2, data=b"", flags=["END_HEADERS"]).serialize(),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case(
        "DATA after END_STREAM",
        headers(1, [*GET[:3], (":path", "/big/300000")]) + DataFrame(1, b"x").serialize(),
        rst=(1, E.STREAM_CLOSED),  # half-closed (remote): a stream error (RFC 9113 5.1)
    ),
    Case(
        "unknown frame type is ignored",
        raw(0xFA, 0, 0, b"whatever") + headers(1, GET),
        status=(1, 200),
    ),
    Case(
        "PRIORITY is ignored",
        PriorityFrame(1, depends_on=0, stream_weight=16).serialize() + headers(1, GET),
        status=(1, 200),
    ),
    # -- HPACK (RFC 7541) --
    Case("HPACK index 0", raw(0x1, 0x5, 1, b"\x80"), goaway=E.COMPRESSION_ERROR),
    Case("HPACK index out of range", raw(0x1, 0x5, 1, b"\xff\x7f"), goaway=E.COMPRESSION_ERROR),
    Case(
        "HPACK table size above SETTINGS_HEADER_TABLE_SIZE",
        raw(0x1, 0x5, 1, b"\x3f\xe1\x7f" + hpack.Encoder().encode(GET)),
        goaway=E.COMPRESSION_ERROR,
    ),
    # -- request rules (RFC 9113 section 8): h2 makes these connection errors --
    Case("upper-case field name", headers(1, [*GET, ("X-Up", "1")]), goaway=E.PROTOCOL_ERROR),
    Case(
        "connection-specific field",
        headers(1, [*GET, ("connection", "keep-alive")]),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case("no :path", headers(1, GET[:3]), goaway=E.PROTOCOL_ERROR),
    Case(
        "pseudo-header after a field",
        headers(1, [*GET[:3], ("accept", "*/*"), (":path", "/")]),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case(
        "more DATA than content-length",
        headers(1, [*GET, ("content-length", "2")], end=False) + DataFrame(1, b"abc").serialize(),
        goaway=E.PROTOCOL_ERROR,
    ),
    # -- the edge's own checks, answered on the stream --
    Case("te: trailers is allowed", headers(1, [*GET, ("te", "trailers")]), status=(1, 200)),
    Case(
        "Host instead of :authority",
        headers(1, [GET[0], GET[1], GET[3], ("host", "127.0.0.1")]),
        status=(1, 200),
    ),
    Case(
        "neither :authority nor Host",  # h2 refuses it before the edge sees it
        headers(1, [GET[0], GET[1], GET[3]]),
        goaway=E.PROTOCOL_ERROR,
    ),
    Case("bad :authority", headers(1, [*GET[:2], (":authority", "a b"), GET[3]]), status=(1, 400)),
    Case(
        "CONNECT is refused",
        headers(1, [(":method", "CONNECT"), (":authority", "127.0.0.1:443")]),
        status=(1, 405),
    ),
    Case("a bad preface closes", b"", closed=True),
]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    ca = make_test_ca(tmp_path_factory.mktemp("ca"))
    upstream = populate_default(UpstreamIndex(tmp_path_factory.mktemp("upstream"))).start()
    factory = EdgeFactory(tmp_path_factory.mktemp("edges"))
    try:
        edge = factory(upstream.index_url, extra_args=ca.edge_args())
        edge.ca = ca  # type: ignore[attr-defined]
        yield edge
        assert "Traceback" not in edge.stderr_text(), edge.stderr_text()[-3000:]
    finally:
        factory.close()
        upstream.stop()


class FrameReader:
    """Frames from the edge, parsed with hyperframe, header blocks decoded with hpack."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.decoder = hpack.Decoder()
        self.frames: list[Frame] = []
        self.statuses: dict[int, int] = {}
        self.eof = False

    def until(self, done: Callable[[], bool]) -> None:
        while not done() and not self.eof:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self.eof = True
                break
            self.buf += data
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                frame, _ = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
                frame.parse_body(memoryview(bytes(self.buf[9 : 9 + length])))
                del self.buf[: 9 + length]
                self.frames.append(frame)
                if isinstance(frame, HeadersFrame):
                    for name, value in self.decoder.decode(frame.data):
                        if name == ":status":
                            self.statuses[frame.stream_id] = int(value)

    def of(self, kind: type[Frame]) -> list[Frame]:
        return [f for f in self.frames if isinstance(f, kind)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_frame_corpus(edge: EdgeProcess, case: Case) -> None:
    ca: LocalCA = edge.ca  # type: ignore[attr-defined]
    if case.name == "a bad preface closes":
        bad_preface(edge, ca)
        return
    with H2Client(edge.url, str(ca.ca_cert)) as c:
        c.read_until(lambda: bool(c.remote_settings))  # and h2 has ACKed the edge's SETTINGS
        c.send_raw(case.send)
        reader = FrameReader(c.sock)
        reader.buf += c._inbuf
        if case.goaway is not None or case.closed:
            reader.until(lambda: False)
            goaways = reader.of(GoAwayFrame)
            assert goaways, reader.frames
            assert goaways[-1].error_code == case.goaway, goaways[-1]
        elif case.rst is not None:
            sid, code = case.rst
            reader.until(lambda: any(f.stream_id == sid for f in reader.of(RstStreamFrame)))
            rst = [f for f in reader.of(RstStreamFrame) if f.stream_id == sid]
            assert rst and rst[0].error_code == code, reader.frames
        elif case.status is not None:
            sid, status = case.status
            reader.until(lambda: sid in reader.statuses)
            assert reader.statuses.get(sid) == status, reader.frames
        elif case.ping is not None:
            reader.until(lambda: any("ACK" in f.flags for f in reader.of(PingFrame)))
            acks = [f for f in reader.of(PingFrame) if "ACK" in f.flags]
            assert acks and acks[0].opaque_data == case.ping


def bad_preface(edge: EdgeProcess, ca: LocalCA) -> None:
    ctx = ssl.create_default_context(cafile=str(ca.ca_cert))
    ctx.set_alpn_protocols(["h2"])
    host, port = edge.url.rsplit("/", 1)[1].rsplit(":", 1)
    with ctx.wrap_socket(
        socket.create_connection((host, int(port)), timeout=60), server_hostname=host
    ) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reader = FrameReader(sock)
        reader.until(lambda: False)
        assert reader.eof
        # no HTTP/1.1 answer: only the edge's own SETTINGS (and maybe a GOAWAY) came
        assert all(
            isinstance(f, (SettingsFrame, WindowUpdateFrame, GoAwayFrame)) for f in reader.frames
        )


def test_a_goaway_right_after_requests_for_hits_logs_no_error(edge: EdgeProcess) -> None:
    """h2load ends its connections with GOAWAY right behind its last requests: hits answered
    while that data is read find the connection closed in h2. Nothing is sent then, and it
    is not an error (it was logged as "cannot send" once per frame)."""
    ca: LocalCA = edge.ca  # type: ignore[attr-defined]
    with H2Client(edge.url, str(ca.ca_cert)) as c:  # warm the page: later requests are hits
        for _ in range(2):
            assert c.get("/simple/").status == 200
    before = edge.stderr_text().count("cannot send")
    for _ in range(3):
        with H2Client(edge.url, str(ca.ca_cert)) as c:
            c.read_until(lambda: bool(c.remote_settings))
            burst = b"".join(headers(n, GET) for n in (1, 3, 5, 7))
            c.send_raw(burst + GoAwayFrame(0, last_stream_id=0, error_code=0).serialize())
            reader = FrameReader(c.sock)
            reader.until(lambda: False)  # until the edge closes
    assert edge.stderr_text().count("cannot send") == before, edge.stderr_text()[-2000:]
