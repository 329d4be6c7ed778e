"""A small HTTP/1.1 client on asyncio + httptools, with a keep-alive pool.

One :class:`UpstreamPool` per worker and upstream host. Responses are streamed: the head is
returned as soon as it arrives and the body is read chunk by chunk with a between-bytes
timeout; reading pauses the socket when the consumer falls behind, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

import httptools

from pkgedge.errors import UpstreamError, UpstreamTimeout
from pkgedge.http.headers import REASON_FIELD, REASONS, Headers, reason_phrase

_HIGH_WATER = 1 << 20  # pause reading the origin socket above this many buffered bytes
_LOW_WATER = 1 << 18


class _Conn(asyncio.Protocol):
    """One upstream connection; carries one response at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.head: asyncio.Future[None] | None = None
        self.status = 0
        self.reason = b""
        self.headers: Headers = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.waiter: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        self.paused = False
        self.head_only = False
        self.keep_alive = True
        self.busy = False

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # Bytes with no request outstanding: the server is confused; drop the connection.
            self._fail(UpstreamError("unexpected data from upstream"))
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"invalid response from upstream: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if not self.complete and self.busy:
            self._fail(UpstreamError("upstream closed the connection"))

    # -- httptools callbacks -------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self.reason += status  # may come in pieces

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = bool(self.parser.should_keep_alive())
        if self.status < 200 and self.status != 101:  # interim response: keep waiting
            self.headers = []
            return
        reason = self.reason.decode("latin-1")
        self.reason = b""
        if reason and reason != REASONS.get(self.status) and REASON_FIELD not in dict(self.headers):
            self.headers.append((REASON_FIELD, reason_phrase(reason)))  # an explanation: kept
        if self.head_only or self.status in (204, 304):
            self.complete = True
            if self.head_only:
                self.keep_alive = False  # httptools cannot skip a HEAD body; don't reuse
        if self.head is not None and not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self.complete = True
        self._wake()

    # -- helpers -------------------------------------------------------------------------
    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        if self.head is not None and not self.head.done():
            self.head.set_exception(exc)
        self._wake()
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        self.head = None
        self.status = 0
        self.reason = b""
        self.headers = []
        self.chunks.clear()
        self.buffered = 0
        self.complete = False
        self.error = None
        self.head_only = False
        self.busy = False


class UpstreamResponse:
    """A streamed upstream response. Read with :meth:`read` until it returns ``b""``."""

    def __init__(self, conn: _Conn, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout
        self.status = conn.status
        self.headers: Headers = conn.headers
        self.released = False

    async def read(self) -> bytes:
        conn = self._conn
        while True:
            if conn.chunks:
                chunk = conn.chunks.popleft()
                conn.buffered -= len(chunk)
                if conn.paused and conn.buffered < _LOW_WATER and conn.transport is not None:
                    conn.transport.resume_reading()
                    conn.paused = False
                return chunk
            if conn.complete:
                self.release()
                return b""
            if conn.error is not None:
                raise conn.error
            conn.waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(conn.waiter, self._timeout)
            except TimeoutError:
                self.close()
                raise UpstreamTimeout("upstream between-bytes timeout") from None
            finally:
                conn.waiter = None

    async def read_all(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                self.close()
                raise UpstreamError("upstream response larger than the buffering limit")
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back to the pool (only reused when fully read)."""
        if self.released:
            return
        self.released = True
        self._conn.pool._release(self._conn)

    def close(self) -> None:
        if self.released:
            return
        self.released = True
        self._conn.keep_alive = False
        self._conn.pool._release(self._conn)


class UpstreamPool:
    """Keep-alive connections to one upstream origin (scheme, host, port)."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        connect_timeout: float = 5.0,
        first_byte_timeout: float = 30.0,
        between_bytes_timeout: float = 30.0,
        max_idle: int = 32,
    ) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.between_bytes_timeout = between_bytes_timeout
        self.max_idle = max_idle
        self._idle: list[_Conn] = []
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if scheme == "https" else None
        )
        self.opened = 0
        self.reused = 0
        self.in_use = 0
        #: told each request's latency (sent to response head), for the stats
        self.observe: Callable[[float], None] | None = None
        default_port = 443 if scheme == "https" else 80
        self.host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            self.host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"

    def __repr__(self) -> str:
        return (
            f"<UpstreamPool {self.scheme}://{self.host_header} idle={len(self._idle)} "
            f"in_use={self.in_use} opened={self.opened} reused={self.reused}>"
        )

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Conn(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(f"connect to {self.host_header} timed out") from None
        except OSError as exc:
            raise UpstreamError(
                f"connect to {self.host_header} failed: {exc.strerror or exc}"
            ) from None
        self.opened += 1
        return conn

    def _acquire_idle(self) -> _Conn | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                self.reused += 1
                return conn
        return None

    def _release(self, conn: _Conn) -> None:
        self.in_use -= 1
        if (
            conn.complete
            and conn.keep_alive
            and not conn.closed
            and conn.error is None
            and len(self._idle) < self.max_idle
            and conn.transport is not None
        ):
            conn.reset()
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def _forget(self, conn: _Conn) -> None:
        if conn in self._idle:
            self._idle.remove(conn)

    async def request(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | None = None,
    ) -> UpstreamResponse:
        """Send a request; return once the response head has arrived."""
        lines = [f"{method} {target} HTTP/1.1\r\nhost: {self.host_header}\r\n"]
        lines.extend(f"{n}: {v}\r\n" for n, v in headers)
        if body is not None:
            lines.append(f"content-length: {len(body)}\r\n")
        lines.append("\r\n")
        payload = "".join(lines).encode("latin-1")
        if body:
            payload += body
        started = time.monotonic()
        for attempt in (0, 1):
            conn = self._acquire_idle() if attempt == 0 else None
            fresh = conn is None
            if conn is None:
                conn = await self._connect()
            self.in_use += 1
            conn.busy = True
            conn.head_only = method == "HEAD"
            conn.head = asyncio.get_running_loop().create_future()
            assert conn.transport is not None
            conn.transport.write(payload)
            try:
                await asyncio.wait_for(asyncio.shield(conn.head), self.first_byte_timeout)
            except TimeoutError:
                conn.keep_alive = False
                self._release(conn)
                raise UpstreamTimeout("upstream first-byte timeout") from None
            except UpstreamError:
                conn.keep_alive = False
                self._release(conn)
                # A reused keep-alive connection may have been closed by the server just as
                # we wrote: retry once on a new connection, for idempotent requests only.
                if not fresh and method in ("GET", "HEAD") and conn.status == 0:
                    continue
                raise
            if self.observe is not None:
                self.observe(time.monotonic() - started)
            return UpstreamResponse(conn, self.between_bytes_timeout)
        raise UpstreamError("unreachable")  # pragma: no cover

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()

    @staticmethod
    def kwargs_from(settings: Any) -> dict[str, Any]:
        return {
            "connect_timeout": settings.connect_timeout,
            "first_byte_timeout": settings.first_byte_timeout,
            "between_bytes_timeout": settings.between_bytes_timeout,
            "max_idle": settings.upstream_pool_size,
        }
