"""Numbered versions of the rules, the active pointer, the activation log and live tables.

Everything lives in ``<cache_dir>/config/`` (directories 700, files 600), one file per thing,
each written atomically (temp file, fsync, rename, fsync of the directory: the primitives are
:mod:`pkgedge.edge.configfiles`)::

    config/versions/000001.json   {"version", "created", "author", "parent", "comment",
                                   "edited", "source"}   (1: the built-in default)
    config/active                 {"version": N, "serial": S}   (S grows on every change)
    config/activations.log        one JSON line per activation: at, by, from, to, action
    config/tables/N/NAME.json     a table's (object) or an ACL's (list) live contents,
                                  replacing what version N declares
    config/.lock                  writers hold it (flock) while they change anything

A version that is or was active is immutable; drafts are edited in place. Only a version that
compiles is ever activated. Workers watch ``active`` (:mod:`pkgedge.edge.rulewatch`): a change
of ``version`` or ``serial`` is one small read away.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pkgedge.edge.configfiles import append_line, locked, private_dir, write_atomic
from pkgedge.errors import PkgedgeError

if TYPE_CHECKING:
    from pkgedge.rules import Rules

__all__ = [
    "Version",
    "VersionError",
    "VersionStore",
    "compile_version",
]

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_SOURCE = 1 << 20  # as the compiler's own limit


class VersionError(PkgedgeError, ValueError):
    """A version operation that cannot be done; ``status`` is the admin API's answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Version:
    number: int
    created: float
    author: str
    parent: int | None
    comment: str
    edited: float
    source: str

    def meta(self) -> dict[str, Any]:
        return {
            "version": self.number,
            "created": self.created,
            "author": self.author,
            "parent": self.parent,
            "comment": self.comment,
            "edited": self.edited,
        }


def compile_version(
    source: str, number: int | str, backends: Collection[str] | None = None
) -> Rules:
    """Compile a version's source (its diagnostics name it ``vN``); RulesError otherwise.
    ``backends``: the backend names the rules may choose (None: not checked)."""
    from pkgedge.rules import compile_rules  # here: listing versions needs no parser

    name = f"v{number}" if isinstance(number, int) else number
    return compile_rules(source, name=name, backends=backends)


