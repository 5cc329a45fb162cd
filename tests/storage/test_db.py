from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from hardmine.errors import StoreError
from hardmine.storage.db import database_url, open_engine, schema_head, schema_revision
from hardmine.storage.models import Base


def test_open_engine_upgrades_a_new_database_to_the_newest_schema(engine: Engine) -> None:
    assert schema_revision(engine) == schema_head()
    tables = set(inspect(engine).get_table_names())
    assert {"datasets", "images", "objects", "runs", "rounds", "pool_examples"} <= tables
    assert {"checkpoints", "mined_shards", "alembic_version"} <= tables


def test_migrations_match_the_models(engine: Engine) -> None:
    # A model changed without a migration would show up here as a difference.
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_pool_indexes_cover_run_round_run_image_and_score(engine: Engine) -> None:
    indexes = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("pool_examples")}
    assert ("run_id", "round") in indexes
    assert ("run_id", "image_id") in indexes
    assert ("run_id", "kind", "score") in indexes


def test_open_engine_twice_leaves_a_current_database_alone(store_url: str) -> None:
    first = open_engine(store_url)
    first.dispose()
    second = open_engine(store_url)
    assert schema_revision(second) == schema_head()
    second.dispose()


def test_database_url_prefers_flag_then_environment_then_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARDMINE_DB", "sqlite:///from-env.db")
    assert database_url("sqlite:///flag.db") == "sqlite:///flag.db"
    assert database_url() == "sqlite:///from-env.db"
    monkeypatch.delenv("HARDMINE_DB")
    assert database_url() == f"sqlite:///{tmp_path / 'hardmine.db'}"


def test_open_engine_rejects_a_url_that_is_not_sqlalchemy() -> None:
    with pytest.raises(StoreError, match="not a SQLAlchemy URL"):
        open_engine("not a url")


def test_open_engine_names_a_missing_sqlite_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_engine(f"sqlite:///{tmp_path / 'nowhere' / 'store.db'}")


def test_open_engine_says_what_to_check_when_the_server_is_down() -> None:
    # Port 9 (discard) has no PostgreSQL behind it.
    with pytest.raises(StoreError, match="check that the server runs"):
        open_engine("postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=2")
