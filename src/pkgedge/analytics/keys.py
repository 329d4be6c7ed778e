"""The key of a download aggregate row, and where the default database lives (no
SQLAlchemy here: the workers import this at start, the engine only when first used)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pkgedge.errors import ConfigError

#: The columns that make a row's key, in order.
KEY = ("day", "project", "version", "file_type", "installer", "python", "system", "ci", "mirror")
Key = tuple[str, str, str, str, str, str, str, str, bool]


def key_of(record: Mapping[str, Any], day: str) -> Key:
    ci = record.get("ci")
    return (
        day,
        str(record["project"])[:200],
        str(record["version"])[:100],
        str(record["file_type"])[:20],
        str(record.get("installer") or "")[:64],
        str(record.get("python") or "")[:16],
        str(record.get("system") or "")[:64],
        "" if ci is None else ("true" if ci else "false"),
        bool(record.get("mirror")),
    )


def default_url(cache_dir: str | Path) -> str:
    return f"sqlite:///{Path(cache_dir) / 'stats' / 'downloads.sqlite3'}"


def check_url(url: str) -> None:
    """A clear error for a database URL the engine would not take (without importing it)."""
    if not url.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise ConfigError(
            "stats_database: use sqlite:///path.db or postgresql+psycopg://user@host/db"
        )
