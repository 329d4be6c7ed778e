"""The catalog's schema (SQLAlchemy Core), shared by :mod:`pkgedge.index.catalog` and Alembic.

The migrations in ``pkgedge/index/migrations/versions`` create exactly these tables (a test
compares them); change both together, in a new revision.

* ``projects``: one row per normalised name. ``hosted`` is true once a file was uploaded; a
  row that is not hosted only carries settings for a name served from upstream (a PEP 792
  status, or ``allow_upstream=False`` to reserve the name against dependency confusion).
* ``releases``: unique per ``(project, canonical_version)``, so ``1.0`` and ``1.0.0`` are one
  release, named by the version first uploaded.
* ``files``: ``filename`` is the primary key; ``(project, version, filename)`` is indexed so a
  project page of 10,000 files is one index range scan.
* ``deleted_filenames``: a filename once deleted is never accepted again.
* ``tokens``: only the sha256 of a secret is stored.
* ``journal``: every write appends a row; its ``serial`` is the index-wide monotonic serial
  (``X-PyPI-Last-Serial``) and ``projects.last_serial`` caches the latest one per project.

Times are stored as UTC; :class:`UTCDateTime` gives back timezone-aware datetimes on every
backend (SQLite has no time zones).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)

__all__ = [
    "NAMING_CONVENTION",
    "UTCDateTime",
    "deleted_filenames",
    "files",
    "journal",
    "metadata",
    "projects",
    "releases",
    "tokens",
]

#: Deterministic constraint names on every backend (migrations refer to them).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (naive input is taken as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL gets a BIGINT identity.
Serial = BigInteger().with_variant(Integer(), "sqlite")

projects = Table(
    "projects",
    metadata,
    Column("name", String(200), primary_key=True),  # PEP 503 normalised
    Column("display_name", String(200), nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("last_serial", BigInteger(), nullable=False, server_default="0"),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("status_reason", Text(), nullable=True),
    Column("hosted", Boolean(), nullable=False, server_default=false()),
    Column("allow_upstream", Boolean(), nullable=False, server_default=false()),
)

releases = Table(
    "releases",
    metadata,
    Column("project", String(200), primary_key=True),
    Column("version", String(100), primary_key=True),  # as first uploaded
    Column("canonical_version", String(100), nullable=False),
    Column("created", UTCDateTime(), nullable=False),
    Column("yanked", Boolean(), nullable=False, server_default=false()),
    Column("yanked_reason", Text(), nullable=True),
    Column("metadata", JSON(), nullable=False),
    ForeignKeyConstraint(["project"], ["projects.name"], ondelete="CASCADE"),
    Index(None, "project", "canonical_version", unique=True),
)

files = Table(
    "files",
    metadata,
    Column("filename", String(255), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("version", String(100), nullable=False),
    Column("packagetype", String(20), nullable=False),
    Column("python_version", String(50), nullable=False),
    Column("size", BigInteger(), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("blake2b_256", String(64), nullable=True),
    Column("md5", String(32), nullable=True),
    Column("upload_time", UTCDateTime(), nullable=False),
    Column("blob_key", String(500), nullable=False),
    Column("requires_python", String(200), nullable=True),
    Column("metadata_sha256", String(64), nullable=True),
    ForeignKeyConstraint(
        ["project", "version"], ["releases.project", "releases.version"], ondelete="CASCADE"
    ),
    # a project page: one range scan, already in (version, filename) order per release
    Index(None, "project", "version", "filename"),
    Index(None, "sha256"),
    Index(None, "blob_key"),
)

deleted_filenames = Table(
    "deleted_filenames",
    metadata,
    Column("filename", String(255), primary_key=True),
    Column("project", String(200), nullable=True),
    Column("deleted_at", UTCDateTime(), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("description", Text(), nullable=False),
    Column("project", String(200), nullable=True),  # normalised; NULL: any project
    Column("secret_hash", String(64), nullable=False),  # sha256 hex of the secret
    Column("created", UTCDateTime(), nullable=False),
    Column("revoked", Boolean(), nullable=False, server_default=false()),
    Column("last_used", UTCDateTime(), nullable=True),
    Index(None, "secret_hash", unique=True),
)

journal = Table(
    "journal",
    metadata,
    Column("serial", Serial, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("version", String(100), nullable=True),
    Column("filename", String(255), nullable=True),
    Column("action", Text(), nullable=False),
    Column("time", UTCDateTime(), nullable=False),
    Index(None, "project", "serial"),
    sqlite_autoincrement=True,  # never reuse a serial, even after a rollback of the last row
)
