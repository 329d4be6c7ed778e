"""Blob storage for the origin: distribution files and their extracted metadata.

One small interface, :class:`BlobStorage`, with two implementations:

* :class:`LocalStorage` keeps each blob as a plain file under a root directory, so the web app
  can hand :meth:`~BlobStorage.local_path` to a ``FileResponse`` (sendfile).
* :class:`~pkgedge.index.s3storage.S3Storage` keeps blobs in an S3-protocol bucket (AWS S3,
  MinIO, Ceph, ...); a module of its own.

Keys look like ``ab/cd/<rest-of-sha256>/<filename>``: relative, ``/``-separated, never ``..``,
``.`` or empty segments, no backslashes, NUL or other control characters. Anything else raises
:class:`InvalidKey` before touching the backend.

``put`` is atomic: a reader sees either no object (or the previous one) or the whole new one,
never a prefix. Locally the bytes go to a temporary file in the destination directory, are
fsynced and renamed into place; S3 only makes an object visible once its PUT (or multipart
upload) completes, and an upload that fails midway is aborted.

:func:`storage_from_url` builds a backend from configuration:

* ``/srv/blobs``, ``./blobs`` or ``file:///srv/blobs``: :class:`LocalStorage`.
* ``s3://bucket/optional/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1``:
  :class:`~pkgedge.index.s3storage.S3Storage`. ``endpoint`` (optional: omitted means the
  provider default of boto3) and ``region`` (default ``us-east-1``) are the only parameters.
  Credentials are never part of the URL: they come from the ``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` environment variables (plus ``AWS_SESSION_TOKEN`` if set).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol, cast, runtime_checkable
from urllib.parse import parse_qs, unquote, urlsplit

from pkgedge.errors import ConfigError, PkgedgeError

__all__ = [
    "BlobNotFound",
    "BlobStorage",
    "InvalidKey",
    "LocalStorage",
    "StorageError",
    "storage_from_url",
    "validate_key",
]

CHUNK = 1024 * 1024  # the copy and multipart unit
_MAX_KEY_BYTES = 1024  # the S3 limit
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


class StorageError(PkgedgeError, OSError):
    """The blob backend failed (I/O error, S3 error, size mismatch on ``put``)."""

    status = 503


class BlobNotFound(StorageError, FileNotFoundError):
    """No blob is stored under this key."""

    status = 404


class InvalidKey(PkgedgeError, ValueError):
    """The key is not a safe relative ``/``-separated path."""

    status = 400


def validate_key(key: str) -> str:
    """Return *key* unchanged if it is safe, else raise :class:`InvalidKey`."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"invalid blob key {key!r}: empty")
    if _BAD_KEY_CHARS.search(key):
        raise InvalidKey(f"invalid blob key {key!r}: backslash or control character")
    if key.startswith("/"):
        raise InvalidKey(f"invalid blob key {key!r}: absolute path")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid blob key {key!r}: empty, '.' or '..' segment")
    if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        raise InvalidKey(f"invalid blob key {key[:40]!r}...: longer than {_MAX_KEY_BYTES} bytes")
    return key


@runtime_checkable
class BlobStorage(Protocol):
    """Where distribution files live. Implementations are safe to share between threads."""

    def put(self, key: str, src: BinaryIO | Path, *, size: int | None = None) -> None:
        """Store the bytes of *src* (a readable binary stream, read to EOF from its current
        position, or a file path) under *key*, replacing any previous blob, atomically.

        If *size* is given and the source yields a different number of bytes, nothing is
        stored and :class:`StorageError` is raised."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the blob (forward-only for S3); the caller closes it.
        Raises :class:`BlobNotFound`."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove the blob; deleting a missing blob is not an error."""
        ...

    def size(self, key: str) -> int:
        """Size in bytes. Raises :class:`BlobNotFound`."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Where the blob's file is on local disk (for sendfile), or ``None`` if the backend
        is not local. Does not check that the blob exists: use :meth:`exists`, or handle
        :class:`FileNotFoundError` when opening the path."""
        ...


class FullReader:
    """Wraps a source stream with *full-read* semantics: ``read(n)`` returns fewer than *n*
    bytes only at EOF (s3transfer relies on that; request bodies and pipes read short).
    With a *size*, raises :class:`StorageError` once the source is known to differ from it."""

    def __init__(self, raw: BinaryIO, size: int | None) -> None:
        self._raw = raw
        self._left = size
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            data = bytearray()
            while chunk := self._read1(CHUNK):
                data += chunk
            return bytes(data)
        data = bytearray()
        while len(data) < n and (chunk := self._read1(n - len(data))):
            data += chunk
        return bytes(data)

    def _read1(self, n: int) -> bytes:
        if self._eof:
            return b""
        data = self._raw.read(n)
        if data is None:  # a non-blocking raw stream: not supported, treat as an error
            raise StorageError("source stream returned None (non-blocking streams unsupported)")
        if not data:
            self._eof = True
            if self._left:
                raise StorageError(f"source is {self._left} bytes shorter than the declared size")
        elif self._left is not None:
            self._left -= len(data)
            if self._left < 0:
                raise StorageError("source is longer than the declared size")
        return data


class LocalStorage:
    """Blobs as files under *root* (created on first ``put``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def put(self, key: str, src: BinaryIO | Path, *, size: int | None = None) -> None:
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                dir=dest.parent, prefix=f".{dest.name[:100]}.", suffix=".tmp"
            )
        except OSError as exc:
            raise StorageError(f"cannot write {key!r}: {exc}") from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                with contextlib.ExitStack() as stack:
                    stream = stack.enter_context(src.open("rb")) if isinstance(src, Path) else src
                    if size is not None:
                        stream = cast(BinaryIO, FullReader(stream, size))
                    shutil.copyfileobj(stream, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                raise StorageError(f"cannot write {key!r}: {exc}") from exc
            raise
        _fsync_dir(dest.parent)

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(f"no blob {key!r}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        # Empty directories are left behind on purpose: removing them would race with a
        # concurrent ``put`` creating its temporary file in the same directory.
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except (IsADirectoryError, NotADirectoryError):
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r}: {exc}") from exc

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(f"no blob {key!r}") from None
        if not path.is_file():
            raise BlobNotFound(f"no blob {key!r}")
        return st.st_size

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: not every platform can fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def storage_from_url(url: str) -> BlobStorage:
    """A backend from a storage URL or a plain path (see the module docstring)."""
    if "://" not in url:
        if not url.strip():
            raise ConfigError("empty storage path")
        return LocalStorage(Path(url))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"file storage URL must be local: {url!r}")
        if parts.query or not parts.path:
            raise ConfigError(f"invalid file storage URL: {url!r}")
        return LocalStorage(Path(unquote(parts.path)))
    if scheme != "s3":
        raise ConfigError(f"unsupported storage URL scheme {parts.scheme!r} (use file:// or s3://)")
    if not parts.netloc or "@" in parts.netloc:
        raise ConfigError(f"invalid S3 storage URL {url!r}: s3://bucket/prefix, no credentials")
    params = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = set(params) - {"endpoint", "region"}
    if unknown:
        raise ConfigError(f"unknown S3 storage URL parameter(s): {', '.join(sorted(unknown))}")
    access_key = os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access_key or not secret_key:
        raise ConfigError(
            "S3 storage needs credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    from pkgedge.index.s3storage import S3Storage  # it imports this module

    return S3Storage(
        params.get("endpoint", [""])[-1] or None,
        parts.netloc,
        access_key,
        secret_key,
        region=params.get("region", [""])[-1] or "us-east-1",
        prefix=unquote(parts.path),
        session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
    )
