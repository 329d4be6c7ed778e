"""HTTP/2 on asyncio with the sans-I/O ``h2`` library, feeding the HTTP/1.1 protocol's handler.

Each stream's request becomes a :class:`~pkgedge.http.request.Request` and goes to the same
``try_hit`` / ``handle`` as an HTTP/1.1 request (handed on by the mixin
:class:`~pkgedge.server.h2run.StreamRunner`: at most 32 handlers running, requests held back
while more than 4 MiB of responses wait for flow-control windows); the stream
(:mod:`pkgedge.server.h2stream`) turns the HTTP/1.1 response the pipeline writes into HEADERS
and DATA frames. This class owns the connection: frames in (``h2``'s events), flow control
(a round over the streams, one frame each, while the windows and the transport allow),
closing (GOAWAY), limits and deadlines (``check``, called once a second by the worker), and
the defences: at most :data:`MAX_STREAMS` streams open and as many handlers running, a
capped header block (:class:`~pkgedge.server.h2guard.HeaderBlockGuard`), rapid reset
(GOAWAY ENHANCE_YOUR_CALM after 200 resets in 10 seconds), and a cap on control frames left
unread. Protocol errors end in GOAWAY with h2's error code.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable
from typing import cast

import h2.events
import h2.exceptions
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from pkgedge.http.response import error_response
from pkgedge.server.accept import ALLOW_HEADER
from pkgedge.server.h2glue import (
    CONNECTION_WINDOW,
    MAX_STREAMS,
    Reject,
    error_output,
    server_connection,
    split_headers,
    to_request,
)
from pkgedge.server.h2guard import (
    MAX_CONTINUATIONS,
    RESET_LIMIT,
    RESET_WINDOW,
    HeaderBlockGuard,
    ResetCounter,
)
from pkgedge.server.h2run import StreamRunner
from pkgedge.server.h2stream import HIGH_WATER, H2Stream, StreamHandler
from pkgedge.server.limits import Connection, Limits, admit_connection
from pkgedge.stats.counters import Counters

log = logging.getLogger("pkgedge.server")

CONTROL_BACKLOG = 1024 * 1024  # unread bytes past which a client that does not read is cut


class H2Protocol(StreamRunner, asyncio.Protocol):
    graceful = True  # close() sends GOAWAY and lets the streams in flight finish

    def __init__(
        self,
        handler: StreamHandler,
        counters: Counters,
        connections: set[Connection],
        *,
        limits: Limits | None = None,
    ) -> None:
        self.handler = handler
        self.counters = counters
        self.connections = connections
        self.limits = limits = limits or Limits()
        self.conn = server_connection(limits)
        # a header list above the advertised size gets 431 on its stream; twice as large
        # (or an encoded block that large) costs the connection
        self._hard_header_limit = self.conn.decoder.max_header_list_size
        self.guard = HeaderBlockGuard(self._hard_header_limit, MAX_CONTINUATIONS)
        self.resets = ResetCounter(RESET_LIMIT, RESET_WINDOW)
        self.streams: dict[int, H2Stream] = {}
        self.running = 0  # handler tasks, including those of streams reset meanwhile
        self._waiting: collections.deque[H2Stream] = collections.deque()
        self._starting = False
        self.transport: asyncio.Transport | None = None
        self.client = "-"
        self.closed = False
        self.paused = False
        self.write_blocked: float | None = None
        self.preface_seen = False
        self.stopping = False  # GOAWAY sent: no new streams, close when the last one ends
        self._admitted = False
        self._loop = asyncio.get_running_loop()
        self.started = self.idle_since = self._loop.time()

    @property
    def busy(self) -> bool:
        return bool(self.streams)

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else "-"
        if not admit_connection(self.transport, self.client, self.limits, self.counters):
            self.closed = True
            return
        self._admitted = True
        self.connections.add(self)
        self.counters.add("connections")
        self.started = self.idle_since = self._loop.time()
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONNECTION_WINDOW)
        self._write_out()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        if self._admitted:
            self._admitted = False
            self.limits.release(self.client)
        for stream in list(self.streams.values()):
            stream.set_closed()
            self._done(stream)

    def pause_writing(self) -> None:
        self.paused = True
        self.write_blocked = self._loop.time()

    def resume_writing(self) -> None:
        self.paused = False
        self.write_blocked = None
        self.flush()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        now = self.idle_since = self._loop.time()
        problem = self.guard.feed(data, now)
        if problem is not None:
            self.goaway(*problem)
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.H2Error as exc:  # h2 has queued GOAWAY with its error code
            log.debug("%s: HTTP/2 protocol error: %s", self.client, exc)
            self.counters.add("client_errors")
            out = error_output(exc, self.conn.data_to_send(), self.conn.highest_inbound_stream_id)
            if out and self.transport is not None:
                self.transport.write(out)
            self._close_now()
            return
        for event in events:
            self._event(event, now)
            if self.closed:
                return
        self._write_out()
        if self.transport is not None and (
            self.transport.get_write_buffer_size() > CONTROL_BACKLOG
        ):
            self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, "control frames left unread")

    # -- events --------------------------------------------------------------------------
    def _event(self, event: h2.events.Event, now: float) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._open(event.stream_id, event.headers or [], now)
        elif isinstance(event, h2.events.DataReceived):
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self.streams.get(event.stream_id)
            if (
                stream is not None
                and stream.req is not None
                and not stream.dispatched
                and not stream.add_body(event.data or b"", self.limits.max_body_size)
            ):
                self._reject(stream, 413, "request body too large")
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.remote_ended = True
                if stream.req is not None and not stream.dispatched:
                    stream.body_started = None
                    self._waiting.append(stream)
                    self._start()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.set_closed()
                self._done(stream)
            if event.remote_reset and self.resets.add(now):
                self.goaway(ErrorCodes.ENHANCE_YOUR_CALM, "too many streams reset")
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.preface_seen = True
            self.flush()
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self.conn.decoder.max_header_list_size = self._hard_header_limit
        elif isinstance(event, h2.events.ConnectionTerminated):
            # h2 sends nothing more after the client's GOAWAY: what is in flight is lost
            self._close_now()

    def _open(
        self, stream_id: int, headers: Iterable[tuple[bytes | str, bytes | str]], now: float
    ) -> None:
        if self.stopping or self.running >= MAX_STREAMS:
            # after our GOAWAY; or more handlers still run (for streams the client already
            # reset) than streams may be open
            self._send_reset(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        pseudo, fields, size = split_headers(headers)
        stream = H2Stream(self, stream_id, pseudo.get(":method", ""))
        self.streams[stream_id] = stream
        try:
            stream.req = to_request(pseudo, fields, size, self.limits, self.client)
        except Reject as rej:
            self._reject(stream, rej.status, rej.reason)
            return
        stream.body_started = now

    def _reject(self, stream: H2Stream, status: int, reason: str) -> None:
        self.counters.add("client_errors")
        stream.dispatched = True  # never goes to the handler; its body is ignored
        stream.body_started = None
        stream.body.clear()
        extra = [("allow", ALLOW_HEADER)] if status == 405 else []
        stream.write(error_response(status, reason, extra=extra))
        self._done(stream)

    # -- output --------------------------------------------------------------------------
    def flush(self, only: H2Stream | None = None) -> None:
        """Send what the streams (or ``only``) hold, one frame per stream per round, while
        the flow-control windows and the transport allow."""
        if self.closed:
            return
        streams = [only] if only is not None else list(self.streams.values())
        progress = True
        while progress and not self.paused and not self.closed:
            progress = False
            for stream in streams:
                if self.paused:
                    break
                if not stream.closed and not stream.ended and self._send_one(stream):
                    progress = True
                    self._write_out()
        for stream in streams:
            if len(stream.pending) < HIGH_WATER or stream.closed:
                stream.wake()
            if stream.finished:
                self._done(stream)
        if self._waiting:
            self._start()

    def _send_one(self, stream: H2Stream) -> bool:
        try:
            return stream.send_one(self.conn, self._loop.time())
        except h2.exceptions.H2Error as exc:
            if self.conn.state_machine.state is ConnectionState.CLOSED:
                # the client's GOAWAY arrived with the data just read (its event comes
                # after the ones that made us send): nothing more goes out, not a bug
                log.debug("stream %d: not sent, the client ended the connection", stream.id)
            else:  # e.g. a header field h2 refuses: a bug
                log.error("stream %d: cannot send: %s", stream.id, exc)
            self.reset(stream, ErrorCodes.INTERNAL_ERROR)
        return False

    def reset(self, stream: H2Stream, code: int) -> None:
        """Reset ``stream`` (RST_STREAM ``code``) unless it already ended."""
        if not stream.closed and not stream.ended and not self.closed:
            self._send_reset(stream.id, code)
            self._write_out()
        stream.set_closed()
        self._done(stream)

    def _send_reset(self, stream_id: int, code: int) -> None:
        try:
            self.conn.reset_stream(stream_id, code)
        except h2.exceptions.H2Error:  # already closed on h2's side
            pass

    def _write_out(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- closing and deadlines -----------------------------------------------------------
    def goaway(self, code: int, reason: str) -> None:
        """End the connection at once with GOAWAY ``code``."""
        log.info("%s: HTTP/2 connection closed: %s", self.client, reason)
        self.counters.add("client_errors")
        try:
            self.conn.close_connection(code, additional_data=reason.encode())
        except h2.exceptions.H2Error:
            pass
        self._write_out()
        self._close_now()

    def close(self) -> None:
        """Graceful: GOAWAY naming the last stream taken, close when the streams in flight
        end. At once when idle, or when called again."""
        if self.closed or self.transport is None:
            return
        if self.stopping or not self.streams:
            try:
                self.conn.close_connection(ErrorCodes.NO_ERROR)
            except h2.exceptions.H2Error:
                pass
            self._write_out()
            self._close_now()
            return
        self.stopping = True
        self._write_out()  # keep frames in order: ours go after h2's
        frame = GoAwayFrame(0, last_stream_id=self.conn.highest_inbound_stream_id)
        self.transport.write(frame.serialize())

    def _close_now(self) -> None:
        self.closed = True
        for stream in list(self.streams.values()):
            stream.set_closed()
            self._done(stream)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def check(self, now: float) -> None:
        """Enforce deadlines (called about once a second for every connection)."""
        if self.closed:
            return
        limits = self.limits
        if self.write_blocked is not None and now - self.write_blocked > limits.send_timeout:
            self.counters.add("timeouts")
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            return
        open_since = self.guard.open_since
        if (not self.preface_seen and now - self.started > limits.header_timeout) or (
            open_since is not None and now - open_since > limits.header_timeout
        ):
            self.counters.add("timeouts")
            self._close_now()
            return
        for stream in list(self.streams.values()):
            if stream.body_started is not None and now - stream.body_started > limits.body_timeout:
                self.counters.add("timeouts")
                self._reject(stream, 408, "request body not received in time")
            elif (
                stream.blocked_since is not None
                and now - stream.blocked_since > limits.send_timeout
            ):
                self.counters.add("timeouts")
                self.reset(stream, ErrorCodes.CANCEL)
        if not self.streams and now - self.idle_since > limits.idle_timeout:
            self.close()
        self._write_out()
