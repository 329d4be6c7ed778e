"""Pre-fork workers sharing the listening sockets, supervised by the parent.

What a worker runs is given by the composition root (:mod:`pkgedge.app`); this module only
manages processes.

The parent binds the client and admin sockets (port 0 works: the parent knows the port),
prepares the disk tier, forks ``workers`` processes and prints where it listens. A worker
that dies is replaced. SIGTERM or SIGINT: workers stop accepting, finish in-flight responses
(up to a grace period), abort unfinished fills (so nothing half-written becomes visible) and
exit; then the parent exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from pkgedge.cache.store import DiskStore
from pkgedge.config import EdgeSettings
from pkgedge.server.lifeline import die_with_parent
from pkgedge.stats.counters import Counters


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


#: A worker's main coroutine: (row, client socket, admin socket, counters, ready callback).
WorkerMain = Callable[
    [int, socket.socket, socket.socket, Counters, Callable[[], None]], Coroutine[Any, Any, None]
]


def _worker(
    main: WorkerMain,
    row: int,
    client_sock: socket.socket,
    admin_sock: socket.socket,
    counters: Counters,
    ready_w: int,
    parent: int,
) -> None:
    import uvloop

    die_with_parent(parent)  # a parent killed with SIGKILL leaves no worker behind
    counters.bind(row)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def ready() -> None:
        os.write(ready_w, b"r")
        os.close(ready_w)

    try:
        uvloop.run(main(row, client_sock, admin_sock, counters, ready))
    except KeyboardInterrupt:
        pass


def run(
    settings: EdgeSettings,
    main: WorkerMain,
    out: Callable[[str], None] = print,
    on_exit: Callable[[Counters], None] | None = None,
) -> int:
    """Bind, prepare the disk tier, fork ``settings.workers`` workers running ``main``,
    replace those that die, and stop them all on SIGTERM or SIGINT; then ``on_exit`` gets
    the counters as the workers left them."""
    store = DiskStore(settings.cache_dir, settings.disk_size)
    store.prepare()
    client_sock = bind(*settings.listen_addr)
    admin_sock = bind(*settings.admin_addr)
    counters = Counters(settings.workers)
    children: dict[int, int] = {}  # pid → row
    stopping = False

    parent = os.getpid()

    def spawn(row: int) -> int:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 0
            try:
                _worker(main, row, client_sock, admin_sock, counters, w, parent)
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
    if on_exit is not None:
        on_exit(counters)
    return 0
