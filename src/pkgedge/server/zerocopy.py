"""Sending a body file to an HTTP/1.1 client: ``sendfile(2)`` on a duplicate of the socket
descriptor for plain TCP, reads and writes through the transport for TLS."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pkgedge.server.protocol import HttpProtocol


def _wake(waiter: asyncio.Future[None]) -> None:
    """Writability callback: the loop may call it again (level-triggered) before the waiter's
    task has run, or after a timeout cancelled the waiter."""
    if not waiter.done():
        waiter.set_result(None)


async def sendfile(conn: HttpProtocol, fd: int, offset: int, count: int) -> int:
    """Send ``count`` bytes of file ``fd`` from ``offset`` with zero-copy sendfile(2).

    The transport's own buffer is drained first so bytes stay in order; the socket is
    then written directly through a duplicate descriptor (so the loop can watch it for
    writability without disturbing the transport). Falls back to reads and writes for
    TLS connections. Returns the bytes sent.
    """
    transport = conn.transport
    if transport is None or conn.closed:
        return 0
    loop = asyncio.get_running_loop()
    if transport.get_extra_info("sslcontext") is not None or conn.tls:
        return await _copy_file(conn, fd, offset, count)
    while transport.get_write_buffer_size() and not conn.closed:  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    sock = transport.get_extra_info("socket")
    if sock is None or conn.closed:
        return 0
    out = os.dup(sock.fileno())
    sent = 0
    try:
        while sent < count and not conn.closed:
            try:
                n = os.sendfile(out, fd, offset + sent, min(count - sent, 1 << 22))
            except BlockingIOError:
                # the client is not reading: the deadline sweep (check) aborts us after
                # send_timeout; wake up at least once a second to notice
                if conn.write_blocked is None:
                    conn.write_blocked = loop.time()
                waiter = loop.create_future()
                loop.add_writer(out, _wake, waiter)
                try:
                    await asyncio.wait_for(waiter, 1.0)
                except TimeoutError:
                    pass
                finally:
                    loop.remove_writer(out)
                continue
            except OSError:
                conn.abort()
                break
            if n == 0:
                break
            sent += n
            conn.write_blocked = None
    finally:
        os.close(out)
    return sent


async def _copy_file(conn: HttpProtocol, fd: int, offset: int, count: int) -> int:
    sent = 0
    while sent < count and not conn.closed:
        data = os.pread(fd, min(count - sent, 256 * 1024), offset + sent)
        if not data:
            break
        conn.write(data)
        sent += len(data)
        await conn.drain()
    return sent
