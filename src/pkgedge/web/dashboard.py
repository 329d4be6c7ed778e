"""The dashboard on the admin listener: ``GET /dashboard``.

The page and its files (``/dashboard/static/...``: the page's script and style, and uPlot
1.6.32, MIT, vendored from its npm package in ``web/static/uplot/``) need no token: they hold
no data. The page asks for the admin token and calls the token-protected endpoints with it
(``/stats/live``, ``/stats/stream`` read with ``fetch`` since ``EventSource`` cannot send a
header, ``/stats/savings``, ``/stats/top``, ``/stats/clients``, ``/stats/events``,
``/stats/downloads/NAME``). Nothing is loaded from anywhere else (the Content-Security-Policy
says so), so it works offline.

Also here: ``GET /stats/clients`` (the top clients of every worker and what the protection
did to them) and ``GET /stats/events`` (recent purges, edge starts and the configuration
versions' activations, newest first).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pkgedge.edge.context import Client
from pkgedge.stats import clients
from pkgedge.stats.events import EventLog

if TYPE_CHECKING:
    from pkgedge.http.request import Request
    from pkgedge.web.admin import AdminHandler

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_FILES = {
    "dashboard.js": "dashboard.js",
    "dashboard.css": "dashboard.css",
    "uPlot.iife.min.js": "uplot/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/uPlot.min.css",
}
STATIC = "/dashboard/static/"


def _read(name: str) -> bytes:
    return resources.files("pkgedge.web").joinpath("static", *name.split("/")).read_bytes()


class Dashboard:
    def __init__(
        self,
        admin: AdminHandler,
        stats_dir: str | Path,
        events: EventLog,
        activations: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.admin = admin
        self.stats_dir = Path(stats_dir)
        self.events = events
        #: the configuration versions' activation log (at, by, from, to, action)
        self.activations = activations
        self.files = {k: (_read(v), _TYPES[Path(v).suffix]) for k, v in _FILES.items()}
        self.page = _read("dashboard.html")

    def register(self) -> None:
        self.admin.route("/dashboard", self.serve_page, public=True)
        self.admin.route(STATIC, self.serve_static, public=True)
        self.admin.route("/stats/clients", self.top_clients)
        self.admin.route("/stats/events", self.recent_events)

    def _send(self, req: Request, client: Client, body: bytes, ctype: str) -> None:
        extra = [("content-security-policy", CSP), ("x-content-type-options", "nosniff")]
        self.admin.reply(client, req, 200, body, ctype, extra)

    def _json(self, req: Request, client: Client, data: Any) -> None:
        self.admin.reply(client, req, 200, json.dumps(data, separators=(",", ":")).encode())

    async def serve_page(self, req: Request, client: Client) -> None:
        self._send(req, client, self.page, _TYPES[".html"])

    async def serve_static(self, req: Request, client: Client) -> None:
        name = req.target.partition("?")[0][len(STATIC) :]
        found = self.files.get(name)
        if found is None:
            self.admin.reply(client, req, 404, b"no such file", "text/plain; charset=utf-8")
            return
        self._send(req, client, *found)

    async def top_clients(self, req: Request, client: Client) -> None:
        self._json(req, client, {"clients": clients.merged(self.stats_dir)})

    async def recent_events(self, req: Request, client: Client) -> None:
        events = self.events.recent(30)
        if self.activations is not None:
            for a in self.activations()[-30:]:
                detail = f"version {a.get('from') or 'none'} → {a.get('to')} ({a.get('action')}"
                events.append(
                    {
                        "time": float(a.get("at", 0)),
                        "kind": "activation",
                        "detail": detail + f", by {a.get('by')})",
                    }
                )
        events.sort(key=lambda e: -float(e.get("time", 0)))
        self._json(req, client, {"events": events[:30]})
