"""Running the origin: uvicorn on a socket we bind (so port 0 works and is printed)."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

from pkgedge.errors import ConfigError
from pkgedge.index.edgelink import EDGE_FILE, edge_link, locate_edge
from pkgedge.index.settings import OriginSettings

__all__ = ["EDGE_FILE", "edge_link", "locate_edge", "serve"]


def serve(settings: OriginSettings, out: Callable[[str], None] = print) -> int:
    import uvicorn

    from pkgedge.index.app import Origin
    from pkgedge.index.reason import ReasonProtocol
    from pkgedge.server.workers import bind

    # opened first: a log that cannot be written is a usage error before anything starts
    log_to = access_handler(settings.access_log) if settings.access_log != "off" else None
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
        access_log=settings.access_log != "off",
        loop="uvloop",
        http=ReasonProtocol,  # httptools, with reason phrases that explain refusals
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    if log_to is not None:  # after uvicorn's own logging set-up, which it replaces
        logger = logging.getLogger("uvicorn.access")
        logger.handlers = [log_to]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal under the
    # handlers it found: make those no-ops so a clean stop exits 0 and closes the catalog.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    out("pkgedge origin: ready")
    server.run(sockets=[sock])
    origin.catalog.close()
    return 0


def access_handler(where: str) -> logging.Handler:
    """The origin's access log (``--access-log``): one line per request, ``TIME CLIENT
    "REQUEST LINE" STATUS``, to stdout (``-``) or appended to a file (uvicorn's access
    logger writes it)."""
    from uvicorn.logging import AccessFormatter

    handler: logging.Handler
    try:
        handler = logging.StreamHandler(sys.stdout) if where == "-" else logging.FileHandler(where)
    except OSError as exc:
        raise ConfigError(f"cannot open the access log {where!r}: {exc.strerror}") from None
    handler.setFormatter(
        AccessFormatter(
            '%(asctime)s %(client_addr)s "%(request_line)s" %(status_code)s', use_colors=False
        )
    )
    return handler
