"""One worker's watch on the active configuration: new versions and live table contents.

:meth:`RulesWatcher.poll` reads ``config/active`` (a few dozen bytes) and compares its
(version, serial) with what the worker runs. A new version is compiled, its live tables are
filled in, and the whole :class:`~pkgedge.edge.ruleset.Ruleset` is swapped with
:meth:`Pipeline.use_rules` (requests in flight keep theirs). A new serial on the same version
means a table changed: the changed table files are read and put in place with
``Tables.replace``, which the compiled rules look up by name on every use. :meth:`run` polls
every 0.25 s, reading and compiling in a thread and swapping on the event loop (a live table
is replaced from the thread: one dict item assignment, which requests read once per use), so a
change reaches every worker well within a second.

A version that fails to compile here (a damaged file) or a table file that does not fit leaves
the worker on what it runs, with one line on stderr: a worker never dies of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from pkgedge.edge.ruleset import Ruleset
from pkgedge.edge.versions import VersionStore
from pkgedge.errors import PkgedgeError
from pkgedge.rules import Rules

if TYPE_CHECKING:
    from pkgedge.edge.pipeline import Pipeline

__all__ = ["POLL_INTERVAL", "RulesWatcher"]

POLL_INTERVAL = 0.25
_FileKey = tuple[int, int, int]


def _stderr(line: str) -> None:
    print(f"pkgedge: {line}", file=sys.stderr, flush=True)


class RulesWatcher:
    def __init__(
        self, store: VersionStore, pipeline: Pipeline, warn: Callable[[str], None] = _stderr
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.warn = warn
        self.version = 0
        self.serial = 0
        self.swaps = 0  # versions put in place
        self.table_loads = 0  # table files put in place
        self._compiled: dict[int, Rules] = {}  # versions this worker compiled (rollbacks)
        self._files: dict[str, _FileKey] = {}  # table files in use, by (inode, mtime, size)

    def __repr__(self) -> str:
        return f"<RulesWatcher v{self.version} serial={self.serial} swaps={self.swaps}>"

    def load(self) -> None:
        """Run the active version (at the worker's start; creates version 1 on first use)."""
        self.store.ensure()
        self.poll()

    def poll(self) -> bool:
        """Catch up with the pointer; True if anything changed."""
        changed, ruleset = self.prepare()
        if ruleset is not None:
            self.install(ruleset)
        return changed

    def prepare(self) -> tuple[bool, Ruleset | None]:
        """Read the pointer; put changed table files in place on the running ruleset, or
        compile a new version with its tables. (changed, the ruleset to install or None).
        Safe in a thread: it only builds, and replaces whole table contents."""
        try:
            version, serial = self.store.state()
        except PkgedgeError as exc:
            self.warn(str(exc))
            return False, None
        if (version, serial) == (self.version, self.serial) or version == 0:
            return False, None
        ruleset = None
        if version != self.version:
            ruleset = self._build(version)
        else:
            self._refresh_tables(self.pipeline.ruleset)
        self.serial = serial
        return True, ruleset

    def install(self, ruleset: Ruleset) -> None:
        """Run ``ruleset`` from the next request on (on the worker's event loop)."""
        self.pipeline.use_rules(ruleset)
        self.swaps += 1

    def _build(self, number: int) -> Ruleset | None:
        self.version = number  # a version that fails is not retried until the next change
        rules = self._compiled.get(number)
        if rules is None:
            try:
                rules = self.store.compile(self.store.get(number).source, number)
            except PkgedgeError as exc:
                running = self.pipeline.ruleset.version
                self.warn(f"version {number} not loaded, still running v{running}: {exc}")
                return None
            if len(self._compiled) >= 8:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[number] = rules
        ruleset = Ruleset(rules, number)  # fresh tables: the declared contents
        self._files = {}
        self._refresh_tables(ruleset)
        return ruleset

    def _refresh_tables(self, ruleset: Ruleset) -> None:
        files = self.store.table_files(ruleset.version)
        for name in list(self._files):
            if name not in files and name in ruleset.rules.initial:
                ruleset.tables.replace(name, ruleset.rules.initial[name])  # override removed
                del self._files[name]
        for name, path in files.items():
            if name not in ruleset.tables.kinds:
                continue
            try:
                st = os.stat(path)
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                if self._files.get(name) == key:
                    continue
                data = json.loads(path.read_bytes())
                ruleset.tables.replace(name, data)
            except (OSError, ValueError) as exc:  # TableError is a ValueError
                self.warn(f"table {name} of v{ruleset.version} not loaded: {exc}")
                continue
            self._files[name] = key
            self.table_loads += 1

    async def run(self, interval: float = POLL_INTERVAL) -> None:
        """Poll until cancelled, in a thread: compiling a large version or building a large
        ACL does not stop the event loop; the swap itself runs on the loop."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.store.state() == (self.version, self.serial):
                    continue  # the usual case: one small read, no thread
                _, ruleset = await asyncio.to_thread(self.prepare)
                if ruleset is not None:
                    self.install(ruleset)  # here, on the loop: use_rules clears the memos
            except Exception as exc:  # never let the watch end the worker
                self.warn(f"configuration watch: {type(exc).__name__}: {exc}")
