"""Download aggregates: one row per (day, project, version, file type, installer, Python
``major.minor``, OS, CI, mirror) with its count, on SQLite (default:
``CACHE_DIR/stats/downloads.sqlite3``) or PostgreSQL (``--stats-database
postgresql+psycopg://...``), through SQLAlchemy as the origin's catalog does.

Workers add counts with an upsert (``value + excluded``), so several workers write to the same
rows; a replay replaces whole days (delete, insert) in one transaction, so replaying the same
log twice gives the same rows. The table is created when missing (``create_all``): one table
whose shape only grows by new tables, so it needs no migrations yet.
"""

from __future__ import annotations

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

from pkgedge.analytics.keys import KEY, Key
from pkgedge.errors import ConfigError

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
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
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

    def _create(self) -> None:
        """Create the table when missing. Workers (and their threads) may race to it: the
        loser's CREATE fails, and the table is there when it looks again."""
        if self._ready:
            return
        try:
            metadata.create_all(self.engine, checkfirst=True)
        except sa_exc.DBAPIError:
            metadata.create_all(self.engine, checkfirst=True)  # made meanwhile: checks pass
        self._ready = True

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
