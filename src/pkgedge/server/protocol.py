"""HTTP/1.1 on asyncio: the connection, bytes in through httptools (llhttp), responses out.

Keep-alive and pipelining: requests are answered strictly in order; a fresh hit is answered
synchronously inside ``data_received`` without creating a task. The connection admits
itself under the worker's :class:`~pkgedge.server.limits.Limits`, feeds the parser (whose
callbacks, the request checks, are :class:`~pkgedge.server.h1parse.RequestParser`), takes
bytes it parsed before as that request again, answers a refused request and closes
lingering, and enforces the deadlines (``check``).
"""

from __future__ import annotations

import asyncio
import collections
from typing import Protocol as TypingProtocol
from typing import cast

import httptools

from pkgedge.http.request import Request
from pkgedge.http.response import error_response
from pkgedge.server import zerocopy
from pkgedge.server.accept import ALLOW_HEADER
from pkgedge.server.h1parse import Reject, RequestParser, Template
from pkgedge.server.limits import Connection, Limits, admit_connection
from pkgedge.server.linger import Linger
from pkgedge.stats.counters import Counters

MAX_PIPELINE = 32
#: Requests remembered as parsed (per worker, in ``Limits.parsed``): a chunk of bytes equal
#: to one of them is that request again, without parsing.
_PARSED_MAX = 4096
_PARSED_MAX_BYTES = 8192


class Handler(TypingProtocol):
    def try_hit(self, req: Request, client: HttpProtocol) -> bool: ...
    async def handle(self, req: Request, client: HttpProtocol) -> None: ...


