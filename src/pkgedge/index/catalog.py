"""The catalog: the origin's metadata database (SQLite by default, PostgreSQL supported).

:class:`Catalog` is synchronous and thread-safe (the web app calls it from a thread pool). Every
write is one transaction that also appends to the journal, bumping the index-wide serial
(``X-PyPI-Last-Serial``). Writes are serialised (``BEGIN IMMEDIATE`` on SQLite, a transaction
advisory lock on PostgreSQL), so serials are committed in order and readers never see a gap
filled later. Names are normalised (PEP 503) on the way in; rows are :mod:`pkgedge.index.model`.

Projects are *hosted* once a file is uploaded; :meth:`Catalog.set_allow_upstream` on a name not
hosted yet reserves it (a row that reads and lists ignore, except :meth:`allows_upstream`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, get_args

from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version
from sqlalchemy import (
    Connection,
    CursorResult,
    Engine,
    RowMapping,
    Select,
    create_engine,
    event,
    exists,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from pkgedge.errors import HTTPError, PkgedgeError
from pkgedge.index.migrations import alembic_config
from pkgedge.index.model import FileRow, ProjectRow, ProjectStatus, ReleaseRow, TokenRow
from pkgedge.index.tables import deleted_filenames, files, journal, projects, releases, tokens

__all__ = [
    "TOKEN_PREFIX",
    "BadRequest",
    "Catalog",
    "CatalogError",
    "FileExists",
    "FilenameConflict",
    "FilenameReused",
    "NotFound",
    "version_sort_key",
]

TOKEN_PREFIX: Final = "pkgedge-"
_WRITE: Final = "pkgedge_write"  # execution option: this transaction writes
_PG_LOCK: Final = 0x706B6764  # pg_advisory_xact_lock key serialising catalog writes
_STATUSES: Final[tuple[str, ...]] = get_args(ProjectStatus)
_NO_TABLE: Final = re.compile(r"no such table|relation .* does not exist")
_Row = TypeVar("_Row", FileRow, ReleaseRow, ProjectRow, TokenRow)


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


def version_sort_key(version: str) -> tuple[int, Version | str]:
    """PEP 440 order; versions that do not parse sort last, by their text."""
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def _now() -> datetime:
    return datetime.now(UTC)


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _make_engine(url: str) -> tuple[Engine, str]:
    """Engine + a printable URL (password hidden) for ``sqlite:`` or ``postgresql+psycopg:``."""
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        raise CatalogError(
            "not a database URL (use sqlite:///path.db or postgresql+psycopg://user@host/db)"
        ) from None
    safe = parsed.render_as_string(hide_password=True)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite" and driver == "pysqlite":
        if parsed.database in (None, "", ":memory:"):
            raise CatalogError(f"{safe}: an in-memory SQLite catalog is not supported, use a file")
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30.0})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    elif parsed.drivername in ("postgresql", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
        args: dict[str, Any] = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
        engine = create_engine(parsed, connect_args=args, pool_pre_ping=True)
    else:
        raise CatalogError(
            f"{safe}: unsupported database or driver (use sqlite:/// or postgresql+psycopg://)"
        )
    return engine, safe


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _sqlite_begin
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # a writer takes the write lock up front: no "database is locked" on lock upgrade
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def _select(cls: type, columns: dict[str, Any]) -> Select[Any]:
    """The model's fields in order, so that ``cls(*row)`` builds a row (fast: no mapping)."""
    return select(*[columns[f.name] for f in fields(cls)])


# files joined with their release, for the yanked state
_FILES: Final = _select(
    FileRow, {**files.c, "yanked": releases.c.yanked, "yanked_reason": releases.c.yanked_reason}
).join_from(files, releases)
_FILE_COLUMNS: Final = tuple(c.name for c in files.c if c.name not in ("project", "version"))
_RELEASES: Final = _select(ReleaseRow, dict(releases.c))
_PROJECTS: Final = _select(ProjectRow, {**projects.c, "project": projects.c.name}).where(
    projects.c.hosted
)
_TOKENS: Final = _select(TokenRow, dict(tokens.c))


