"""What the catalog raises, shaped by what its callers catch.

:class:`CatalogError` is the root (the database cannot be opened or answered with an error).
The others are refusals of one write: most carry an HTTP status (:class:`~pkgedge.errors.HTTPError`)
that the web app answers as is; :class:`FileExists` is an idempotent success (status 200).
"""

from __future__ import annotations

from pkgedge.errors import HTTPError, PkgedgeError
from pkgedge.index.model import FileRow

__all__ = [
    "BadRequest",
    "CatalogError",
    "FileExists",
    "FilenameConflict",
    "FilenameReused",
    "NotFound",
]


class CatalogError(PkgedgeError):
    """The catalog failed: the database cannot be opened or answered with an error."""


class NotFound(CatalogError, HTTPError, LookupError):
    """A write named a project or release that does not exist (404)."""

    def __init__(self, reason: str) -> None:
        super().__init__(404, reason)


class BadRequest(CatalogError, HTTPError, ValueError):
    """An argument the catalog refuses (400), e.g. an unknown project status."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason)


class FileExists(CatalogError):
    """The same file (same filename, same sha256) was already uploaded: an idempotent success.

    ``file`` is the stored row and ``serial`` the project's current serial."""

    status = 200

    def __init__(self, file: FileRow, serial: int) -> None:
        super().__init__(f"File already exists: {file.filename}")
        self.file = file
        self.serial = serial


class FilenameConflict(CatalogError, HTTPError):
    """The filename exists with other bytes, or these bytes exist under another filename."""

    def __init__(self, filename: str, digest: str, algorithm: str = "blake2_256") -> None:
        super().__init__(
            400,
            f"File already exists ({filename!r}, with {algorithm} hash {digest!r}). "
            "Files cannot be replaced: upload a new version instead.",
        )
        self.filename = filename


class FilenameReused(CatalogError, HTTPError):
    """The filename belonged to a deleted file; filenames are never reusable."""

    def __init__(self, filename: str) -> None:
        super().__init__(400, "This filename has already been used, use a different version.")
        self.filename = filename
