"""Running the origin: uvicorn on a socket we bind (so port 0 works and is printed)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

from pkgedge.index.settings import OriginSettings

EDGE_FILE = "edge.json"  # written by `pkgedge up`: where the edge's admin API is


def locate_edge(data_dir: str) -> tuple[str, str] | None:
    """The edge admin (URL, token) that ``pkgedge up`` recorded in the data directory."""
    try:
        data = json.loads((Path(data_dir) / EDGE_FILE).read_text())
        return str(data["admin"]), str(data["token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def edge_link(settings: OriginSettings) -> OriginSettings:
    """Fill in the edge admin URL and token from ``DATA_DIR/edge.json`` when not configured."""
    if settings.edge_admin:
        return settings
    try:
        data = json.loads((Path(settings.data_dir) / EDGE_FILE).read_text())
    except (OSError, ValueError):
        return settings
    return settings.replace(edge_admin=data.get("admin"), edge_admin_token=data.get("token"))


def serve(settings: OriginSettings, out: Callable[[str], None] = print) -> int:
    import uvicorn

    from pkgedge.index.app import Origin
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
        http="httptools",
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
