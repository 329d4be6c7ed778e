"""The foreign file hosts every node may fetch from, shared through Redis.

A page whose files live on another host (the upstream index's file host) is rewritten to
``/+f/<scheme>/<host>/...`` links (:mod:`pkgedge.edge.rewrite`), and a node fetches such a
path only from a host it learnt from a page: the edge is not an open proxy. Behind a load
balancer the page and its files may be asked of different nodes, so a node with ``--redis``
adds each host it learns to the set ``pkgedge:filehosts`` *before* it answers the page
(:meth:`SharedHosts.add`, awaited by the fill: once per host and worker), and a node asked
for a ``/+f/`` path of a host it does not know looks there (:meth:`SharedHosts.known`)
before it answers 404; a host found there is learnt locally. A host not found there (or not
looked up: Redis down) is not asked again for a second, so random hosts cost at most one
Redis call a second each. Redis down: the node knows what it learnt itself (a warning at most
once a minute).
"""

from __future__ import annotations

import time
from collections.abc import Collection

from pkgedge.cluster.link import DOWN, PREFIX, Client, log

KEY = PREFIX + "filehosts"
#: seconds a host not found in the set is not asked for again
MISS_TTL = 1.0
_MISSES_MAX = 1024
_WARN_EVERY = 60.0


class SharedHosts:
    """One per worker."""

    def __init__(self, client: Client) -> None:
        self.redis = client
        self._misses: dict[str, float] = {}
        self._warned = -_WARN_EVERY

    def __repr__(self) -> str:
        return f"<SharedHosts misses={len(self._misses)}>"

    def _down(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("file hosts: %s (redis: %s); this node's own are used", what, exc)

    async def add(self, origins: Collection[str]) -> None:
        """Tell every node that ``origins`` are file hosts of the index."""
        if not origins:
            return
        try:
            await self.redis.sadd(KEY, *sorted(origins))
        except DOWN as exc:
            self._down("not shared", exc)
        for origin in origins:
            self._misses.pop(origin, None)

    async def known(self, origin: str) -> bool:
        """Whether any node learnt ``origin`` as a file host."""
        now = time.monotonic()
        if self._misses.get(origin, 0.0) > now:
            return False
        try:
            found = bool(await self.redis.sismember(KEY, origin))
        except DOWN as exc:
            self._down("not looked up", exc)
            found = False
        if not found:
            if len(self._misses) >= _MISSES_MAX:
                self._misses.clear()
            self._misses[origin] = now + MISS_TTL
        return found
