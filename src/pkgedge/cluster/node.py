"""What one worker of a node with ``--redis`` runs: the registry's heartbeat, the purge
stream's follower and the configuration's and live tables' sync (worker 0), purge publishing
(every worker), the shared limits and behaviour signals (every worker with protection on) and, with
``--peers redis``, the tier's node list (every worker, once a second: edge/peers.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

from pkgedge.cluster.config import ConfigSync, Versions
from pkgedge.cluster.hosts import SharedHosts
from pkgedge.cluster.limits import Limiter, LimitSync
from pkgedge.cluster.link import DOWN, Registry, connect, log, repeat
from pkgedge.cluster.purges import Apply, Check, PurgeBus
from pkgedge.cluster.signals import SignalSync
from pkgedge.cluster.tables import TableSync
from pkgedge.config import EdgeSettings
from pkgedge.security.ratelimit import PenaltyBox
from pkgedge.security.sharedsignals import SharedSignals

#: how long worker 0 waits for Redis to catch up on purges before it serves anyway
START_WAIT = 10.0
#: how often every worker reads its tier's live nodes (``--peers redis``)
PEERS_EVERY = 1.0


class PeerList(Protocol):
    """What this module uses of :class:`pkgedge.edge.peers.Peers`."""

    def set_nodes(self, nodes: dict[str, str]) -> None: ...


class Node:
    def __init__(
        self,
        settings: EdgeSettings,
        row: int,
        check: Check,
        apply: Apply,
        *,
        limiters: Sequence[Limiter] = (),
        boxes: dict[str, PenaltyBox] | None = None,
        versions: Versions | None = None,
        signals: SharedSignals | None = None,
        peers: PeerList | None = None,
        url: str = "",
    ) -> None:
        redis = settings.redis
        if not redis:
            raise ValueError("a cluster node needs --redis")
        self.row = row
        self.redis = connect(redis)
        self.blocking = connect(redis, timeout=None)
        self.registry = Registry(settings, self.redis, url)
        self.peers = peers if settings.peers == "redis" else None
        if self.peers is not None and not url and row == 0:
            log.warning("--peers redis, no --advertise, a wildcard listener: no peer asks here")
        self.purges = PurgeBus(
            self.registry,
            self.redis,
            self.blocking,
            settings.cache_dir,
            check,
            apply,
            settings.purge_timeout,
        )
        self.limits = (
            LimitSync(self.redis, settings.node_name, limiters, boxes or {})
            if limiters or boxes
            else None
        )
        self.hosts = SharedHosts(self.redis)  # the file hosts every node learnt
        self.signals = SignalSync(self.redis, signals) if signals is not None else None
        self.config = (
            ConfigSync(
                self.redis,
                settings.node_name,
                versions,
                settings.cache_dir,
                TableSync(self.redis, settings.node_name, versions, settings.cache_dir),
            )
            if versions is not None and row == 0
            else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    def __repr__(self) -> str:
        return f"<Node {self.registry.name} row={self.row}>"

    async def start(self) -> None:
        """Worker 0 catches up on purges (at most :data:`START_WAIT`) before it serves."""
        loop = asyncio.get_running_loop()
        if self.row == 0:
            try:
                await asyncio.wait_for(self.purges.start(), START_WAIT)
                await self.registry.beat()
                self._started = True
            except (*DOWN, TimeoutError) as exc:
                log.warning("redis unreachable at start (serving, purges follow later): %s", exc)
            self._tasks.append(loop.create_task(self.registry.run()))
            self._tasks.append(loop.create_task(self._follow()))
        if self.config is not None:
            self._tasks.append(loop.create_task(self.config.run()))
        if self.limits is not None:
            self._tasks.append(loop.create_task(self.limits.run()))
        if self.signals is not None:
            self._tasks.append(loop.create_task(self.signals.run()))
        if self.peers is not None:
            self._tasks.append(loop.create_task(self._peers(self.peers)))

    async def _peers(self, peers: PeerList) -> None:
        """Keep the tier's node list; while Redis is down the last one known stays."""

        async def look() -> None:
            peers.set_nodes(await self.registry.peers())

        await repeat(look, PEERS_EVERY, "peers: the last list known stays")

    async def _follow(self) -> None:
        await self.purges.follow(started=self._started)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, *DOWN):
                await t
        if self.row == 0:  # a node that stops is no longer live (a crashed one is, for LIVE s)
            with contextlib.suppress(OSError):
                self.purges.save()  # the cursor, if it moved since it was last written
            with contextlib.suppress(*DOWN):
                await asyncio.wait_for(self.registry.leave(), 1.0)
        for client in (self.redis, self.blocking):
            with contextlib.suppress(*DOWN):
                await client.aclose()
