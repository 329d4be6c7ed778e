"""Reading an uploaded archive safely: a wheel's ``METADATA`` or an sdist's ``PKG-INFO``.

Part of upload validation (:mod:`pkgedge.index.upload`): pure, no I/O but reads. A wheel must
hold one ``<name>-<version>.dist-info`` with METADATA, WHEEL and RECORD for this release; an
sdist (``.tar.gz`` or ``.zip``) a single top-level ``<name>-<version>/`` with PKG-INFO. No
member may escape the archive (absolute paths, ``..``, links pointing out, device files), no
zip member may be a link or use an exotic compression, and an archive expanding past 64 MiB
must compress at most 50:1 (decompression bombs). A refusal is :class:`InvalidDistribution`,
whose ``detail`` completes "Invalid distribution file."
"""

from __future__ import annotations

import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["MAX_METADATA_SIZE", "InvalidDistribution", "read_core_metadata"]

MIB = 1024 * 1024
MAX_METADATA_SIZE = 16 * MIB  # a METADATA/PKG-INFO larger than this is refused
_RATIO_MIN_SIZE = 64 * MIB  # archives expanding past this must compress at most ...
_RATIO_MAX = 50  # ... 50:1 (decompression bombs)
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)


class InvalidDistribution(ValueError):
    """The archive is not a valid distribution of this release; ``detail`` says why (may be
    empty: a corrupt archive)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


def read_core_metadata(path: Path, ext: str, size: int, project: str, version: Version) -> bytes:
    """The core metadata file of the ``ext`` (``.whl``, ``.tar.gz`` or ``.zip``) archive at
    ``path`` (``size`` bytes), which must be a distribution of ``project`` ``version``."""
    if ext == ".whl":
        return _read_wheel(path, size, project, version)
    return _read_sdist(path, ext, size, project, version)


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def _check_member(name: str) -> str:
    """The top-level segment of an archive member; raise if its path could escape."""
    parts = name.rstrip("/").split("/")
    if re.match(r"^([A-Za-z]:|/)|.*[\\\x00]", name) or {"", ".", ".."} & set(parts):
        raise InvalidDistribution(f"Unsafe member path {name!r}.")
    return parts[0]


def _matches(stem: str, project: str, version: Version) -> bool:
    """Whether ``<name>-<version>`` (a .dist-info or sdist directory stem) is this release."""
    name, sep, ver = stem.rpartition("-")
    return bool(sep) and canonicalize_name(name) == project and _version(ver) == version


def _check_ratio(total: int, size: int) -> None:
    if total > _RATIO_MIN_SIZE and total > _RATIO_MAX * max(size, 1):
        raise InvalidDistribution(f"File exceeds compression ratio of {_RATIO_MAX}.")


def _zip_members(zf: zipfile.ZipFile, size: int) -> set[str]:
    infos = zf.infolist()
    names = {i.filename for i in infos}
    if len(names) != len(infos):
        raise InvalidDistribution("Duplicate member names.")
    for info in infos:
        _check_member(info.filename)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InvalidDistribution("File does not use a supported compression type.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InvalidDistribution(f"Symbolic link member {info.filename!r}.")
    _check_ratio(sum(i.file_size for i in infos), size)
    return names


def _read_capped(f: Any) -> bytes:
    with f:
        data: bytes = f.read(MAX_METADATA_SIZE + 1)
    if len(data) > MAX_METADATA_SIZE:
        raise InvalidDistribution("The core metadata file is too large.")
    return data


def _read_wheel(path: Path, size: int, project: str, version: Version) -> bytes:
    """The METADATA of a wheel: one ``<name>-<version>.dist-info`` with METADATA, WHEEL
    and RECORD for this release, and only safe member paths."""
    try:
        if not zipfile.is_zipfile(path):
            raise InvalidDistribution("File is not a zipfile.")
        with zipfile.ZipFile(path) as zf:
            names = _zip_members(zf, size)
            found = [n for n in names if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if len(found) != 1:
                raise InvalidDistribution(f"Expected one .dist-info/METADATA, found {len(found)}.")
            dist_info = found[0].split("/")[0]
            if not _matches(dist_info.removesuffix(".dist-info"), project, version):
                raise InvalidDistribution(f"{dist_info} does not belong to {project} {version}.")
            for required in ("WHEEL", "RECORD"):
                if f"{dist_info}/{required}" not in names:
                    raise InvalidDistribution(f"{required} not found at {dist_info}/{required}.")
            return _read_capped(zf.open(found[0]))
    except _ZIP_ERRORS as exc:
        raise InvalidDistribution() from exc


def _read_sdist(path: Path, ext: str, size: int, project: str, version: Version) -> bytes:
    """The PKG-INFO of an sdist: a single top-level ``<name>-<version>/`` holding PKG-INFO,
    no member escaping it (links included), no device files; zip sdists have no links."""
    if ext == ".zip":
        try:
            if not zipfile.is_zipfile(path):
                raise InvalidDistribution("File is not a zipfile.")
            with zipfile.ZipFile(path) as zf:
                names = _zip_members(zf, size)
                top = _single_top(names, project, version)
                if f"{top}/PKG-INFO" not in names:
                    raise InvalidDistribution(f"PKG-INFO not found at {top}/PKG-INFO.")
                return _read_capped(zf.open(f"{top}/PKG-INFO"))
        except _ZIP_ERRORS as exc:
            raise InvalidDistribution() from exc
    try:
        with tarfile.open(path, "r:gz") as tf:
            members, total = [], 0
            for member in tf:  # decompresses the whole stream, bounded by the ratio check
                total += member.size
                _check_ratio(total, size)
                members.append(member)
            top = _single_top({m.name for m in members}, project, version)
            for m in members:
                _check_tar_member(m, top)
            pkg_info = [m for m in members if m.name == f"{top}/PKG-INFO" and m.isreg()]
            if len(pkg_info) != 1:
                raise InvalidDistribution(f"PKG-INFO not found at {top}/PKG-INFO.")
            return _read_capped(tf.extractfile(pkg_info[0]))
    except (tarfile.TarError, zlib.error, EOFError, OSError) as exc:
        raise InvalidDistribution() from exc


def _single_top(names: set[str], project: str, version: Version) -> str:
    tops = {_check_member(n) for n in names}
    if len(tops) != 1:
        raise InvalidDistribution("Incorrect number of top-level directories in sdist.")
    top = tops.pop()
    if not _matches(top, project, version):
        raise InvalidDistribution(
            f"Top-level directory {top!r} does not belong to {project} {version}."
        )
    return top


def _check_tar_member(m: tarfile.TarInfo, top: str) -> None:
    if m.issym() or m.islnk():
        # symlink targets are relative to the link's directory, hardlinks to the archive root
        base = posixpath.dirname(m.name) if m.issym() else ""
        target = posixpath.normpath(posixpath.join(base, m.linkname))
        if re.match(r"^([A-Za-z]:|/)|.*\\", m.linkname) or not target.startswith(top + "/"):
            raise InvalidDistribution(f"Link {m.name!r} points outside the sdist: {m.linkname!r}.")
    elif not (m.isreg() or m.isdir()):
        raise InvalidDistribution(f"Unsupported member type {m.name!r}.")
