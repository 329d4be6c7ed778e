"""The download statistics endpoints of the admin API (behind the admin token):

- ``GET /stats/downloads/NAME[?days=30&by=installer]``: per day, and totals per ``by``
  (installer, version, python, system, file_type, ci).
- ``GET /stats/api/packages/NAME/KIND`` with KIND ``recent``, ``overall``, ``python_major``,
  ``python_minor`` or ``system``: the public download-statistics service's JSON shapes.
- ``GET /stats/top[?days=1]``: the most downloaded projects and files.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from pkgedge.analytics import api
from pkgedge.analytics.recorder import Recorder
from pkgedge.edge.context import Client
from pkgedge.web.livestats import BadQuery, number, query

if TYPE_CHECKING:
    from pkgedge.http.request import Request
    from pkgedge.web.admin import AdminHandler

API_PREFIX = "/stats/api/packages/"
BY_PREFIX = "/stats/downloads/"


class DownloadStats:
    def __init__(self, recorder: Recorder, admin: AdminHandler) -> None:
        self.recorder = recorder  # its database, made on first use
        self.admin = admin

    def register(self) -> None:
        self.admin.route(API_PREFIX, self.public_api)
        self.admin.route(BY_PREFIX, self.downloads)
        self.admin.route("/stats/top", self.top)

    def _json(self, req: Request, client: Client, data: Any) -> None:
        self.admin.reply(client, req, 200, json.dumps(data, separators=(",", ":")).encode())

    def _bad(self, req: Request, client: Client, why: str, status: int = 400) -> None:
        self.admin.reply(client, req, status, why.encode(), "text/plain; charset=utf-8")

    async def public_api(self, req: Request, client: Client) -> None:
        rest = req.target.partition("?")[0][len(API_PREFIX) :].strip("/")
        name, _, kind = rest.partition("/")
        if not name or kind not in api.KINDS:
            self._bad(req, client, f"use {API_PREFIX}NAME/({'|'.join(api.KINDS)})", 404)
            return
        package = canonicalize_name(name)
        data = await asyncio.to_thread(api.answer, self.recorder.db, package, kind, query(req))
        self._json(req, client, data)

    async def downloads(self, req: Request, client: Client) -> None:
        name = req.target.partition("?")[0][len(BY_PREFIX) :].strip("/")
        if not name or "/" in name:
            self._bad(req, client, f"use {BY_PREFIX}NAME?days=30&by=installer", 404)
            return
        q = query(req)
        try:
            days = int(number(q, "days", 30, 1, 3660))
        except BadQuery as exc:
            self._bad(req, client, str(exc))
            return
        column = q.get("by") or None
        if column is not None and column not in api.BY:
            self._bad(req, client, f"by must be one of {', '.join(api.BY)}")
            return
        package = canonicalize_name(name)
        data = await asyncio.to_thread(api.by, self.recorder.db, package, days, column)
        self._json(req, client, data)

    async def top(self, req: Request, client: Client) -> None:
        try:
            days = int(number(query(req), "days", 1, 1, 90))
        except BadQuery as exc:
            self._bad(req, client, str(exc))
            return
        since = api.day_minus(days - 1)

        def both() -> dict[str, Any]:
            db = self.recorder.db
            return {
                "days": days,
                "projects": db.top(since, ("project",)),
                "files": db.top(since, ("project", "version", "file_type")),
                "installers": db.top(since, ("installer",)),
            }

        self._json(req, client, await asyncio.to_thread(both))
