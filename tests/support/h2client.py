"""A small HTTP/2 client for tests: the ``h2`` library (client side) over a real TLS socket.

It can also write raw bytes (hand-made frames) to the same connection, and records everything
the server sends: per stream the status, headers, body, END_STREAM and RST_STREAM; per
connection GOAWAY, PING ACKs and whether the server closed the socket. Reads block with a
generous safety timeout (a hung server fails the test, it never decides it).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import (
    DataFrame,
    Frame,
    HeadersFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

__all__ = ["H2Client", "StreamResult", "alpn_of"]

SAFETY_TIMEOUT = 60.0


@dataclass
class StreamResult:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    data_frames: int = 0
    ended: bool = False
    reset: int | None = None  # the RST_STREAM error code

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


def _tls_socket(url: str, cafile: str, alpn: list[str]) -> tuple[ssl.SSLSocket, str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection((host, port), timeout=SAFETY_TIMEOUT)
    sock = ctx.wrap_socket(raw, server_hostname=host)
    return sock, f"{host}:{port}"


def alpn_of(url: str, cafile: str, offer: list[str]) -> str | None:
    """The protocol the server picks among ``offer``."""
    sock, _ = _tls_socket(url, cafile, offer)
    with sock:
        return sock.selected_alpn_protocol()


class H2Client:
    def __init__(
        self,
        url: str,
        cafile: str,
        *,
        settings: dict[int, int] | None = None,
        auto_ack: bool = True,
    ) -> None:
        self.sock, self.authority = _tls_socket(url, cafile, ["h2"])
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.auto_ack = auto_ack
        self.streams: dict[int, StreamResult] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.remote_settings: dict[int, int] = {}
        self.pings: list[bytes] = []
        self.eof = False
        self.after_goaway_frames = 0
        self._inbuf = bytearray()
        self.flush()

    # -- sending -------------------------------------------------------------------------
    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (after what h2 has queued)."""
        self.flush()
        self.sock.sendall(data)

    def request(
        self,
        path: str,
        method: str = "GET",
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        head = [
            (":method", method),
            (":scheme", "https"),
            (":authority", self.authority),
            (":path", path),
            *headers,
        ]
        self.conn.send_headers(sid, head, end_stream=body is None)
        self.streams[sid] = StreamResult()
        self.flush()
        view = memoryview(body or b"")
        while body is not None and (view or not self.streams[sid].done):
            window = self.conn.local_flow_control_window(sid)
            size = min(window, self.conn.max_outbound_frame_size, len(view))
            if window <= 0 and view:
                if not self.read_once():
                    break
                continue
            self.conn.send_data(sid, bytes(view[:size]), end_stream=size == len(view))
            view = view[size:]
            self.flush()
            if not view:
                break
        return sid

    # -- receiving -----------------------------------------------------------------------
    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            res = self.streams.setdefault(event.stream_id, StreamResult())
            for name, value in event.headers or []:
                key, val = str(name), str(value)
                if key == ":status":
                    res.status = int(val)
                else:
                    res.headers[key] = val
        elif isinstance(event, h2.events.DataReceived):
            res = self.streams.setdefault(event.stream_id, StreamResult())
            res.body += event.data or b""
            res.data_frames += 1
            if self.auto_ack:
                self.ack(event.stream_id, event.flow_controlled_length or 0)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams.setdefault(event.stream_id, StreamResult()).ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.streams.setdefault(event.stream_id, StreamResult()).reset = int(
                event.error_code or 0
            )
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            for code, change in event.changed_settings.items():
                self.remote_settings[int(code)] = change.new_value
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings.append(event.ping_data or b"")

    def ack(self, stream_id: int, size: int) -> None:
        try:
            self.conn.acknowledge_received_data(size, stream_id)
        except h2.exceptions.H2Error:
            pass

    def read_once(self) -> bool:
        """One read from the socket; False at EOF (or a reset socket).

        Frames go to h2 one at a time until the server's GOAWAY; h2 accepts nothing after a
        GOAWAY, so later frames (the streams a graceful stop lets finish) are read here."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self._inbuf += data
        while len(self._inbuf) >= 9:
            length = int.from_bytes(self._inbuf[:3], "big")
            if len(self._inbuf) < 9 + length:
                break
            raw = bytes(self._inbuf[: 9 + length])
            del self._inbuf[: 9 + length]
            if self.goaway is None:
                for event in self.conn.receive_data(raw):
                    self._handle(event)
            else:
                self._after_goaway(raw)
        try:
            self.flush()
        except OSError:
            pass
        return True

    def _after_goaway(self, raw: bytes) -> None:
        frame, _ = Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9:]))
        res = self.streams.setdefault(frame.stream_id, StreamResult())
        if isinstance(frame, DataFrame):
            res.body += frame.data
            res.data_frames += 1
            self.after_goaway_frames += 1
            if frame.flow_controlled_length:  # h2 sends nothing after GOAWAY: open windows here
                for sid in (0, frame.stream_id):
                    update = WindowUpdateFrame(sid, window_increment=frame.flow_controlled_length)
                    self.sock.sendall(update.serialize())
        elif isinstance(frame, HeadersFrame):
            for name, value in self.conn.decoder.decode(frame.data):
                if name in (":status", b":status"):
                    res.status = int(value)
        elif isinstance(frame, RstStreamFrame):
            res.reset = frame.error_code
        if "END_STREAM" in frame.flags:
            res.ended = True

    def read_until(self, done: Callable[[], bool]) -> None:
        while not done():
            if not self.read_once():
                return

    def response(self, stream_id: int) -> StreamResult:
        """Read until ``stream_id`` ended or was reset (or the connection closed)."""
        self.read_until(lambda: self.streams[stream_id].done or self.goaway is not None)
        return self.streams[stream_id]

    def get(self, path: str, **kwargs: object) -> StreamResult:
        return self.response(self.request(path, **kwargs))  # type: ignore[arg-type]

    def raw_frames(self) -> list[Frame]:
        """Every frame the server sends until it closes, parsed with hyperframe alone (for
        tests that wrote hand-made frames h2's client state does not know about)."""
        buf = bytearray()
        while True:
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                data = b""
            if not data:
                break
            buf += data
        self.eof = True
        frames = []
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(buf[:9])))
            if len(buf) < 9 + length:
                break
            frame.parse_body(memoryview(bytes(buf[9 : 9 + length])))
            frames.append(frame)
            del buf[: 9 + length]
        return frames

    def read_to_eof(self) -> None:
        while self.read_once():
            pass

    def close(self) -> None:
        try:
            self.conn.close_connection()
            self.flush()
        except (OSError, h2.exceptions.H2Error):
            pass
        self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