class HttpProtocol(RequestParser, asyncio.Protocol):
    graceful = False  # close() cuts the connection: the worker closes only idle ones

    def __init__(
        self,
        handler: Handler,
        counters: Counters,
        connections: set[Connection],
        *,
        tls: bool = False,
        counted: bool = True,
        limits: Limits | None = None,
    ) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self._admitted = False
        self.head_started: float | None = None
        self.body_started: float | None = None
        self.write_blocked: float | None = None
        self.counters = counters
        self.connections = connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.client = "-"
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._queue: collections.deque[Request] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._drain: asyncio.Future[None] | None = None
        self.idle_since = 0.0
        self.reading_paused = False
        self.tls = tls
        self._rejected: tuple[int, str] | None = None
        self._linger: Linger | None = None
        self.counted = counted  # False on the admin listener: its calls are not traffic
        self._slots = counters.slots
        self._in_message = False  # between on_message_begin and on_message_complete
        self._completed = 0  # messages completed by the current feed_data
        self._template: Template | None = None
        self._i_requests = counters.index("requests")
        self._loop = asyncio.get_running_loop()

    @property
    def peer(self) -> str:
        return self.client

    @property
    def busy(self) -> bool:
        return self._task is not None or bool(self._queue)

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
        if self.counted:
            self.counters.add("connections")
        self.idle_since = self._loop.time()
        self.head_started = self.idle_since  # the first request must arrive in time too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.connections.discard(self)
        if self._admitted:
            self._admitted = False
            self.limits.release(self.client)
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:  # refused: discard what the client still sends
            if not self._linger.discard(len(data)) and self.transport is not None:
                self.transport.close()
            return
        self.idle_since = self._loop.time()
        parsed = self.limits.parsed
        fresh = not self._in_message and self._rejected is None
        if fresh:
            template = parsed.get(data)
            if template is not None:
                # these very bytes were one complete request before: llhttp and our checks
                # would give the same answer again, so take it (the parser's state is the
                # same before and after a complete message: nothing to feed it)
                self.head_started = None
                method, target, headers, fields = template
                self._enqueue(Request(method, target, headers, True, self.client, fields))
                return
        self._completed = 0
        self._template = None
        try:
            self.parser.feed_data(data)
        except Reject as rej:
            self._reject(rej.status, rej.reason)
        except httptools.HttpParserUpgrade:
            # the request itself was answered normally (we never switch protocols); what
            # follows it is not HTTP/1.1 we speak: finish the answers, then close
            self._rejected = (0, "")
            if self._task is None and not self._queue:
                self._close_lingering()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__  # httptools wraps exceptions raised in our callbacks
            if isinstance(cause, Reject):
                self._reject(cause.status, cause.reason)
            else:
                self._reject(400, "malformed request")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed request: {exc}")
        else:
            if (
                fresh
                and self._completed == 1
                and self._template is not None
                and not self._in_message
                and len(data) <= _PARSED_MAX_BYTES
                and len(parsed) < _PARSED_MAX
            ):
                parsed[data] = self._template  # the chunk was exactly this one request

    def pause_writing(self) -> None:
        self._paused = True
        self.write_blocked = self._loop.time()

    def resume_writing(self) -> None:
        self._paused = False
        self.write_blocked = None
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- processing ----------------------------------------------------------------------
    def _enqueue(self, req: Request) -> None:
        self._queue.append(req)
        if len(self._queue) > MAX_PIPELINE and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        if self._task is None:
            self._process()

    def _process(self) -> None:
        while self._queue and not self.closed:
            req = self._queue.popleft()
            if self.counted:
                self._slots[self._i_requests] += 1
            if self.handler.try_hit(req, self):
                if not req.keep_alive:
                    self.close()
                    return
                continue
            self._task = self._loop.create_task(self._run(req))
            return
        if self._rejected is not None:
            rejected, self._rejected = self._rejected, None
            if rejected[0] == 0:  # close quietly (after an upgrade request was answered)
                self._close_lingering()
            else:
                self._reject(*rejected)
            return
        if self.reading_paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self.reading_paused = False

    async def _run(self, req: Request) -> None:
        try:
            await self.handler.handle(req, self)
        except Exception as exc:  # a bug: answer 500 once, never a traceback to the client
            import logging

            logging.getLogger("pkgedge.server").exception("unhandled error: %s", exc)
            self.write(error_response(500, "internal error", close=True))
            self.close()
        finally:
            self._task = None
        self.idle_since = self._loop.time()
        if not req.keep_alive:
            self.close()
            return
        self._process()

    def _reject(self, status: int, reason: str) -> None:
        """Answer a bad request with ``status`` and close, after the requests before it."""
        if self._task is not None or self._queue:
            # earlier pipelined requests are still being answered: reject after them
            self._rejected = (status, reason)
            if self.transport is not None:
                self.transport.pause_reading()
            return
        self.counters.add("client_errors")
        if self.transport is not None and not self.closed:
            extra = [("allow", ALLOW_HEADER)] if status == 405 else []
            self.transport.write(error_response(status, reason, close=True, extra=extra))
        self._close_lingering()

    def _close_lingering(self) -> None:
        """Close without a reset: stop taking requests, send FIN after the answer, then read
        and discard input until the client closes or the budget (time, size) runs out."""
        t = self.transport
        try:
            half_close = t is not None and not t.is_closing() and t.can_write_eof()
        except NotImplementedError:  # a transport without half-close (as TLS)
            half_close = False
        if t is None or not half_close:
            self.close()
            return
        self.closed = True  # nothing more is parsed, processed or written
        self._linger = Linger(self._loop.time())
        t.write_eof()
        if not t.is_reading():
            t.resume_reading()

    # -- what the pipeline uses ----------------------------------------------------------
    def write(self, data: bytes | memoryview) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    async def drain(self) -> None:
        if self._paused and not self.closed:
            self._drain = self._loop.create_future()
            await self._drain

    def check(self, now: float) -> None:
        """Enforce deadlines (called about once a second for every connection)."""
        if self._linger is not None and self._linger.expired(now) and self.transport:
            self.transport.close()
        if self.closed:
            return
        limits = self.limits
        if self.write_blocked is not None and now - self.write_blocked > limits.send_timeout:
            self.counters.add("timeouts")
            self.abort()  # the client stopped reading: free the connection
        elif self.head_started is not None and now - self.head_started > limits.header_timeout:
            self.counters.add("timeouts")
            self.head_started = None
            if self._task is None and not self._queue:
                self._reject(408, "request head not received in time")
            else:
                self.close()
        elif self.body_started is not None and now - self.body_started > limits.body_timeout:
            self.counters.add("timeouts")
            self.body_started = None
            self._reject(408, "request body not received in time")
        elif (
            not self.busy
            and self.head_started is None
            and now - self.idle_since > limits.idle_timeout
        ):
            self.close()

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of file ``fd`` from ``offset`` (zero-copy sendfile(2) on plain
        TCP, reads and writes on TLS; see :mod:`pkgedge.server.zerocopy`). Returns the bytes
        sent."""
        return await zerocopy.sendfile(self, fd, offset, count)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True
