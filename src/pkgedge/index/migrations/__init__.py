"""Alembic environment of the catalog, usable without any ``alembic.ini``.

:meth:`pkgedge.index.catalog.Catalog.migrate` runs ``upgrade head`` with :func:`alembic_config`.
A new revision goes in ``versions/`` (self-contained: it must not import
:mod:`pkgedge.index.tables`, which describes the latest schema) and ``tables.py`` changes with
it; the conformance tests check that the two agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS_DIR", "alembic_config"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent


def alembic_config() -> Config:
    """An Alembic configuration whose ``script_location`` is this package's directory."""
    from alembic.config import Config  # imported on use: alembic is slow to import

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("file_template", "v%%(rev)s_%%(slug)s")  # an importable module name
    return cfg
