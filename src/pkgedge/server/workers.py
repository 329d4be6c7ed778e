"""Pre-fork workers sharing the listening sockets, supervised by the parent.

The parent binds the client and admin sockets (port 0 works: the parent knows the port),
prepares the disk tier, forks ``workers`` processes and prints where it listens. A worker
that dies is replaced. SIGTERM or SIGINT: workers stop accepting, finish in-flight responses
(up to a grace period), abort unfinished fills (so nothing half-written becomes visible) and
exit; then the parent exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from pkgedge.cache.store import DiskStore
from pkgedge.config import EdgeSettings
from pkgedge.edge.hooks import Hooks, RequestLog
from pkgedge.edge.pipeline import Edge
from pkgedge.server.limits import Connection, Limits
from pkgedge.server.protocol import HttpProtocol
from pkgedge.server.tls import client_protocol, tls_context
from pkgedge.stats.counters import Counters
from pkgedge.web.admin import AdminHandler

GRACE = 30.0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"pkgedge: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _url(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


async def _serve(
    settings: EdgeSettings,
    row: int,
    client_sock: socket.socket,
    admin_sock: socket.socket,
    counters: Counters,
    ready: Callable[[], None],
) -> None:
    loop = asyncio.get_running_loop()
    store = DiskStore(settings.cache_dir, settings.disk_size)
    store.open()
    hooks = Hooks()
    log: RequestLog | None = None
    if settings.access_log not in ("off", ""):
        log = RequestLog(settings.access_log)
        hooks.on_log(log)
    edge = Edge(settings, store, counters, hooks)
    conns: set[Connection] = set()
    admin_conns: set[Connection] = set()
    admin = AdminHandler(settings.admin_token, store, counters, edge)
    ctx = tls_context(settings.tls_cert, settings.tls_key, http2=settings.http2)
    limits = Limits.from_settings(settings)
    server = await loop.create_server(
        client_protocol(edge, counters, conns, limits, ctx, http2=settings.http2),
        sock=client_sock,
        ssl=ctx,
        ssl_handshake_timeout=settings.header_timeout if ctx else None,
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
            store.flush_accesses()
            if log is not None:
                log.flush()
            counters.set("memory_objects", len(edge.memory))
            counters.set("memory_bytes", edge.memory.bytes_used)
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
    for fill in list(edge.fills.values()):
        if fill.task is not None:
            fill.task.cancel()
    tasks = [f.task for f in list(edge.fills.values()) if f.task is not None]
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    keeper.cancel()
    store.flush_accesses()
    if log is not None:
        log.flush()
    store.close()


def _worker(
    settings: EdgeSettings,
    row: int,
    client_sock: socket.socket,
    admin_sock: socket.socket,
    counters: Counters,
    ready_w: int,
) -> None:
    import uvloop

    counters.bind(row)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def ready() -> None:
        os.write(ready_w, b"r")
        os.close(ready_w)

    try:
        uvloop.run(_serve(settings, row, client_sock, admin_sock, counters, ready))
    except KeyboardInterrupt:
        pass


def run(settings: EdgeSettings, out: Callable[[str], None] = print) -> int:
    tls_context(settings.tls_cert, settings.tls_key)  # a bad certificate: one clear error
    store = DiskStore(settings.cache_dir, settings.disk_size)
    store.prepare()
    client_sock = bind(*settings.listen_addr)
    admin_sock = bind(*settings.admin_addr)
    counters = Counters(settings.workers)
    children: dict[int, int] = {}  # pid → row
    stopping = False

    def spawn(row: int) -> int:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 0
            try:
                _worker(settings, row, client_sock, admin_sock, counters, w)
            except BaseException as exc:  # report and exit; the parent replaces us
                print(f"pkgedge: worker {row} failed: {exc}", file=sys.stderr)
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        children[pid] = row
        with os.fdopen(r, "rb") as fh:
            fh.read(1)
        return pid

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheme = "https" if settings.tls_cert else "http"
    out(f"pkgedge edge: listening on {_url(client_sock, scheme)}")
    out(f"pkgedge edge: admin on {_url(admin_sock)}")
    out(f"pkgedge edge: admin token {settings.admin_token}")
    out(f"pkgedge edge: upstream {settings.upstream}")
    for row in range(settings.workers):
        spawn(row)
    out(f"pkgedge edge: ready ({settings.workers} workers)")
    sys.stdout.flush()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        row = children.pop(pid)
        counters.clear_row(row)
        if not stopping:
            print(
                f"pkgedge: worker {row} (pid {pid}) exited ({status}); restarting", file=sys.stderr
            )
            spawn(row)
    return 0
