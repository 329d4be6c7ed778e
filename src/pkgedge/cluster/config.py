"""Configuration versions distributed to every node through Redis.

Each node keeps its own numbered versions (``cache-dir/config``, :mod:`pkgedge.edge.versions`);
what the nodes share is the *text* of the active version. Worker 0 of every node with
``--redis`` looks once a second at the hash ``pkgedge:config`` (``id``, ``source``, ``node``)
and at its own active version:

* the cluster's ``id`` is not the one this node last took (kept in
  ``cache-dir/cluster-config.json``): the text is activated here as a new version (author
  ``cluster:NODE``) unless it is already the active one's;
* else this node's active text changed (``pkgedge config activate``, a rollback, the admin
  API, ``--rules FILE`` at start): it is published with the next ``id``.

So the last activation anywhere wins, a node that was down takes the cluster's text when it
returns (unless it was itself changed meanwhile: then it publishes its own). Live table
contents follow right after, in the same step (:mod:`pkgedge.cluster.tables`). The rules
watcher of every worker then swaps versions within a second.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Protocol

from pkgedge.cluster.link import PREFIX, Client, log, repeat
from pkgedge.cluster.tables import TableStore, TableSync

KEY = PREFIX + "config"
INTERVAL = 1.0

#: KEYS[1]: the hash; ARGV: source, node → the new id
PUBLISH = """
local id = redis.call('HINCRBY', KEYS[1], 'id', 1)
redis.call('HSET', KEYS[1], 'source', ARGV[1], 'node', ARGV[2])
return id
"""


class _Version(Protocol):
    @property
    def source(self) -> str: ...


class Versions(TableStore, Protocol):
    """What this module (and :mod:`pkgedge.cluster.tables`) uses of
    :class:`pkgedge.edge.versions.VersionStore`."""

    def active(self) -> int: ...
    def get(self, number: int) -> _Version: ...
    def create(
        self, source: str, author: str, comment: str = "", parent: int | None = None
    ) -> int: ...
    def activate(self, number: int, author: str, action: str = "activate") -> tuple[int, int]: ...


class ConfigSync:
    """Worker 0's: the active configuration's text, shared."""

    def __init__(
        self,
        client: Client,
        node: str,
        versions: Versions,
        cache_dir: str,
        tables: TableSync | None = None,
    ) -> None:
        self.redis = client
        self.tables = tables  # synced right after the text (cluster/tables.py)
        self.node = node
        self.versions = versions
        self.path = Path(cache_dir) / "cluster-config.json"
        self._publish = client.register_script(PUBLISH)
        self.taken, self.shared = self._load()

    def __repr__(self) -> str:
        return f"<ConfigSync {self.node} id={self.taken}>"

    def _load(self) -> tuple[int, str | None]:
        try:
            data = json.loads(self.path.read_text())
            return int(data["id"]), str(data["source"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0, None

    def _save(self) -> None:
        tmp = self.path.with_name("." + self.path.name)
        tmp.write_text(json.dumps({"id": self.taken, "source": self.shared}))
        tmp.replace(self.path)

    def _local(self) -> str:
        return self.versions.get(self.versions.active()).source

    async def sync(self) -> None:
        state = await self.redis.hgetall(KEY)
        cid = int(state.get(b"id", b"0"))
        source = state.get(b"source", b"").decode()
        node = state.get(b"node", b"").decode()
        local = await asyncio.to_thread(self._local)
        if cid and cid != self.taken:  # the cluster changed since this node last looked
            self.taken, self.shared = cid, local
            if source != local:
                try:
                    number = await asyncio.to_thread(self._adopt, source, node)
                except Exception as exc:  # e.g. names a backend this node lacks: keep serving
                    log.warning("configuration from node %s not applied here: %s", node, exc)
                else:
                    self.shared = source
                    log.warning("configuration from node %s activated as version %d", node, number)
            self._save()
        elif self.shared is None:  # first look: what this node runs is the baseline
            self.shared = local
            self._save()
        elif local != self.shared:  # activated here: tell the others
            self.taken = int(await self._publish(keys=[KEY], args=[local, self.node]))
            self.shared = local
            self._save()
            log.warning("configuration version %d published to the cluster", self.versions.active())

    def _adopt(self, source: str, node: str) -> int:
        v = self.versions
        author = f"cluster:{node}"
        number = v.create(source, author, f"from node {node} through redis", parent=v.active())
        v.activate(number, author, "cluster")
        return number

    async def step(self) -> None:
        await self.sync()
        if self.tables is not None:
            await self.tables.sync()

    async def run(self) -> None:
        await repeat(self.step, INTERVAL, "configuration")
