"""The catalog's writes: uploads, yanking, deletions, project status and the upstream flag.

Every write is one transaction under the write lock (:meth:`.db.Database._tx`) that also
appends to the journal, bumping the index-wide serial (``X-PyPI-Last-Serial``) and the
project's; each returns that serial (unchanged when the write changed nothing). Filenames are
never reusable: a deleted file's name stays in ``deleted_filenames``.
"""

from __future__ import annotations

from typing import Any, Final, get_args

from packaging.utils import canonicalize_name, canonicalize_version
from sqlalchemy import Connection, RowMapping, func, select

from pkgedge.index.catalog.db import Database, new_id, utcnow
from pkgedge.index.catalog.errors import (
    BadRequest,
    FileExists,
    FilenameConflict,
    FilenameReused,
    NotFound,
)
from pkgedge.index.catalog.queries import FILE_COLUMNS, FILES, release_query
from pkgedge.index.model import FileRow, ProjectStatus, ReleaseRow
from pkgedge.index.tables import deleted_filenames, files, journal, projects, releases

__all__ = ["CatalogWrites"]

_STATUSES: Final[tuple[str, ...]] = get_args(ProjectStatus)


class CatalogWrites(Database):
    """The write half of :class:`~pkgedge.index.catalog.Catalog`."""

    @staticmethod
    def _journal(
        conn: Connection, project: str, action: str, version: str | None = None,
        filename: str | None = None,
    ) -> int:  # fmt: skip
        values = {"version": version, "filename": filename, "action": action, "time": utcnow()}
        result = conn.execute(journal.insert().values(project=project, **values))
        serial = new_id(result)
        conn.execute(projects.update().where(projects.c.name == project).values(last_serial=serial))
        return serial

    @staticmethod
    def _project_state(conn: Connection, project: str) -> RowMapping | None:
        return conn.execute(select(projects).where(projects.c.name == project)).mappings().first()

    @staticmethod
    def _release_or_404(conn: Connection, project: str, version: str) -> ReleaseRow:
        row = conn.execute(release_query(project, version)).first()
        if row is None:
            raise NotFound(f"No such release: {project} {version}")
        return ReleaseRow(*row)

    @staticmethod
    def _file(conn: Connection, filename: str) -> FileRow | None:
        row = conn.execute(FILES.where(files.c.filename == filename)).first()
        return None if row is None else FileRow(*row)

    def add_file(self, display_name: str, release_metadata: dict[str, Any], file: FileRow) -> int:
        """Record an uploaded file, creating its project and release on first use; return the
        new serial. ``file.version`` joins an existing release with an equal PEP 440 version
        (the stored row then carries that release's version text); ``release_metadata`` is
        kept from the release's first file; ``file.yanked`` is ignored.

        Raises :class:`FileExists` (same filename and sha256: the caller answers success),
        :class:`FilenameConflict` (the filename with other bytes, or these bytes under another
        filename), :class:`FilenameReused` (a deleted filename)."""
        project = canonicalize_name(display_name)
        if canonicalize_name(file.project) != project:
            raise BadRequest(f"File {file.filename!r} is for {file.project!r}, not {project!r}")
        digest = file.blake2b_256 or file.sha256
        algorithm = "blake2_256" if file.blake2b_256 else "sha256"
        now = utcnow()
        with self._tx(write=True) as conn:
            found = self._file(conn, file.filename)
            if found is not None:
                if found.sha256 != file.sha256:
                    raise FilenameConflict(file.filename, digest, algorithm)
                state = self._project_state(conn, project)
                raise FileExists(found, int(state["last_serial"] if state else 0))
            gone = select(func.count()).where(deleted_filenames.c.filename == file.filename)
            if conn.execute(gone).scalar():
                raise FilenameReused(file.filename)
            same_bytes = select(func.count()).where(files.c.sha256 == file.sha256)
            if conn.execute(same_bytes).scalar():
                raise FilenameConflict(file.filename, digest, algorithm)

            state = self._project_state(conn, project)
            if state is None or not state["hosted"]:  # a new project, or a reserved name
                values = {"display_name": display_name, "created": now, "hosted": True}
                where = projects.c.name == project
                conn.execute(
                    projects.insert().values(name=project, **values)
                    if state is None
                    else projects.update().where(where).values(**values)
                )
                self._journal(conn, project, "create")
            release = conn.execute(release_query(project, file.version)).first()
            if release is None:
                version = file.version
                conn.execute(
                    releases.insert().values(
                        project=project, version=version, created=now,
                        canonical_version=canonicalize_version(version),
                        metadata=dict(release_metadata),
                    )
                )  # fmt: skip
                self._journal(conn, project, "new release", version)
            else:
                version = release.version
            values = {f: getattr(file, f) for f in FILE_COLUMNS}
            conn.execute(files.insert().values(**values, project=project, version=version))
            action = f"add {file.python_version} file {file.filename}"
            return self._journal(conn, project, action, version, file.filename)

    def _set_yanked(self, name: str, version: str, yanked: bool, reason: str | None) -> int:
        project = canonicalize_name(name)
        with self._tx(write=True) as conn:
            release = self._release_or_404(conn, project, version)
            if (release.yanked, release.yanked_reason) == (yanked, reason):
                state = self._project_state(conn, project)
                return int(state["last_serial"]) if state else 0
            conn.execute(
                releases.update()
                .where(releases.c.project == project, releases.c.version == release.version)
                .values(yanked=yanked, yanked_reason=reason)
            )
            action = "yank release" if yanked else "unyank release"
            return self._journal(conn, project, action, release.version)

    def yank(self, name: str, version: str, reason: str | None = None) -> int:
        """Yank a release (PEP 592: all its files); return the serial (unchanged if it was
        already yanked with that reason). Raises :class:`NotFound`."""
        return self._set_yanked(name, version, True, reason or None)

    def unyank(self, name: str, version: str) -> int:
        """Undo :meth:`yank`; return the serial. Raises :class:`NotFound`."""
        return self._set_yanked(name, version, False, None)

    @staticmethod
    def _forget_files(conn: Connection, rows: list[FileRow]) -> None:
        if rows:
            now = utcnow()
            gone = [{"filename": r.filename, "project": r.project, "deleted_at": now} for r in rows]
            conn.execute(deleted_filenames.insert(), gone)
            conn.execute(files.delete().where(files.c.filename.in_([r.filename for r in rows])))

    def delete_release(self, name: str, version: str) -> list[FileRow]:
        """Delete a release and its files (their filenames are never reusable); return the
        deleted files so the caller can delete their blobs. Raises :class:`NotFound`."""
        project = canonicalize_name(name)
        with self._tx(write=True) as conn:
            version = self._release_or_404(conn, project, version).version
            query = FILES.where(files.c.project == project, files.c.version == version)
            rows = [FileRow(*r) for r in conn.execute(query.order_by(files.c.filename))]
            self._forget_files(conn, rows)
            where = (releases.c.project == project, releases.c.version == version)
            conn.execute(releases.delete().where(*where))
            self._journal(conn, project, "remove release", version)
        return rows

    def delete_file(self, filename: str) -> FileRow | None:
        """Delete one file (its release stays, maybe empty); None if there is no such file."""
        with self._tx(write=True) as conn:
            row = self._file(conn, filename)
            if row is None:
                return None
            self._forget_files(conn, [row])
            self._journal(conn, row.project, f"remove file {filename}", row.version, filename)
        return row

    def set_status(self, name: str, status: str, reason: str | None = None) -> int:
        """Set a hosted project's PEP 792 status (active, archived, quarantined, deprecated);
        return the serial. Raises :class:`NotFound`, :class:`BadRequest`."""
        if status not in _STATUSES:
            raise BadRequest(
                f"Invalid project status {status!r}: use one of {', '.join(_STATUSES)}"
            )
        project = canonicalize_name(name)
        with self._tx(write=True) as conn:
            state = self._project_state(conn, project)
            if state is None or not state["hosted"]:
                raise NotFound(f"No such project: {project}")
            if (state["status"], state["status_reason"]) == (status, reason):
                return int(state["last_serial"])
            where = projects.c.name == project
            conn.execute(projects.update().where(where).values(status=status, status_reason=reason))
            return self._journal(conn, project, f"set status {status}")

    def set_allow_upstream(self, name: str, allow: bool) -> int:
        """Let upstream files be merged with this project's (or not); return the serial. For a
        name not hosted yet, this reserves it: ``False`` serves nothing from upstream for it,
        and the flag stays when its first file is uploaded."""
        project = canonicalize_name(name)
        with self._tx(write=True) as conn:
            state = self._project_state(conn, project)
            if state is None:
                conn.execute(
                    projects.insert().values(
                        name=project, display_name=name, created=utcnow(), hosted=False,
                        allow_upstream=allow,
                    )
                )  # fmt: skip
            elif bool(state["allow_upstream"]) == allow:
                return int(state["last_serial"])
            else:
                where = projects.c.name == project
                conn.execute(projects.update().where(where).values(allow_upstream=allow))
            return self._journal(conn, project, "allow upstream" if allow else "deny upstream")
