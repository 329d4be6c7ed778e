"""Body files: one file per stored object, its encoded copies, and fills' temp files.

Layout under the directory given (the cache dir)::

    objects/ab/<objid>        a committed body (``ab`` = the id's first two characters)
    objects/ab/<objid>.gz     its gzip copy, made on first use (likewise ``.br``)
    tmp/<objid>               a body being filled; renamed into ``objects/`` on commit
    tmp/<objid>.head          the fill's response head, for waiters in other workers

Object ids are random hex strings chosen by the edge; a body file is never rewritten once
in place, so readers need no locks. Every file that other processes may read while it is
being made appears atomically (written under another name, then ``os.replace``).
"""

from __future__ import annotations

import marshal
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pkgedge.errors import StoreError

#: Content codings with a stored copy, and the suffix of that copy's file.
SUFFIXES = {"gzip": ".gz", "br": ".br"}
_HEAD = ".head"


def _check_objid(objid: str) -> str:
    if not objid or not all(c.isalnum() or c in "-_" for c in objid):
        raise ValueError(f"not an object id: {objid!r}")
    return objid


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class BodyFiles:
    """The body files of one cache directory (shared by every worker process)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.objects_dir = self.root / "objects"
        self.tmp_dir = self.root / "tmp"

    def __repr__(self) -> str:
        return f"<BodyFiles {self.root}>"

    def prepare(self) -> None:
        """Create the directories and remove what a previous run left in ``tmp/``."""
        self.make_dirs(clear_tmp=True)

    def make_dirs(self, *, clear_tmp: bool = False) -> None:
        try:
            self.objects_dir.mkdir(parents=True, exist_ok=True)
            if clear_tmp and self.tmp_dir.exists():
                shutil.rmtree(self.tmp_dir)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot use cache dir {self.root}: {exc.strerror}") from None

    # -- paths ---------------------------------------------------------------------------
    def body_path(self, objid: str) -> Path:
        return self.objects_dir / objid[:2] / _check_objid(objid)

    def tmp_path(self, objid: str) -> Path:
        return self.tmp_dir / _check_objid(objid)

    def encoded_path(self, objid: str, coding: str) -> Path:
        suffix = SUFFIXES.get(coding)
        if suffix is None:
            raise ValueError(f"no stored copies for content coding {coding!r}")
        path = self.body_path(objid)
        return path.with_name(path.name + suffix)

    # -- writing a body ------------------------------------------------------------------
    def open_tmp(self, objid: str) -> tuple[int, Path]:
        """Create (or truncate) the temp file of a fill; return its descriptor (opened for
        writing; the caller closes it) and its path."""
        path = self.tmp_path(objid)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), path

    def install(self, objid: str, tmp: Path) -> Path:
        """Move a complete body from ``tmp`` to its place; return that place."""
        dest = self.body_path(objid)
        dest.parent.mkdir(exist_ok=True)
        os.replace(tmp, dest)
        return dest

    def unlink(self, objid: str) -> None:
        """Remove an object's body and all its encoded copies (missing ones are fine)."""
        path = self.body_path(objid)
        _unlink(path)
        for suffix in SUFFIXES.values():
            _unlink(path.with_name(path.name + suffix))

    def clear(self) -> None:
        """Remove every committed body (after the index dropped them all)."""
        for sub in self.objects_dir.iterdir():
            shutil.rmtree(sub, ignore_errors=True)

    # -- reading a body ------------------------------------------------------------------
    def read(self, objid: str, expected_size: int) -> bytes | None:
        """The whole body, or None if it is missing or not ``expected_size`` bytes long."""
        try:
            body = self.body_path(objid).read_bytes()
        except FileNotFoundError:
            return None
        return body if len(body) == expected_size else None

    def read_encoded(
        self, objid: str, coding: str, compress: Callable[[bytes, str], bytes]
    ) -> bytes | None:
        """The body in ``coding`` from its stored copy, or made now with ``compress(body,
        coding)`` and stored (under a per-process name, then renamed: concurrent makers
        never expose a partial copy). None if the body is missing (or purged meanwhile)."""
        enc_path = self.encoded_path(objid, coding)
        try:
            return enc_path.read_bytes()
        except FileNotFoundError:
            pass
        try:
            body = compress(self.body_path(objid).read_bytes(), coding)
        except FileNotFoundError:
            return None
        part = enc_path.with_name(enc_path.name + f".{os.getpid()}")
        try:
            part.write_bytes(body)
            os.replace(part, enc_path)
        except FileNotFoundError:  # its directory was purged meanwhile
            return None
        return body

    # -- heads of fills in progress (collapsing across worker processes) ------------------
    def publish_head(self, objid: str, record: tuple[Any, ...]) -> None:
        """Make a fill's head record (marshal-able values only) readable by other workers;
        they see the previous record or this one, never a partial file."""
        head = self.tmp_path(objid).with_name(objid + _HEAD)
        part = head.with_name(head.name + ".part")
        try:
            part.write_bytes(marshal.dumps(record))
        except ValueError:
            raise ValueError(f"head record of {objid} is not marshal-able") from None
        os.replace(part, head)

    def read_head(self, objid: str) -> tuple[Any, ...] | None:
        """The last record published for ``objid``, or None if there is none (yet)."""
        try:
            record = marshal.loads(self.tmp_path(objid).with_name(objid + _HEAD).read_bytes())
        except (FileNotFoundError, EOFError, ValueError, TypeError):
            return None
        return record if isinstance(record, tuple) else None

    def drop_tmp(self, objid: str) -> None:
        """Remove a fill's temp file and its head (after commit or failure)."""
        tmp = self.tmp_path(objid)
        for path in (tmp, tmp.with_name(objid + _HEAD), tmp.with_name(objid + _HEAD + ".part")):
            _unlink(path)
