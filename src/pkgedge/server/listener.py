"""One worker's listeners: the client and admin servers, the deadline sweep, graceful stop.

:func:`serve` runs until SIGTERM or SIGINT, then stops accepting, lets in-flight responses
finish (up to a grace period) and returns; the caller then cancels unfinished fills and
closes the store. It knows the pipeline only as a :class:`~pkgedge.server.protocol.Handler`.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import time
from collections.abc import Callable

from pkgedge.server.limits import Connection, Limits
from pkgedge.server.protocol import HttpProtocol
from pkgedge.server.tls import Handler, client_protocol
from pkgedge.stats.counters import Counters

GRACE = 30.0


async def serve(
    handler: Handler,
    admin: Handler,
    client_sock: socket.socket,
    admin_sock: socket.socket,
    counters: Counters,
    limits: Limits,
    tls: ssl.SSLContext | None,
    ready: Callable[[], None],
    tick: Callable[[], None],
    *,
    http2: bool = True,
) -> None:
    """Serve until told to stop. ``tick`` runs about once a second (flushes, gauges)."""
    loop = asyncio.get_running_loop()
    conns: set[Connection] = set()
    admin_conns: set[Connection] = set()
    server = await loop.create_server(
        client_protocol(handler, counters, conns, limits, tls, http2=http2),
        sock=client_sock,
        ssl=tls,
        ssl_handshake_timeout=limits.header_timeout if tls else None,
        backlog=4096,
    )
    admin_server = await loop.create_server(
        lambda: HttpProtocol(admin, counters, admin_conns, counted=False), sock=admin_sock
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    ready()

    async def housekeeping() -> None:
        while True:
            await asyncio.sleep(1.0)
            tick()
            now = loop.time()
            for c in list(conns):
                c.check(now)

    keeper = loop.create_task(housekeeping())
    await stop.wait()
    server.close()
    admin_server.close()
    deadline = time.monotonic() + GRACE
    for c in list(conns) + list(admin_conns):
        if not c.busy or c.graceful:  # graceful: HTTP/2 GOAWAY, in-flight streams finish
            c.close()
    while any(c.busy for c in conns) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    for c in list(conns):
        c.close()
    keeper.cancel()
