"""Opening the store: the database URL, the engine, migrations, and sessions.

Any SQLAlchemy URL selects the store; the default is a SQLite file in the working directory.
A database is brought to the newest schema when it is opened, so a new file or an empty
PostgreSQL database is ready for use at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hardmine.errors import StoreError

log = logging.getLogger(__name__)

ENV_VAR = "HARDMINE_DB"
DEFAULT_FILE = "hardmine.db"
MIGRATIONS = Path(__file__).parent / "migrations"


def database_url(url: str | None = None) -> str:
    """The store's URL: `url` if given, else $HARDMINE_DB, else ./hardmine.db (SQLite)."""
    if url:
        return url
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    return f"sqlite:///{Path.cwd() / DEFAULT_FILE}"


def open_engine(url: str | None = None, *, upgrade: bool = True) -> Engine:
    """An engine on the store at `url`, migrated to the newest schema unless `upgrade` is off."""
    url = database_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"database URL {url!r} is not a SQLAlchemy URL; expected e.g. sqlite:///hardmine.db "
            "or postgresql+psycopg://user@host:5432/dbname (set --db or HARDMINE_DB)"
        ) from exc

    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(url, pool_pre_ping=True)

    if upgrade:
        upgrade_schema(engine)
    return engine


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        folder = Path(database).expanduser().resolve().parent
        if not folder.is_dir():
            raise StoreError(
                f"the SQLite file's folder {folder} does not exist; create it or point --db at "
                "another path"
            )

    # Several processes (Dask workers, the dashboard) share one file: wait for locks rather than
    # failing at once, and let readers work while a writer commits (WAL).
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 (DBAPI connection)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    return engine


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def schema_head() -> str:
    """The newest migration's revision id."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_schema(engine: Engine) -> None:
    """Apply every migration the database lacks (nothing when it is current)."""
    try:
        current = schema_revision(engine)
    except OperationalError as exc:
        raise StoreError(
            f"cannot open the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{exc.orig}; check that the server runs and the URL is right (--db or HARDMINE_DB)"
        ) from exc
    if current == schema_head():
        return

    log.info("upgrading store schema from %s to %s", current or "empty", schema_head())
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commits when the block ends, rolls back if it raises.

    This is for the edges (CLI, flows, pipeline entry points); storage functions take the
    session and never commit themselves.
    """
    session = sessionmaker(engine, expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
