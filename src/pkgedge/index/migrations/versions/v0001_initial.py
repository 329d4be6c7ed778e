"""Initial catalog schema: projects, releases, files, deleted_filenames, tokens, journal.

Revision ID: 0001
Revises:
Create Date: 2024-11-29

Self-contained: do not import pkgedge.index.tables here (it describes the latest schema).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("created", _utc(), nullable=False),
        sa.Column("last_serial", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("status", sa.String(20), server_default="active", nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("hosted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("allow_upstream", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_projects"),
    )
    op.create_table(
        "releases",
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("canonical_version", sa.String(100), nullable=False),
        sa.Column("created", _utc(), nullable=False),
        sa.Column("yanked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("yanked_reason", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project"],
            ["projects.name"],
            name="fk_releases_project_projects",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project", "version", name="pk_releases"),
    )
    op.create_index(
        "ix_releases_project_canonical_version",
        "releases",
        ["project", "canonical_version"],
        unique=True,
    )
    op.create_table(
        "files",
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("packagetype", sa.String(20), nullable=False),
        sa.Column("python_version", sa.String(50), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("blake2b_256", sa.String(64), nullable=True),
        sa.Column("md5", sa.String(32), nullable=True),
        sa.Column("upload_time", _utc(), nullable=False),
        sa.Column("blob_key", sa.String(500), nullable=False),
        sa.Column("requires_python", sa.String(200), nullable=True),
        sa.Column("metadata_sha256", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["project", "version"],
            ["releases.project", "releases.version"],
            name="fk_files_project_version_releases",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("filename", name="pk_files"),
    )
    op.create_index(
        "ix_files_project_version_filename", "files", ["project", "version", "filename"]
    )
    op.create_index("ix_files_sha256", "files", ["sha256"])
    op.create_index("ix_files_blob_key", "files", ["blob_key"])
    op.create_table(
        "deleted_filenames",
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("project", sa.String(200), nullable=True),
        sa.Column("deleted_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("filename", name="pk_deleted_filenames"),
    )
    op.create_table(
        "tokens",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("project", sa.String(200), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created", _utc(), nullable=False),
        sa.Column("revoked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_used", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
    )
    op.create_index("ix_tokens_secret_hash", "tokens", ["secret_hash"], unique=True)
    op.create_table(
        "journal",
        sa.Column("serial", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=True),
        sa.Column("filename", sa.String(255), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("time", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("serial", name="pk_journal"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_journal_project_serial", "journal", ["project", "serial"])


def downgrade() -> None:
    op.drop_table("journal")
    op.drop_table("tokens")
    op.drop_table("deleted_filenames")
    op.drop_table("files")
    op.drop_table("releases")
    op.drop_table("projects")
