"""Alembic environment for dripflow's schema; driven by :mod:`dripflow.store.migrate`.

The caller may hand over an open connection in ``config.attributes["connection"]`` (that is what
:func:`dripflow.store.migrate.upgrade` does); otherwise the ``sqlalchemy.url`` option or
``DRIPFLOW_DATABASE_URL`` is used. All pending migrations run in one transaction: on failure
nothing is half-applied, on either database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from dripflow.store.database import database_url, make_engine, normalize_url
from dripflow.store.tables import Base

# Any constant will do; it only has to be the same for every dripflow process sharing the database.
_PG_MIGRATION_LOCK = 0x64726970  # "drip"

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or database_url()


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade --sql``)."""
    url = normalize_url(_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.get_backend_name() == "sqlite",
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    if connection.in_transaction():
        # The caller owns the transaction (and, on SQLite, the foreign-key setting).
        _migrate(connection)
        return
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode rebuilds a table by copy + DROP; with foreign keys on, that DROP would cascade
        # into the rows that reference it. Turn them off for the migration (outside the
        # transaction: the pragma is ignored inside one) and check integrity before committing.
        raw = connection.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
    try:
        with connection.begin():
            _migrate(connection)
    finally:
        if sqlite:
            raw = connection.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=ON")


def _migrate(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if connection.dialect.name == "postgresql":
        # Several workers may start at once and each run `db upgrade`: one migrates, the others
        # wait here and then find nothing left to do.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        transactional_ddl=True,
        compare_type=True,
    )
    context.run_migrations()
    if sqlite:
        problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if problems:
            raise RuntimeError(f"migration left rows with broken foreign keys: {problems[:10]}")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as owned:
            _run(owned)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
