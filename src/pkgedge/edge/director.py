"""Origin failover: a primary index, then a fallback (``--fallback URL``), with health.

The director knows two backends, the upstream and the fallback (a second index: e.g. the
file store's archive copy, or a mirror). A fill tries the primary first and, when it cannot
be reached or answers 500/502/503/504, the fallback: the same path under the fallback's
index URL (``/simple/...``), or the same target on its host (``/files/...``). Only fills
without a stored copy fail over: one with a stale copy keeps the existing stale-if-error and
grace rules (the fetch step serves the stale copy), so a stored object is preferred to
another backend's.

Health: passive, :data:`FAILURES` failures in a row mark the primary down, and fills then go
to the fallback first; active, while it is down a probe (``GET`` of the index root, at most
once every :data:`PROBE` seconds, started by the next fill) marks it up again when it
answers below 500. Foreign file hosts (``/+f/...``) have no fallback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from pkgedge.errors import PkgedgeError
from pkgedge.http.headers import Headers
from pkgedge.upstream.client import UpstreamPool, UpstreamResponse

FAILURES = 3
PROBE = 1.0
#: answers that count as a failed backend
ERRORS = frozenset({500, 502, 503, 504})
log = logging.getLogger("pkgedge.edge")


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc.lower()}"


class Director:
    """One per worker (the backend's): which backend a fill asks, and their health."""

    def __init__(self, primary: str, fallback: str, pool: Callable[[str], UpstreamPool]) -> None:
        self.primary = _origin(primary)
        self.primary_index = urlsplit(primary).path
        self.fallback = _origin(fallback)
        self.fallback_index = urlsplit(fallback).path
        self.pool = pool
        self.failures = 0
        self.down = False
        self._probed = 0.0
        self._probe: asyncio.Task[None] | None = None
        self.failovers = 0

    def __repr__(self) -> str:
        state = "down" if self.down else "up"
        return f"<Director {self.primary} ({state}) then {self.fallback}>"

    def routes(self, origin: str, target: str) -> list[tuple[str, str]]:
        """The (origin, target) pairs to try for a fill of ``target`` at ``origin``."""
        if origin != self.primary:
            return [(origin, target)]
        alt = target
        if target.startswith(self.primary_index) and self.primary_index not in ("", "/"):
            alt = self.fallback_index + target[len(self.primary_index) :]
        pair = [(origin, target), (self.fallback, alt)]
        if self.down:
            self._maybe_probe()
            pair.reverse()
        return pair

    def result(self, origin: str, ok: bool) -> None:
        if origin != self.primary:
            return
        if ok:
            if self.down:
                log.warning("backend %s is up again", self.primary)
            self.failures, self.down = 0, False
            return
        self.failures += 1
        if self.failures >= FAILURES and not self.down:
            log.warning("backend %s marked down after %d failures", self.primary, self.failures)
            self.down = True

    def _maybe_probe(self) -> None:
        now = time.monotonic()
        if now - self._probed < PROBE or (self._probe is not None and not self._probe.done()):
            return
        self._probed = now
        self._probe = asyncio.get_running_loop().create_task(self.probe())

    async def probe(self) -> None:
        """The active check: the primary's index root answers below 500."""
        try:
            resp = await self.pool(self.primary).request(
                "GET", self.primary_index or "/", [("accept", "text/html")]
            )
            resp.close()
            self.result(self.primary, resp.status not in ERRORS)
        except (PkgedgeError, OSError):
            pass

    async def fetch(
        self, origin: str, target: str, headers: Headers, *, failover: bool
    ) -> UpstreamResponse:
        """GET ``target`` from ``origin``, or from the fallback when ``failover`` and the
        first backend fails (the last backend's error or answer is what the fill sees)."""
        routes = self.routes(origin, target) if failover else [(origin, target)]
        for i, (o, t) in enumerate(routes):
            last = i == len(routes) - 1
            try:
                resp = await self.pool(o).request("GET", t, headers)
            except (PkgedgeError, OSError):
                self.result(o, False)
                if last:
                    raise
                self.failovers += 1
                continue
            ok = resp.status not in ERRORS
            self.result(o, ok)
            if ok or last:
                return resp
            resp.close()
            self.failovers += 1
        raise AssertionError("unreachable: the last route returns or raises")
