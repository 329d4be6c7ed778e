"""Project names, distribution filenames and content-addressed file locations (pure).

* :func:`normalize` is the PEP 503 normalisation (the name-normalization specification):
  lower-case, runs of ``-``, ``_`` and ``.`` folded to one ``-``.
* :func:`is_valid_project_name` is the PEP 508 name rule: ASCII letters and digits, with
  ``-``, ``_`` and ``.`` allowed only between them.
* :func:`parse_filename` accepts exactly the two formats an index takes uploads of today:
  wheels (``.whl``, the binary distribution format) and sdists (``.tar.gz``, ``.zip``, the
  source distribution format). Anything else, and anything that could name a path rather
  than a file, raises :class:`InvalidFilename` with the reason.
* Files are stored and served by content: ``/files/ab/cd/<rest of sha256>/<filename>``. The
  URL of a file never changes meaning, so the web app serves it as immutable.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from pkgedge.errors import PkgedgeError
from pkgedge.index.model import FileRow, PackageType

__all__ = [
    "InvalidFilename",
    "blob_key",
    "file_url_path",
    "is_valid_project_name",
    "metadata_url_path",
    "normalize",
    "parse_filename",
]

#: Longest filename accepted (a common filesystem limit for one path component).
MAX_FILENAME_LENGTH = 255

_NORMALIZE = re.compile(r"[-_.]+")
#: PEP 508 "Names": ``^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$``, case-insensitively.
_VALID_NAME = re.compile(r"[A-Z0-9](?:[A-Z0-9._-]*[A-Z0-9])?", re.IGNORECASE | re.ASCII)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)
#: Anything outside printable ASCII: controls (C0, DEL), and every non-ASCII character
#: (wheel and sdist filenames are built from normalised names and PEP 440 versions).
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
#: Characters kept literally in a file URL path (RFC 3986 pchar plus "/", minus "%").
_URL_SAFE = "/!$&'()*+,;=:@~"
_URL_SAFE_BYTES = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._" + _URL_SAFE.encode()
)


class InvalidFilename(PkgedgeError, ValueError):
    """A distribution filename the index does not accept; the message says why."""

    status = 400


def normalize(name: str) -> str:
    """PEP 503 normalised form: ``"Foo.Bar_baz"`` → ``"foo-bar-baz"``."""
    return _NORMALIZE.sub("-", name).lower()


def is_valid_project_name(name: str) -> bool:
    """Whether ``name`` is a valid project name under PEP 508."""
    return _VALID_NAME.fullmatch(name) is not None


def _check_safe(filename: str) -> None:
    if not filename:
        raise InvalidFilename("empty filename")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise InvalidFilename(f"filename longer than {MAX_FILENAME_LENGTH} characters")
    if "\x00" in filename:
        raise InvalidFilename("filename contains a NUL character")
    if "/" in filename or "\\" in filename:
        raise InvalidFilename(f"filename contains a path separator: {filename!r}")
    if ".." in filename:
        raise InvalidFilename(f"filename contains '..': {filename!r}")
    if _NOT_PRINTABLE_ASCII.search(filename):
        raise InvalidFilename(f"filename contains a control or non-ASCII character: {filename!r}")
    if " " in filename:
        raise InvalidFilename(f"filename contains a space: {filename!r}")
    if filename[0] in ".-":
        raise InvalidFilename(f"filename starts with {filename[0]!r}: {filename!r}")


def parse_filename(filename: str) -> tuple[str, str, PackageType, str]:
    """``(normalised project, version, packagetype, python_version)`` of a distribution file.

    The version is PEP 440 normalised (``str(Version(...))``). ``python_version`` is the
    wheel's python tag as written (``"py3"``, ``"cp311"``, ``"py2.py3"``) or ``"source"`` for
    an sdist. Raises :class:`InvalidFilename` for anything else.
    """
    _check_safe(filename)
    if filename.endswith(".whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise InvalidFilename(f"invalid wheel filename: {exc}") from None
        # {distribution}-{version}(-{build tag})?-{python tag}-{abi tag}-{platform tag}.whl
        python_tag = filename[: -len(".whl")].split("-")[-3]
        name_part = filename.split("-", 1)[0]
        packagetype: PackageType = "bdist_wheel"
    elif filename.endswith((".tar.gz", ".zip")):
        try:
            name, version = parse_sdist_filename(filename)
        except InvalidSdistFilename as exc:
            raise InvalidFilename(f"invalid sdist filename: {exc}") from None
        stem = filename[: -len(".tar.gz")] if filename.endswith(".tar.gz") else filename[:-4]
        name_part = stem.rpartition("-")[0]
        python_tag = "source"
        packagetype = "sdist"
    else:
        raise InvalidFilename(
            f"unsupported file type (only .whl, .tar.gz and .zip are accepted): {filename!r}"
        )
    if not is_valid_project_name(name_part):
        raise InvalidFilename(f"invalid project name {name_part!r} in filename {filename!r}")
    return str(name), str(version), packagetype, python_tag


def blob_key(sha256: str, filename: str) -> str:
    """Where a file's bytes live: ``ab/cd/<remaining 60 hex digits>/<filename>``.

    ``sha256`` must be 64 lower-case hex digits and ``filename`` a single safe path
    component (see :func:`parse_filename`); anything else raises ``ValueError``.
    """
    if _SHA256_HEX.fullmatch(sha256) is None:
        raise ValueError(f"not a lower-case hex sha256 digest: {sha256!r}")
    _check_safe(filename)
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256[4:]}/{filename}"


def file_url_path(row: FileRow) -> str:
    """The content-addressed URL path of a file: ``/files/`` + its blob key.

    Percent-encoding is skipped when nothing needs it (always, for keys built by
    :func:`blob_key` from accepted filenames): one C scan instead of ``quote``, which is
    slower than the rest of rendering a file's entry.
    """
    key = row.blob_key
    if key.encode("ascii", "replace").translate(None, _URL_SAFE_BYTES):
        key = quote(key, safe=_URL_SAFE)
    return "/files/" + key


def metadata_url_path(row: FileRow) -> str:
    """Where the file's core metadata is served (PEP 658: the file's URL + ``.metadata``)."""
    return file_url_path(row) + ".metadata"
