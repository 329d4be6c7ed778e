"""The live stats endpoints of the admin API (all behind the admin token):

- ``GET /stats/live[?seconds=N]``: the last N seconds (default and at most 600, the last being
  the current one so far), one value per second per series, merged over the workers, with
  latency percentiles, savings and the protection's refusals by reason.
- ``GET /stats/stream``: server-sent events, one ``stats`` event a second (the last second,
  the last minute, savings), until the client goes away.
- ``GET /stats/history[?resolution=minute|hour&hours=N]``: the rollups on disk.
- ``GET /stats/savings[?days=N]``: savings per day (from the hourly rollups), the live
  window's, and the assumptions behind the prices.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pkgedge.config import EdgeSettings
from pkgedge.edge.context import Client
from pkgedge.stats import report
from pkgedge.stats.counters import Counters
from pkgedge.stats.rollup import RESOLUTIONS, Rollups, rollup_path
from pkgedge.stats.savings import ASSUMPTIONS, SavingsModel

if TYPE_CHECKING:
    from pkgedge.http.request import Request
    from pkgedge.web.admin import AdminHandler

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-store\r\nx-accel-buffering: no\r\nconnection: close\r\n\r\n"
)


class BadQuery(ValueError):
    pass


def query(req: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(req.target.partition("?")[2]).items()}


def number(q: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = q.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{name} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be between {low:g} and {high:g}")
    return value


def model_of(settings: EdgeSettings) -> SavingsModel:
    return SavingsModel(
        settings.egress_price_per_gb,
        settings.energy_joules_per_byte,
        settings.energy_joules_per_request,
    )


class LiveStats:
    """The endpoints, given the admin handler to answer through."""

    def __init__(self, settings: EdgeSettings, counters: Counters, admin: AdminHandler) -> None:
        self.settings = settings
        self.counters = counters
        self.admin = admin
        self.model = model_of(settings)
        self.rollups = Rollups(rollup_path(settings.cache_dir))
        #: seconds between two stream events (tests may shorten it)
        self.interval = 1.0

    def register(self) -> None:
        self.admin.route("/stats/live", self.live)
        self.admin.route("/stats/stream", self.stream)
        self.admin.route("/stats/history", self.history)
        self.admin.route("/stats/savings", self.savings)

    def _json(self, req: Request, client: Client, data: Any) -> None:
        self.admin.reply(client, req, 200, json.dumps(data, separators=(",", ":")).encode())

    def _bad(self, req: Request, client: Client, why: str, status: int = 400) -> None:
        self.admin.reply(client, req, status, why.encode(), "text/plain; charset=utf-8")

    def _get_only(self, req: Request, client: Client) -> bool:
        if req.method in ("GET", "HEAD"):
            return True
        self._bad(req, client, "use GET", 405)
        return False

    async def live(self, req: Request, client: Client) -> None:
        if not self._get_only(req, client):
            return
        try:
            seconds = int(number(query(req), "seconds", 600, 1, 600))
        except BadQuery as exc:
            self._bad(req, client, str(exc))
            return
        self._json(req, client, report.live(self.counters, self.model, seconds))

    async def history(self, req: Request, client: Client) -> None:
        if not self._get_only(req, client):
            return
        q = query(req)
        resolution = q.get("resolution", "minute")
        if resolution not in RESOLUTIONS:
            self._bad(req, client, "resolution must be minute or hour")
            return
        try:
            hours = number(q, "hours", 2 if resolution == "minute" else 48, 0, 24 * 90)
        except BadQuery as exc:
            self._bad(req, client, str(exc))
            return
        data = await asyncio.to_thread(report.history, self.rollups, resolution, hours, self.model)
        self._json(req, client, data)

    async def savings(self, req: Request, client: Client) -> None:
        if not self._get_only(req, client):
            return
        try:
            days = int(number(query(req), "days", 30, 1, 90))
        except BadQuery as exc:
            self._bad(req, client, str(exc))
            return
        daily = await asyncio.to_thread(report.per_day, self.rollups, days, self.model)
        live = report.live(self.counters, self.model, 600)
        self._json(
            req,
            client,
            {
                "per_day": daily,
                "last_10_minutes": live["savings"],
                "since_start": live["savings_since_start"],
                "model": self.model.__dict__,
                "assumptions": ASSUMPTIONS,
            },
        )

    async def stream(self, req: Request, client: Client) -> None:
        if not self._get_only(req, client):
            return
        client.write(STREAM_HEAD)
        if req.method == "HEAD":
            client.abort()
            return
        client.write(b"retry: 2000\n\n")
        while not client.closed:
            event = report.tick(self.counters, self.model)
            client.write(b"event: stats\ndata: " + json.dumps(event).encode() + b"\n\n")
            await client.drain()
            await asyncio.sleep(self.interval)
        client.abort()
