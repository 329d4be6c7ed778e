"""Running the origin: uvicorn on a socket we bind (so port 0 works and is printed)."""

from __future__ import annotations

import signal
from collections.abc import Callable

from pkgedge.index.edgelink import EDGE_FILE, edge_link, locate_edge
from pkgedge.index.settings import OriginSettings

__all__ = ["EDGE_FILE", "edge_link", "locate_edge", "serve"]


def serve(settings: OriginSettings, out: Callable[[str], None] = print) -> int:
    import uvicorn

    from pkgedge.index.app import Origin
    from pkgedge.index.reason import ReasonProtocol
    from pkgedge.server.workers import bind

    origin = Origin(edge_link(settings))
    host, port = settings.listen_addr
    sock = bind(host, port)
    sock.setblocking(True)
    actual = sock.getsockname()[1]
    out(f"pkgedge origin: listening on http://{host}:{actual}")
    out(f"pkgedge origin: data in {settings.data_dir} ({origin.catalog!r})")
    out(f"pkgedge origin: mirroring {settings.upstream if settings.mirroring else 'off'}")
    config = uvicorn.Config(
        origin.app,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http=ReasonProtocol,  # httptools, with reason phrases that explain refusals
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal under the
    # handlers it found: make those no-ops so a clean stop exits 0 and closes the catalog.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    out("pkgedge origin: ready")
    server.run(sockets=[sock])
    origin.catalog.close()
    return 0
