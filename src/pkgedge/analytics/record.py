"""One download record: which file of which release went to what kind of client.

A *download* is a ``GET`` answered ``200`` whose target's last segment is a distribution
(``.whl``, ``.tar.gz``, ``.zip``, ``.tar.bz2``, ``.tar.xz``, ``.egg``): never ``.metadata``
(PEP 658), never a ``206`` (a range), never a ``304`` or a ``HEAD``. The record holds the time,
the project (normalised) and version from the filename, the file type (``bdist_wheel``,
``sdist``, ``bdist_egg``, as the public statistics name them), installer and version, Python
``major.minor``, OS and CI flag from the User-Agent (pip's and uv's JSON), and at most a salted
hash of the client address whose key changes every UTC day (:class:`ClientHasher`): the same
client has the same hash within a day and an unrelated one the next; the address itself is
never written.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)

from pkgedge.security.useragent import classify

#: File name endings that are distributions (``str.endswith`` takes the tuple).
SUFFIXES: tuple[str, ...] = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".egg")


def is_download(method: str, status: int, target: str) -> bool:
    """Cheap: is this request a completed whole-file download?"""
    return status == 200 and method == "GET" and target.endswith(SUFFIXES)


def day_of(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class ClientHasher:
    """``hash(address, time)``: 16 hex digits of BLAKE2b keyed with HMAC(secret, UTC day).
    The secret is made once per cache directory (``stats/secret``, mode 0600)."""

    def __init__(self, secret_path: str | Path) -> None:
        self.secret = _secret(Path(secret_path))
        self._day = -1
        self._key = b""
        self._seen: dict[str, str] = {}  # address → hash, for the current day

    def __call__(self, address: str, ts: float) -> str:
        day = int(ts // 86400)
        if day != self._day:
            self._day = day
            self._key = hmac.new(self.secret, day_of(ts).encode(), hashlib.sha256).digest()
            self._seen.clear()
        found = self._seen.get(address)
        if found is None:
            if len(self._seen) >= 100_000:
                self._seen.clear()
            digest = hashlib.blake2b(address.encode(), key=self._key, digest_size=8)
            found = self._seen[address] = digest.hexdigest()
        return found


def _secret(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and the first worker's secret wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def file_info(target: str) -> tuple[str, str, str] | None:
    """(project, version, file type) from a download's target, or None if its last segment
    is no distribution file name."""
    filename = unquote(target.partition("?")[0].rsplit("/", 1)[-1])
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return str(name), str(version), "bdist_wheel"
        if filename.endswith(".egg"):
            egg, _, rest = filename[:-4].partition("-")
            return str(canonicalize_name(egg)), rest.split("-", 1)[0], "bdist_egg"
        sname, sversion = parse_sdist_filename(filename)
        return str(sname), str(sversion), "sdist"
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return None


def make(ts: float, target: str, user_agent: str, client: str) -> dict[str, Any] | None:
    """The record of one download (``client`` already hashed), or None (not a distribution)."""
    info = file_info(target)
    if info is None:
        return None
    ua = classify(user_agent)
    py = ua.python_version or ""
    major_minor = ".".join(py.split(".")[:2]) if py else ""
    installer = ua.installer_name if ua.kind in ("pip", "uv", "poetry", "pdm", "mirror") else None
    return {
        "time": round(ts, 3),
        "project": info[0],
        "version": info[1],
        "file_type": info[2],
        "installer": installer or ua.kind,
        "installer_version": ua.installer_version or "",
        "python": major_minor,
        "system": ua.system or "",
        "ci": ua.ci,
        "mirror": ua.kind == "mirror",
        "client": client,
    }
