"""The catalog: the origin's metadata database (SQLite by default, PostgreSQL supported).

:class:`Catalog` is synchronous and thread-safe (the web app calls it from a thread pool). It
is made of one part per concept, each a module of this package:

- :mod:`.db`: the engine, transactions (writes serialised: ``BEGIN IMMEDIATE`` on SQLite, a
  transaction advisory lock on PostgreSQL) and :meth:`~.db.Database.migrate` (Alembic);
- :mod:`.queries`: the ``SELECT`` statements that build the model's rows;
- :mod:`.reads`: projects, releases, files, serials, the upstream flag; PEP 440 order;
- :mod:`.writes`: uploads, yanking, deletions, status; each one transaction that also appends
  to the journal, bumping the index-wide serial (``X-PyPI-Last-Serial``), so serials are
  committed in order and readers never see a gap filled later;
- :mod:`.tokens`: upload tokens (the secret's sha256 is kept, never the secret);
- :mod:`.errors`: what callers catch.

Names are normalised (PEP 503) on the way in; rows are :mod:`pkgedge.index.model`. The schema
is :mod:`pkgedge.index.tables`, its migrations :mod:`pkgedge.index.migrations`.

Projects are *hosted* once a file is uploaded; :meth:`Catalog.set_allow_upstream` on a name not
hosted yet reserves it (a row that reads and lists ignore, except :meth:`allows_upstream`).
"""

from __future__ import annotations

from pkgedge.index.catalog.reads import CatalogReads
from pkgedge.index.catalog.tokens import CatalogTokens
from pkgedge.index.catalog.writes import CatalogWrites

__all__ = ["Catalog"]


class Catalog(CatalogReads, CatalogWrites, CatalogTokens):
    """The metadata database. ``Catalog("sqlite:///var/pkgedge/catalog.db")`` or
    ``Catalog("postgresql+psycopg://user:pass@host/db")``; call :meth:`migrate` once at start."""
