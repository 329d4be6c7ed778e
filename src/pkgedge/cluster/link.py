"""The connection to Redis and the node registry.

A node registers in the sorted set ``pkgedge:nodes`` (score: the time of its last heartbeat,
sent every :data:`HEARTBEAT` seconds by worker 0) with its tier in ``pkgedge:node:NAME``: a
node with ``--shield`` is an ``edge``, any other a ``shield`` (a tier-0 node: it fetches
from the origin). A node is live while its heartbeat is younger than :data:`LIVE`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pkgedge.config import EdgeSettings

PREFIX = "pkgedge:"
NODES = PREFIX + "nodes"
HEARTBEAT = 1.0
LIVE = 4.0
#: what a Redis call may raise when the server is down or goes away
DOWN = (RedisError, OSError, asyncio.TimeoutError)
log = logging.getLogger("pkgedge.cluster")
#: a ``redis.asyncio.Redis`` (bytes in and out); its replies are typed as loose unions, so
#: this package reads them as Any and converts each one where it is used
Client = Any


def connect(url: str, *, timeout: float | None = 2.0) -> Client:
    """A client for ``url`` (connections are made on first use, and again after a failure)."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=0.5,
        socket_timeout=timeout,
        retry_on_timeout=False,
        decode_responses=False,
    )


async def repeat(
    step: Callable[[], Awaitable[object]],
    interval: float,
    what: str,
    on_down: Callable[[], None] | None = None,
) -> None:
    """Run ``step`` every ``interval`` seconds until cancelled. While Redis is down it says
    so once (``what``: what goes on without it), calls ``on_down`` after each failure, and
    says when Redis answers again: every periodic task of a node runs this way."""
    down = False
    while True:
        try:
            await step()
            if down:
                log.warning("redis is reachable again (%s)", what)
            down = False
        except DOWN as exc:
            if on_down is not None:
                on_down()
            if not down:
                log.warning("redis unreachable (%s): %s", what, exc)
            down = True
        await asyncio.sleep(interval)


def tier(settings: EdgeSettings) -> str:
    return "edge" if settings.shield else "shield"


class Registry:
    """This node's heartbeat, and who else is live."""

    def __init__(self, settings: EdgeSettings, client: Client, url: str = "") -> None:
        self.name = settings.node_name
        self.tier = tier(settings)
        self.url = url  # where the other nodes reach this one (--peers redis)
        self.redis = client

    def __repr__(self) -> str:
        return f"<Registry {self.name} tier={self.tier}>"

    async def beat(self) -> None:
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(NODES, {self.name: now})
        fields = {"tier": self.tier, "pid": os.getpid(), "url": self.url}
        pipe.hset(PREFIX + "node:" + self.name, mapping=fields)
        pipe.expire(PREFIX + "node:" + self.name, int(LIVE * 10))
        pipe.zremrangebyscore(NODES, "-inf", now - 3600)  # forget nodes gone for an hour
        await pipe.execute()

    async def leave(self) -> None:
        await self.redis.zrem(NODES, self.name)

    async def run(self) -> None:
        """Beat until cancelled; a Redis outage is logged once and waited out."""
        await repeat(self.beat, HEARTBEAT, "heartbeat")

    async def live(self) -> dict[str, str]:
        """Live nodes → their tier."""
        return {name: t for name, (t, _) in (await self.live_urls()).items()}

    async def live_urls(self) -> dict[str, tuple[str, str]]:
        """Live nodes → (their tier, the URL they registered, or "")."""
        names = await self.redis.zrangebyscore(NODES, time.time() - LIVE, "+inf")
        if not names:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for n in names:
            pipe.hmget(PREFIX + "node:" + n.decode(), "tier", "url")
        rows: list[Any] = await pipe.execute()
        return {
            n.decode(): ((t or b"shield").decode(), (u or b"").decode())
            for n, (t, u) in zip(names, rows, strict=True)
        }

    async def peers(self) -> dict[str, str]:
        """The live nodes of this node's tier that registered a URL → that URL."""
        return {
            name: url
            for name, (t, url) in (await self.live_urls()).items()
            if t == self.tier and url
        }
