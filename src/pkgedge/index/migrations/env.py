"""Alembic environment for the catalog.

:meth:`pkgedge.index.catalog.Catalog.migrate` builds the :class:`alembic.config.Config` in code
and passes an open connection (inside its own write transaction) as
``config.attributes["connection"]``. For developers, ``sqlalchemy.url`` works too, e.g. to
write a new revision against a scratch database::

    from alembic import command
    from pkgedge.index.migrations import alembic_config

    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", "sqlite:///scratch.db")
    command.upgrade(cfg, "head")
    command.revision(cfg, message="add a column", autogenerate=True)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from pkgedge.index.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER TABLE by copying it
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        context.configure(
            url=context.config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url to migrate")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
