"""Saved playgrounds: ``<cache_dir>/playgrounds/ID.json``, one file per Save.

A file is written under a temporary name (mode 600, in a directory of mode 700), flushed to
disk and renamed into place, so a link never finds half a document and a saved playground
survives restarts. IDs are random (96 bits, URL-safe); a name that is not one is refused
before any path is built from it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from pkgedge.web.playground.doc import Doc, parse_doc

_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")


class SavedPlaygrounds:
    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(cache_dir) / "playgrounds"

    def save(self, doc: Doc) -> str:
        """Store ``doc``; its id."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ident = secrets.token_urlsafe(12)
        data = json.dumps({**doc.as_json(), "saved": int(time.time())}, indent=1).encode()
        tmp = self.dir / f".{ident}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / f"{ident}.json")
        return ident

    def load(self, ident: str) -> dict[str, Any] | None:
        """The saved document (as stored), or None if there is no such id."""
        if not _ID.match(ident):
            return None
        try:
            raw = (self.dir / f"{ident}.json").read_bytes()
        except FileNotFoundError:
            return None
        data: dict[str, Any] = json.loads(raw)
        parse_doc(data)  # what was stored still fits (never trusted blindly)
        return data
