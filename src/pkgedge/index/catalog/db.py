"""The catalog's database: the engine, its transactions and the schema's migration.

:class:`Database` opens SQLite (a file, WAL) or PostgreSQL (psycopg) and gives the catalog's
parts (:mod:`.reads`, :mod:`.writes`, :mod:`.tokens`) their transactions. A write transaction
is serialised with every other: ``BEGIN IMMEDIATE`` on SQLite, a transaction advisory lock on
PostgreSQL, so serials are committed in order and readers never see a gap filled later.
Database errors become :class:`~.errors.CatalogError` with one line of the driver's message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final, Self, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, Select, create_engine, event, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from pkgedge.index.catalog.errors import CatalogError
from pkgedge.index.migrations import alembic_config
from pkgedge.index.model import FileRow, ProjectRow, ReleaseRow, TokenRow
from pkgedge.sqlite import use_wal

__all__ = ["Database", "new_id", "utcnow"]

_WRITE: Final = "pkgedge_write"  # execution option: this transaction writes
_PG_LOCK: Final = 0x706B6764  # pg_advisory_xact_lock key serialising catalog writes
_NO_TABLE: Final = re.compile(r"no such table|relation .* does not exist")
_Row = TypeVar("_Row", FileRow, ReleaseRow, ProjectRow, TokenRow)


def utcnow() -> datetime:
    """The time a write records (UTC)."""
    return datetime.now(UTC)


def new_id(result: CursorResult[Any]) -> int:
    """The primary key an ``INSERT`` made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


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
    use_wal(dbapi_conn)
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # a writer takes the write lock up front: no "database is locked" on lock upgrade
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


class Database:
    """An open catalog database, ``Database("sqlite:///var/pkgedge/catalog.db")`` or
    ``Database("postgresql+psycopg://user:pass@host/db")``: thread-safe (a connection pool).
    Raises :class:`~.errors.CatalogError` if the URL is not one of those or the database does
    not answer."""

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
        return f"{type(self).__name__}({self._url!r})"

    def __enter__(self) -> Self:
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
        """One transaction; ``write=True`` waits for every other write to finish first."""
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
