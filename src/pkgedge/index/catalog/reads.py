"""The catalog's reads: projects, releases, files, serials and the upstream flag.

Names are normalised (PEP 503) on the way in; versions are compared and ordered per PEP 440
(:func:`version_sort_key`). Only hosted projects are read: a reserved name is visible to
:meth:`CatalogReads.allows_upstream` alone.
"""

from __future__ import annotations

from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version
from sqlalchemy import exists, func, select

from pkgedge.index.catalog.db import Database
from pkgedge.index.catalog.queries import FILES, PROJECTS, RELEASES, release_query
from pkgedge.index.model import FileRow, ProjectRow, ReleaseRow
from pkgedge.index.tables import deleted_filenames, files, journal, projects, releases

__all__ = ["CatalogReads", "version_sort_key"]


def version_sort_key(version: str) -> tuple[int, Version | str]:
    """PEP 440 order; versions that do not parse sort last, by their text."""
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


class CatalogReads(Database):
    """The read half of :class:`~pkgedge.index.catalog.Catalog`; each read is one transaction."""

    def list_projects(self) -> list[ProjectRow]:
        """Hosted projects that have a release, by normalised name. A project whose last
        release was deleted is no longer listed, but keeps its row: its name stays hosted
        (never filled from the upstream) and its settings stay."""
        has_release = exists().where(releases.c.project == projects.c.name)
        return self._all(PROJECTS.where(has_release).order_by(projects.c.name), ProjectRow)

    def get_project(self, name: str) -> ProjectRow | None:
        """The hosted project of that name (any spelling), or None."""
        return self._first(PROJECTS.where(projects.c.name == canonicalize_name(name)), ProjectRow)

    def releases(self, name: str) -> list[ReleaseRow]:
        """Releases in PEP 440 order (versions that do not parse last)."""
        query = RELEASES.where(releases.c.project == canonicalize_name(name))
        return sorted(self._all(query, ReleaseRow), key=lambda r: version_sort_key(r.version))

    def release_versions(self, name: str) -> list[str]:
        """Just the versions, in PEP 440 order: what the simple API lists (PEP 700). Cheaper
        than :meth:`releases`, which decodes every release's metadata."""
        query = select(releases.c.version).where(releases.c.project == canonicalize_name(name))
        with self._tx() as conn:
            found = [str(v) for (v,) in conn.execute(query)]
        return sorted(found, key=version_sort_key)

    def release(self, name: str, version: str) -> ReleaseRow | None:
        """The release whose version equals ``version`` per PEP 440 (``1.0`` is ``1.0.0``)."""
        return self._first(release_query(canonicalize_name(name), version), ReleaseRow)

    def project_files(self, name: str) -> list[FileRow]:
        """All files of a project (one query), by PEP 440 version then filename."""
        rows = self._all(FILES.where(files.c.project == canonicalize_name(name)), FileRow)
        keys = {v: version_sort_key(v) for v in {r.version for r in rows}}
        return sorted(rows, key=lambda r: (keys[r.version], r.filename))

    def release_files(self, name: str, version: str) -> list[FileRow]:
        """The files of one release, by filename."""
        query = FILES.where(
            files.c.project == canonicalize_name(name),
            releases.c.canonical_version == canonicalize_version(version),
        )
        return self._all(query.order_by(files.c.filename), FileRow)

    def file_by_name(self, filename: str) -> FileRow | None:
        return self._first(FILES.where(files.c.filename == filename), FileRow)

    def file_by_blob_key(self, key: str) -> FileRow | None:
        query = FILES.where(files.c.blob_key == key).order_by(files.c.filename)
        return self._first(query, FileRow)

    def last_serial(self) -> int:
        """The index-wide serial: that of the latest write (0 for an empty catalog)."""
        return int(self._scalar(select(func.max(journal.c.serial))) or 0)

    def project_serial(self, name: str) -> int:
        """The serial of the project's latest change (0 for an unknown name)."""
        query = select(projects.c.last_serial).where(projects.c.name == canonicalize_name(name))
        return int(self._scalar(query) or 0)

    def is_deleted_filename(self, filename: str) -> bool:
        query = select(func.count()).where(deleted_filenames.c.filename == filename)
        return bool(self._scalar(query))

    def allows_upstream(self, name: str) -> bool:
        """May upstream files be served for this name? True for a name the catalog does not
        know; otherwise the project's flag, False unless set, so a hosted project shadows the
        upstream one (no dependency confusion) and a reserved name serves nothing upstream."""
        query = select(projects.c.allow_upstream).where(projects.c.name == canonicalize_name(name))
        value = self._scalar(query)
        return True if value is None else bool(value)