class VersionStore:
    """The configuration versions of one edge (one data directory)."""

    def __init__(
        self, cache_dir: str | os.PathLike[str], backends: Collection[str] | None = None
    ) -> None:
        self.dir = Path(cache_dir) / "config"
        self.backends = None if backends is None else tuple(backends)
        self.versions_dir = self.dir / "versions"
        self.tables_dir = self.dir / "tables"
        self.outbox_dir = self.dir / "tables-outbox"  # edits made here, for the cluster
        self.active_path = self.dir / "active"
        self.log_path = self.dir / "activations.log"
        self.lock_path = self.dir / ".lock"

    def __repr__(self) -> str:
        return f"<VersionStore {self.dir}>"

    # -- first use ----------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create version 1 (the built-in default) and make it active, on first use."""
        if self.active_path.exists():
            return
        with locked(self.lock_path):
            if self.active_path.exists():
                return
            private_dir(self.versions_dir)
            private_dir(self.tables_dir)
            if not self._path(1).exists():
                from pkgedge.rules import default_source

                default = default_source()
                self._save(
                    Version(1, time.time(), "pkgedge", None, "built-in default", 0.0, default)
                )
            self._record(None, 1, "pkgedge (first use)", "create")
            self._point(1)

    def compile(self, source: str, name: int | str) -> Rules:
        """Compile with this edge's backend names; RulesError with every problem."""
        return compile_version(source, name, self.backends)

    # -- reading ------------------------------------------------------------------------------
    def _path(self, number: int) -> Path:
        return self.versions_dir / f"{number:06d}.json"

    def state(self) -> tuple[int, int]:
        """(active version, serial) from the pointer; (0, 0) before first use."""
        try:
            data = json.loads(self.active_path.read_bytes())
            return int(data["version"]), int(data["serial"])
        except FileNotFoundError:
            return 0, 0
        except (ValueError, KeyError, TypeError) as exc:
            raise VersionError(f"{self.active_path} is damaged: {exc}", 500) from None

    def active(self) -> int:
        self.ensure()
        return self.state()[0]

    def numbers(self) -> list[int]:
        self.ensure()
        return sorted(int(p.stem) for p in self.versions_dir.glob("*.json") if p.stem.isdigit())

    def get(self, number: int) -> Version:
        self.ensure()
        try:
            data = json.loads(self._path(number).read_bytes())
        except FileNotFoundError:
            raise VersionError(f"no version {number}", 404) from None
        except ValueError as exc:
            raise VersionError(f"version {number} is damaged: {exc}", 500) from None
        return Version(
            number,
            float(data["created"]),
            str(data["author"]),
            data.get("parent"),
            str(data.get("comment", "")),
            float(data.get("edited", 0.0)),
            str(data["source"]),
        )

    def activations(self) -> list[dict[str, Any]]:
        """Every activation, oldest first (at, by, from, to, action)."""
        self.ensure()
        out = []
        with self.log_path.open(encoding="utf-8") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def ever_active(self) -> set[int]:
        return {int(a["to"]) for a in self.activations()}

    def status(self, number: int) -> str:
        """``active``, ``retired`` (was active: immutable) or ``draft``."""
        if number == self.active():
            return "active"
        return "retired" if number in self.ever_active() else "draft"

    def listing(self) -> list[dict[str, Any]]:
        was = self.ever_active()
        current = self.active()
        out = []
        for n in self.numbers():
            meta = self.get(n).meta()
            meta["status"] = "active" if n == current else "retired" if n in was else "draft"
            out.append(meta)
        return out

    def diff(self, a: int, b: int) -> str:
        va, vb = self.get(a), self.get(b)
        lines = difflib.unified_diff(
            va.source.splitlines(keepends=True),
            vb.source.splitlines(keepends=True),
            fromfile=f"v{a}",
            tofile=f"v{b}",
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)

    # -- writing versions ---------------------------------------------------------------------
    def _save(self, version: Version) -> None:
        data = dict(version.meta(), source=version.source)
        write_atomic(self._path(version.number), json.dumps(data, indent=1).encode())

    def _record(self, old: int | None, new: int, by: str, action: str) -> None:
        line = json.dumps({"at": time.time(), "by": by, "from": old, "to": new, "action": action})
        append_line(self.log_path, line)

    def _point(self, number: int) -> None:
        serial = self.state()[1] + 1
        write_atomic(self.active_path, json.dumps({"version": number, "serial": serial}).encode())

    @staticmethod
    def _check_source(source: str) -> None:
        if not isinstance(source, str):
            raise VersionError("the source must be text")
        if len(source.encode()) > MAX_SOURCE:
            raise VersionError(f"the source is larger than {MAX_SOURCE} bytes", 413)

    def create(self, source: str, author: str, comment: str = "", parent: int | None = None) -> int:
        """A new draft; its number."""
        self._check_source(source)
        self.ensure()
        with locked(self.lock_path):
            number = max(self.numbers(), default=0) + 1
            self._save(Version(number, time.time(), author, parent, comment, 0.0, source))
        return number

    def clone(self, number: int, author: str, comment: str = "") -> int:
        """A new draft with the source and the live table contents of ``number``."""
        old = self.get(number)
        new = self.create(old.source, author, comment or f"clone of v{number}", parent=number)
        src, dst = self.tables_dir / str(number), self.tables_dir / str(new)
        if src.is_dir():
            private_dir(dst)
            for path in src.glob("*.json"):
                write_atomic(dst / path.name, path.read_bytes())
        return new

    def check_draft(self, number: int) -> None:
        """VersionError (409) unless ``number`` is a draft (never active)."""
        if number in self.ever_active():
            raise VersionError(
                f"version {number} is or was active and cannot change: clone it "
                f"(pkgedge config clone {number}) and edit the clone",
                409,
            )

    def edit(self, number: int, source: str, author: str, comment: str | None = None) -> Version:
        """Replace a draft's source (an active or once active version is immutable)."""
        self._check_source(source)
        with locked(self.lock_path):
            old = self.get(number)
            self.check_draft(number)
            new = Version(
                number,
                old.created,
                old.author if old.author == author else f"{old.author}, {author}",
                old.parent,
                old.comment if comment is None else comment,
                time.time(),
                source,
            )
            self._save(new)
        return new

    # -- activation ---------------------------------------------------------------------------
    def activate(self, number: int, author: str, action: str = "activate") -> tuple[int, int]:
        """Make ``number`` active (RulesError if it does not compile); (from, to). Activating
        the active version changes nothing."""
        version = self.get(number)
        rules = self.compile(version.source, number)  # RulesError: never activated
        with locked(self.lock_path):
            old = self.active()
            if old == number:
                return old, number
            self._carry_tables(old, number, rules)
            self._record(old, number, author, action)
            self._point(number)
        return old, number

    def rollback(self, author: str) -> tuple[int, int]:
        """Activate the version that was active before the current one."""
        current = self.active()
        for entry in reversed(self.activations()):
            if entry.get("to") == current:
                before = entry.get("from")
                if before is None:
                    break
                return self.activate(int(before), author, "rollback")
        raise VersionError(f"nothing to roll back to: version {current} is the first active", 409)

    def adopt(self, source: str, path: str) -> int | None:
        """Activate ``source`` (read from ``path``: ``pkgedge edge --rules FILE``) as a new
        version unless it is the active one's text; the new number, or None if unchanged."""
        self.compile(source, path)  # RulesError before anything is stored
        author = comment = f"edge --rules {path}"
        if self.get(self.active()).source == source:
            return None
        number = self.create(source, author, comment, parent=self.active())
        self.activate(number, author, "start")
        return number

    # -- live tables --------------------------------------------------------------------------
    def table_files(self, number: int) -> dict[str, Path]:
        folder = self.tables_dir / str(number)
        if not folder.is_dir():
            return {}
        return {p.stem: p for p in folder.glob("*.json") if _TABLE_NAME.match(p.stem)}

    def table_overrides(self, number: int) -> dict[str, Any]:
        out = {}
        for name, path in self.table_files(number).items():
            with contextlib.suppress(OSError, ValueError):
                out[name] = json.loads(path.read_bytes())
        return out

    def tables(self, number: int | None = None) -> dict[str, Any]:
        """Every table and ACL of a version (default: the active one) as it is live now."""
        number = self.active() if number is None else number
        rules = self.compile(self.get(number).source, number)
        current: dict[str, Any] = dict(rules.initial)
        current.update(
            {k: v for k, v in self.table_overrides(number).items() if k in rules.declared}
        )
        return {k: current[k] for k in sorted(rules.declared)}

    def set_table(
        self, name: str, data: Mapping[str, str] | list[str], author: str, *, share: bool = True
    ) -> int:
        """Replace a table's or an ACL's live contents for the active version (TableError when
        they do not fit it); the active version's number. ``share``: an edit made here, which
        a node with ``--redis`` publishes to the others (``cluster/tables.py``); not one that
        came from them."""
        if not isinstance(name, str) or not _TABLE_NAME.match(name):
            raise VersionError(f"not a table name: {name!r}")
        with locked(self.lock_path):
            number = self.active()
            rules = self.compile(self.get(number).source, number)
            rules.tables().replace(name, data)  # TableError: nothing stored
            folder = self.tables_dir / str(number)
            private_dir(folder)
            write_atomic(folder / f"{name}.json", json.dumps(data, indent=0).encode())
            if share:
                self.mark_edit(name)
            self._point(number)  # the serial tells every worker
        return number

    # -- table edits to share (cluster/tables.py) ---------------------------------------------
    def table_edits(self) -> list[str]:
        """The tables edited here since their edit was last taken (:meth:`take_edit`)."""
        try:
            return sorted(p.name for p in self.outbox_dir.iterdir() if _TABLE_NAME.match(p.name))
        except OSError:
            return []

    def mark_edit(self, name: str) -> None:
        private_dir(self.outbox_dir)
        (self.outbox_dir / name).touch()

    def take_edit(self, name: str) -> bool:
        """Forget the mark of ``name``'s edit (before its contents are read and sent: an edit
        made meanwhile marks it again); whether it was marked."""
        try:
            (self.outbox_dir / name).unlink()
        except FileNotFoundError:
            return False
        return True

    def _carry_tables(self, old: int, new: int, rules: Rules) -> None:
        """Keep live edits across an activation: a table the new version declares with the
        same kind and the same declared contents keeps the old version's live contents,
        unless the new version has its own."""
        mine = self.table_files(new)
        theirs = self.table_files(old)
        if not theirs:
            return
        try:
            previous = self.compile(self.get(old).source, old)
        except PkgedgeError:
            return
        for name, path in theirs.items():
            if name in mine or rules.declared.get(name) != previous.declared.get(name):
                continue
            if rules.initial.get(name) != previous.initial.get(name):
                continue
            folder = self.tables_dir / str(new)
            private_dir(folder)
            write_atomic(folder / path.name, path.read_bytes())
