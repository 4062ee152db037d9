"""Alembic environment: migrations run against the URL given by `wfclock db upgrade`."""

from alembic import context
from sqlalchemy import create_engine

from wfclock.db.tables import metadata

config = context.config
url = config.get_main_option("sqlalchemy.url")
engine = create_engine(url, future=True)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        # One migrator at a time when several operator replicas start together.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7406372001)")
        context.run_migrations()
engine.dispose()
