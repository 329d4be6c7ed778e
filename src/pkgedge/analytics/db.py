"""Download aggregates: one row per (day, project, version, file type, installer, Python
``major.minor``, OS, CI, mirror) with its count, on SQLite (default:
``CACHE_DIR/stats/downloads.sqlite3``) or PostgreSQL (``--stats-database
postgresql+psycopg://...``), through SQLAlchemy as the origin's catalog does.

Workers add counts with an upsert (``value + excluded``), so several workers write to the same
rows; a replay replaces whole days (delete, insert) in one transaction, so replaying the same
log twice gives the same rows. The table is created when missing (``IF NOT EXISTS``): one table
whose shape only grows by new tables, so it needs no migrations yet.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from pkgedge.analytics.keys import KEY, Key
from pkgedge.errors import ConfigError
from pkgedge.sqlite import use_wal

metadata = MetaData()
daily = Table(
    "download_daily",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("day", String(10), nullable=False, index=True),
    Column("project", String(200), nullable=False, index=True),
    Column("version", String(100), nullable=False),
    Column("file_type", String(20), nullable=False),
    Column("installer", String(64), nullable=False),
    Column("python", String(16), nullable=False),
    Column("system", String(64), nullable=False),
    Column("ci", String(5), nullable=False),  # "true", "false", "" (not said)
    Column("mirror", Boolean, nullable=False),
    Column("downloads", Integer, nullable=False),
    UniqueConstraint(*KEY, name="download_daily_key"),
)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    use_wal(dbapi_conn)
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        raise ConfigError(
            "stats_database: not a database URL (sqlite:///path.db or postgresql+psycopg://...)"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError("stats_database: use a SQLite file, not memory")
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30.0})
        event.listen(engine, "connect", _sqlite_connect)
        return engine
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, connect_args={"connect_timeout": 10}, pool_pre_ping=True)
    raise ConfigError("stats_database: use sqlite:///path.db or postgresql+psycopg://...")


class Downloads:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._ready = False
        self._lock = threading.Lock()

    def _create(self) -> None:
        """Create the table and its indexes when missing. Workers (and their threads) race to
        it on a fresh database, so each statement is ``IF NOT EXISTS`` (a check then a CREATE
        loses the race: the other worker's table appears in between); one more try for
        PostgreSQL, whose IF NOT EXISTS can still collide on the catalog's own keys."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            try:
                self._create_all()
            except sa_exc.DBAPIError:
                self._create_all()
            self._ready = True

    def _create_all(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(CreateTable(daily, if_not_exists=True))
            for index in sorted(daily.indexes, key=lambda i: str(i.name)):
                conn.execute(CreateIndex(index, if_not_exists=True))

    def _insert(self) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(daily)

    def add(self, counts: Mapping[Key, int]) -> None:
        """Add ``counts`` to the rows of their keys (creating them)."""
        if not counts:
            return
        self._create()
        rows = [{**dict(zip(KEY, k, strict=True)), "downloads": n} for k, n in counts.items()]
        ins = self._insert()
        stmt = ins.on_conflict_do_update(
            index_elements=list(KEY),
            set_={"downloads": daily.c.downloads + ins.excluded.downloads},
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, rows)

    def replace_days(self, counts: Mapping[Key, int]) -> list[str]:
        """Make the days of ``counts`` hold exactly ``counts`` (a replay); the days replaced."""
        self._create()
        days = sorted({k[0] for k in counts})
        rows = [{**dict(zip(KEY, k, strict=True)), "downloads": n} for k, n in counts.items()]
        with self.engine.begin() as conn:
            conn.execute(delete(daily).where(daily.c.day.in_(days)))
            if rows:
                conn.execute(daily.insert(), rows)
        return days

    def query(
        self, project: str | None, since_day: str, by: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Sums of downloads from ``since_day`` on, per day and per the ``by`` columns (for
        one project, or all when ``project`` is None)."""
        self._create()
        cols = [daily.c.day, *(daily.c[b] for b in by)]
        stmt = select(*cols, func.sum(daily.c.downloads)).where(daily.c.day >= since_day)
        if project is not None:
            stmt = stmt.where(daily.c.project == project)
        stmt = stmt.group_by(*cols).order_by(daily.c.day)
        with self.engine.connect() as conn:
            return [
                {**dict(zip(["day", *by], row[:-1], strict=True)), "downloads": int(row[-1])}
                for row in conn.execute(stmt)
            ]

    def top(self, since_day: str, by: tuple[str, ...], limit: int = 10) -> list[dict[str, Any]]:
        """The ``limit`` largest sums of downloads per ``by`` columns since ``since_day``."""
        self._create()
        cols = [daily.c[b] for b in by]
        total = func.sum(daily.c.downloads).label("n")
        stmt = (
            select(*cols, total)
            .where(daily.c.day >= since_day)
            .group_by(*cols)
            .order_by(total.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                {**dict(zip(by, row[:-1], strict=True)), "downloads": int(row[-1])}
                for row in conn.execute(stmt)
            ]

    def close(self) -> None:
        self.engine.dispose()
