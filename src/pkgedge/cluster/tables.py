"""Live table and ACL contents shared by every node through Redis.

A table edit made on one node (``PUT /config/tables/NAME``, ``pkgedge config table``)
replaces the active version's live contents there and leaves a mark
(:meth:`pkgedge.edge.versions.VersionStore.set_table`). Worker 0 of every node with
``--redis`` runs :meth:`TableSync.sync` once a second, right after the configuration's sync
(:mod:`pkgedge.cluster.config`), so a version and a table it declares, published together,
arrive in that order:

* the hash ``pkgedge:tables:ids`` holds an edit id per table: for each table whose id is not
  the one this node last took (kept in ``cache-dir/cluster-tables.json``), the contents in
  ``pkgedge:tables:data`` (JSON: the node, the data) replace the table here (author
  ``cluster:NODE``, not marked: it does not bounce back). A mark left here for that table
  meanwhile is dropped: as for the configuration's text, the edit that reached Redis first
  wins everywhere, and every node ends with the same contents;
* each marked table is published: the mark is taken, the live contents read, and one script
  call makes the next id and stores the contents.

A table this node's active version does not declare (or declares as the other kind) is left
as it is, with a warning; the configurations of the nodes are the same once their sync ran.
Redis down: edits stay local and marked, and are published when it answers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Protocol

from pkgedge.cluster.link import PREFIX, Client, log
from pkgedge.errors import PkgedgeError

IDS = PREFIX + "tables:ids"
DATA = PREFIX + "tables:data"

#: KEYS: ids, data; ARGV: name, contents → the edit's id
PUBLISH = """
local id = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return id
"""


class TableStore(Protocol):
    """What this module uses of :class:`pkgedge.edge.versions.VersionStore`."""

    def tables(self, number: int | None = None) -> dict[str, Any]: ...
    def set_table(self, name: str, data: Any, author: str, *, share: bool = True) -> int: ...
    def table_edits(self) -> list[str]: ...
    def mark_edit(self, name: str) -> None: ...
    def take_edit(self, name: str) -> bool: ...


class TableSync:
    """Worker 0's: live table contents, shared."""

    def __init__(self, client: Client, node: str, store: TableStore, cache_dir: str) -> None:
        self.redis = client
        self.node = node
        self.store = store
        self.path = Path(cache_dir) / "cluster-tables.json"
        self._publish = client.register_script(PUBLISH)
        self.taken: dict[str, int] = self._load()

    def __repr__(self) -> str:
        return f"<TableSync {self.node} taken={len(self.taken)}>"

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            return {}

    def _save(self) -> None:
        tmp = self.path.with_name("." + self.path.name)
        tmp.write_text(json.dumps(self.taken, sort_keys=True))
        tmp.replace(self.path)

    async def sync(self) -> None:
        ids = {k.decode(): int(v) for k, v in (await self.redis.hgetall(IDS)).items()}
        changed = False
        for name, eid in sorted(ids.items()):
            if self.taken.get(name) != eid:
                await self._take(name)
                self.taken[name] = eid
                changed = True
        edited = await asyncio.to_thread(self.store.table_edits)
        if edited:
            await self._send(edited)
            changed = True
        if changed:
            self._save()

    async def _take(self, name: str) -> None:
        raw = await self.redis.hget(DATA, name)
        if raw is None:
            return
        try:
            got = json.loads(raw)
            node, data = str(got["node"]), got["data"]
        except (ValueError, KeyError, TypeError):
            log.warning("table %s: unreadable contents in redis, not applied", name)
            return
        await asyncio.to_thread(self.store.take_edit, name)  # the cluster's edit wins
        if node == self.node:
            return  # this node's own (its state file was lost): its contents are these
        try:
            await asyncio.to_thread(
                self.store.set_table, name, data, f"cluster:{node}", share=False
            )
        except PkgedgeError as exc:
            log.warning("table %s from node %s not applied here: %s", name, node, exc)
        else:
            log.warning("table %s from node %s applied (%d entries)", name, node, len(data))

    async def _send(self, names: list[str]) -> None:
        """Publish the live contents of the tables ``names`` (marked): the marks are taken
        first, the active version's tables read once."""
        names = [n for n in names if await asyncio.to_thread(self.store.take_edit, n)]
        if not names:
            return
        sent: list[str] = []
        try:
            live = await asyncio.to_thread(self.store.tables)
            for name in names:
                if name not in live:
                    sent.append(name)  # edited, then a version without it: nothing to share
                    continue
                body = json.dumps({"node": self.node, "data": live[name]}, separators=(",", ":"))
                eid = int(await self._publish(keys=[IDS, DATA], args=[name, body]))
                sent.append(name)
                self.taken[name] = eid
                log.warning("table %s published to the cluster (edit %d)", name, eid)
        finally:
            for name in names:
                if name not in sent:  # sent on the next sync
                    await asyncio.to_thread(self.store.mark_edit, name)
