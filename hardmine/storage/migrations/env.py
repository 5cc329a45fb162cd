"""Alembic environment: migrations run on the connection hardmine hands over."""

from alembic import context
from sqlalchemy import create_engine

from hardmine.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # Run from the alembic command line: `sqlalchemy.url` comes from its config.
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as own_connection:
            _migrate(own_connection)
        return
    _migrate(connection)


def _migrate(connection) -> None:  # noqa: ANN001 (a SQLAlchemy Connection)
    # SQLite alters tables by copying them; batch mode does that for us.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