def _release_query(project: str, version: str) -> Select[Any]:
    canonical = canonicalize_version(version)
    return _RELEASES.where(releases.c.project == project, releases.c.canonical_version == canonical)


def _new_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class Catalog:
    """The metadata database. ``Catalog("sqlite:///var/pkgedge/catalog.db")`` or
    ``Catalog("postgresql+psycopg://user:pass@host/db")``; call :meth:`migrate` once at start."""

    def __init__(self, url: str) -> None:
        self._engine, self._url = _make_engine(url)
        self._pg = self._engine.dialect.name == "postgresql"
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except sa_exc.SQLAlchemyError as exc:
            self._engine.dispose()
            raise CatalogError(f"cannot open database {self._url}: {_one_line(exc)}") from exc

    def __repr__(self) -> str:
        return f"Catalog({self._url!r})"

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and maintenance scripts)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(**{_WRITE: True})
                with conn.begin():
                    if write and self._pg:
                        conn.execute(select(func.pg_advisory_xact_lock(_PG_LOCK)))
                    yield conn
        except sa_exc.SQLAlchemyError as exc:
            hint = " (has Catalog.migrate() run?)" if _NO_TABLE.search(str(exc)) else ""
            raise CatalogError(f"database error ({self._url}): {_one_line(exc)}{hint}") from exc

    def _all(self, query: Select[Any], cls: type[_Row]) -> list[_Row]:
        with self._tx() as conn:
            return [cls(*r) for r in conn.execute(query).all()]

    def _first(self, query: Select[Any], cls: type[_Row]) -> _Row | None:
        rows = self._all(query.limit(1), cls)
        return rows[0] if rows else None

    def _scalar(self, query: Select[Any]) -> Any:
        with self._tx() as conn:
            return conn.execute(query).scalar()

    def migrate(self) -> None:
        """Bring the schema to the latest revision (``alembic upgrade head``); idempotent, and
        safe to run from several processes at once (it takes the write lock)."""
        from alembic import command
        from alembic.util import CommandError

        cfg = alembic_config()
        with self._tx(write=True) as conn:
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:
                raise CatalogError(f"cannot migrate {self._url}: {_one_line(exc)}") from exc

    # -- reads -----------------------------------------------------------------------------

    def list_projects(self) -> list[ProjectRow]:
        """Hosted projects that have a release, by normalised name. A project whose last
        release was deleted is no longer listed, but keeps its row: its name stays hosted
        (never filled from the upstream) and its settings stay."""
        has_release = exists().where(releases.c.project == projects.c.name)
        return self._all(_PROJECTS.where(has_release).order_by(projects.c.name), ProjectRow)

    def get_project(self, name: str) -> ProjectRow | None:
        """The hosted project of that name (any spelling), or None."""
        return self._first(_PROJECTS.where(projects.c.name == canonicalize_name(name)), ProjectRow)

    def releases(self, name: str) -> list[ReleaseRow]:
        """Releases in PEP 440 order (versions that do not parse last)."""
        query = _RELEASES.where(releases.c.project == canonicalize_name(name))
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
        return self._first(_release_query(canonicalize_name(name), version), ReleaseRow)

    def project_files(self, name: str) -> list[FileRow]:
        """All files of a project (one query), by PEP 440 version then filename."""
        rows = self._all(_FILES.where(files.c.project == canonicalize_name(name)), FileRow)
        keys = {v: version_sort_key(v) for v in {r.version for r in rows}}
        return sorted(rows, key=lambda r: (keys[r.version], r.filename))

    def release_files(self, name: str, version: str) -> list[FileRow]:
        """The files of one release, by filename."""
        query = _FILES.where(
            files.c.project == canonicalize_name(name),
            releases.c.canonical_version == canonicalize_version(version),
        )
        return self._all(query.order_by(files.c.filename), FileRow)

    def file_by_name(self, filename: str) -> FileRow | None:
        return self._first(_FILES.where(files.c.filename == filename), FileRow)

    def file_by_blob_key(self, key: str) -> FileRow | None:
        query = _FILES.where(files.c.blob_key == key).order_by(files.c.filename)
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

    # -- writes ----------------------------------------------------------------------------

    @staticmethod
    def _journal(
        conn: Connection, project: str, action: str, version: str | None = None,
        filename: str | None = None,
    ) -> int:  # fmt: skip
        values = {"version": version, "filename": filename, "action": action, "time": _now()}
        result = conn.execute(journal.insert().values(project=project, **values))
        serial = _new_id(result)
        conn.execute(projects.update().where(projects.c.name == project).values(last_serial=serial))
        return serial

    @staticmethod
    def _project_state(conn: Connection, project: str) -> RowMapping | None:
        return conn.execute(select(projects).where(projects.c.name == project)).mappings().first()

    @staticmethod
    def _release_or_404(conn: Connection, project: str, version: str) -> ReleaseRow:
        row = conn.execute(_release_query(project, version)).first()
        if row is None:
            raise NotFound(f"No such release: {project} {version}")
        return ReleaseRow(*row)

    @staticmethod
    def _file(conn: Connection, filename: str) -> FileRow | None:
        row = conn.execute(_FILES.where(files.c.filename == filename)).first()
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
        now = _now()
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
            release = conn.execute(_release_query(project, file.version)).first()
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
            values = {f: getattr(file, f) for f in _FILE_COLUMNS}
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
            now = _now()
            gone = [{"filename": r.filename, "project": r.project, "deleted_at": now} for r in rows]
            conn.execute(deleted_filenames.insert(), gone)
            conn.execute(files.delete().where(files.c.filename.in_([r.filename for r in rows])))

    def delete_release(self, name: str, version: str) -> list[FileRow]:
        """Delete a release and its files (their filenames are never reusable); return the
        deleted files so the caller can delete their blobs. Raises :class:`NotFound`."""
        project = canonicalize_name(name)
        with self._tx(write=True) as conn:
            version = self._release_or_404(conn, project, version).version
            query = _FILES.where(files.c.project == project, files.c.version == version)
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
                        name=project, display_name=name, created=_now(), hosted=False,
                        allow_upstream=allow,
                    )
                )  # fmt: skip
            elif bool(state["allow_upstream"]) == allow:
                return int(state["last_serial"])
            else:
                where = projects.c.name == project
                conn.execute(projects.update().where(where).values(allow_upstream=allow))
            return self._journal(conn, project, "allow upstream" if allow else "deny upstream")

    # -- tokens ----------------------------------------------------------------------------

    def create_token(self, description: str, project: str | None = None) -> tuple[TokenRow, str]:
        """A new upload token for one project (any project if None). The secret
        (``pkgedge-…``) is returned only here: the catalog keeps its sha256."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        scope = None if project is None else canonicalize_name(project)
        now = _now()
        with self._tx(write=True) as conn:
            result = conn.execute(
                tokens.insert().values(
                    description=description, project=scope, created=now,
                    secret_hash=_hash_secret(secret),
                )
            )  # fmt: skip
            token_id = _new_id(result)
        return TokenRow(token_id, description, scope, now), secret

    def verify_token(self, secret: str) -> TokenRow | None:
        """The token of this secret, or None (unknown or revoked); records its use. The secret
        is looked up by its hash, so the lookup's timing says nothing about the secret."""
        digest = _hash_secret(secret)
        query = _TOKENS.add_columns(tokens.c.secret_hash).where(tokens.c.secret_hash == digest)
        with self._tx() as conn:
            row = conn.execute(query).first()
        if row is None or not hmac.compare_digest(row.secret_hash, digest):
            return None
        token = TokenRow(*row[:-1])
        if token.revoked:
            return None
        now = _now()
        with self._tx(write=True) as conn:
            conn.execute(tokens.update().where(tokens.c.id == token.id).values(last_used=now))
        return replace(token, last_used=now)

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token (idempotent); False if there is no such token."""
        with self._tx(write=True) as conn:
            query = tokens.update().where(tokens.c.id == token_id).values(revoked=True)
            return bool(conn.execute(query).rowcount)

    def list_tokens(self) -> list[TokenRow]:
        return self._all(_TOKENS.order_by(tokens.c.id), TokenRow)
