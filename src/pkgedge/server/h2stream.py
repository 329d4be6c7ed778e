"""One HTTP/2 stream, as the pipeline sees it: a client it writes an HTTP/1.1 response to.

The pipeline serializes every response as HTTP/1.1 (status line, header lines, a body framed
by Content-Length or chunked coding). A stream parses those bytes with httptools (which
decodes the chunked coding), keeps the status and the end-to-end header fields for a HEADERS
frame and buffers the body; its connection (:class:`pkgedge.server.h2.H2Protocol`) sends it
as DATA frames while the flow-control windows allow, and END_STREAM when the HTTP/1.1 message
is complete. :meth:`drain` waits while the buffer is above :data:`HIGH_WATER`. There is no
``sendfile``: the pipeline then reads files in chunks and writes them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

import httptools

from pkgedge.http.request import Request

if TYPE_CHECKING:
    from h2.connection import H2Connection

    from pkgedge.server.h2 import H2Protocol

log = logging.getLogger("pkgedge.server")

#: drain() returns once a stream's unsent body is below this many bytes
HIGH_WATER = 64 * 1024
#: HTTP/1.1 header fields that mean nothing (or are forbidden) in HTTP/2 (RFC 9113 8.2.2)
CONNECTION_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"proxy-connection", b"te"}
)
INTERNAL_ERROR = 0x2


class StreamHandler(Protocol):
    """The handler HTTP/1.1 requests go to, as HTTP/2 streams use it."""

    def try_hit(self, req: Request, client: H2Stream) -> bool: ...
    async def handle(self, req: Request, client: H2Stream) -> None: ...


class H2Stream:
    def __init__(self, owner: H2Protocol, stream_id: int, method: str) -> None:
        self.owner = owner
        self.id = stream_id
        self.method = method
        # the request side
        self.req: Request | None = None
        self.body: list[bytes] = []
        self.body_size = 0
        self.body_started: float | None = None
        self.remote_ended = False
        self.dispatched = False
        self.task: asyncio.Task[None] | None = None
        # the response side
        self.closed = False  # reset (by either side) or the connection is gone
        self.out_head: list[tuple[bytes, bytes]] | None = None  # HEADERS not sent yet
        self.headers_sent = False
        self.pending = bytearray()  # body bytes not sent yet
        self.complete = False  # the HTTP/1.1 message ended: END_STREAM after ``pending``
        self.ended = False  # END_STREAM sent
        self.started = False  # the pipeline wrote something
        self.blocked_since: float | None = None  # body waiting for a flow-control window
        self._framed = False  # Content-Length or chunked: a short body is an error
        self._fields: list[tuple[bytes, bytes]] = []
        self._parser = httptools.HttpResponseParser(self)
        self._drain: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<H2Stream {self.id} {self.method}>"

    @property
    def peer(self) -> str:
        return self.owner.client

    @property
    def finished(self) -> bool:
        """Nothing more will happen on this stream (it may be forgotten)."""
        return self.task is None and (self.closed or self.ended)

    # -- what the pipeline uses ----------------------------------------------------------
    def write(self, data: bytes | memoryview) -> None:
        if self.closed or self.complete or not data:
            return
        self.started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # our own response is not HTTP/1.1: a bug; the client must not get half of it
            log.error("stream %d: unparsable response from the pipeline: %s", self.id, exc)
            self.abort()
            return
        self.owner.flush(self)

    async def drain(self) -> None:
        while not self.closed and (len(self.pending) >= HIGH_WATER or self.owner.paused):
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain

    def abort(self) -> None:
        self.owner.reset(self, INTERNAL_ERROR)

    # -- httptools callbacks (the pipeline's HTTP/1.1 response) ---------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value):
            self._framed = True
        if name not in CONNECTION_FIELDS:
            self._fields.append((name, value.strip()))

    def on_headers_complete(self) -> None:
        status = str(self._parser.get_status_code()).encode()
        self.out_head = [(b":status", status), *self._fields]
        self._fields = []
        if self.method == "HEAD":
            self.complete = True  # whatever framing the head announces, no body follows

    def on_body(self, body: bytes) -> None:
        if self.method != "HEAD":
            self.pending += body

    def on_message_complete(self) -> None:
        self.complete = True

    # -- for the connection --------------------------------------------------------------
    def add_body(self, data: bytes, limit: int) -> bool:
        """Keep a piece of the request body; False once the body is over ``limit``."""
        self.body_size += len(data)
        self.body.append(data)
        return self.body_size <= limit

    def send_one(self, conn: H2Connection, now: float) -> bool:
        """Queue one HEADERS or DATA frame (or END_STREAM) on ``conn``; False if none can go
        (nothing to send, or no flow-control window)."""
        if self.out_head is not None:
            end = self.complete and not self.pending
            conn.send_headers(self.id, self.out_head, end_stream=end)
            self.out_head = None
            self.headers_sent = True
            self.ended = end
            return True
        if not self.headers_sent:
            return False
        if self.pending:
            size = min(conn.local_flow_control_window(self.id), conn.max_outbound_frame_size)
            if size <= 0:
                if self.blocked_since is None:
                    self.blocked_since = now
                return False
            self.blocked_since = None
            chunk = bytes(self.pending[:size])
            del self.pending[:size]
            end = self.complete and not self.pending
            conn.send_data(self.id, chunk, end_stream=end)
            self.ended = end
            return True
        if self.complete:
            conn.end_stream(self.id)
            self.ended = True
            return True
        return False

    def finish(self) -> None:
        """The handler is done: end the stream, or reset it if the response is incomplete."""
        if self.closed or self.complete:
            return
        if self.out_head is not None or self.headers_sent:
            if not self._framed:  # a body delimited by the end of the connection in HTTP/1.1
                self.complete = True
                self.owner.flush(self)
                return
            log.debug("stream %d: response ended early", self.id)
        elif not self.started:
            log.error("stream %d: the pipeline wrote no response", self.id)
        self.abort()

    def wake(self) -> None:
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._drain = None

    def set_closed(self) -> None:
        self.closed = True
        self.pending.clear()
        self.blocked_since = None
        self.wake()
