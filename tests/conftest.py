"""Shared fixtures: a store on SQLite and on the PostgreSQL server, and the real datasets.

PostgreSQL tests run in a database of their own, created for the test session and dropped after.
When no server answers they skip with the reason, unless HARDMINE_REQUIRE_POSTGRES=1 (set by
.ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from hardmine.storage.db import open_engine

PG_SERVER = os.environ.get("HARDMINE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("HARDMINE_REQUIRE_POSTGRES") == "1"
# The real datasets live beside the checkout (../shared/data); HARDMINE_SHARED_DATA overrides.
DATA = Path(
    os.environ.get("HARDMINE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test session; dropped afterwards."""
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"hardmine_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        reason = f"no PostgreSQL server answers at {PG_SERVER}: {exc.orig}"
        if REQUIRE_PG:
            pytest.fail(f"{reason} (HARDMINE_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)

    yield admin.url.set(database=name).render_as_string(hide_password=False)

    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _empty_postgres(url: str) -> Engine:
    """An engine on `url` with every table of an earlier test dropped."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return open_engine(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty store, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url = request.getfixturevalue("pg_database")
    _empty_postgres(url).dispose()
    return url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """A migrated engine on an empty store (SQLite, then PostgreSQL)."""
    engine = open_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated engine on an empty SQLite store, for tests whose subject is not the database."""
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    yield engine
    engine.dispose()


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip when the real datasets are absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real dataset {path} is absent (see the README's test data section)")
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying whether the PostgreSQL tests ran, so a skipped server is never missed."""
    outcomes: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if "postgresql" in getattr(report, "nodeid", "") and report.when in ("call", "setup"):
                if outcome == "passed" and report.when == "setup":
                    continue
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    counts = ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items()))
    terminalreporter.write_line(f"PostgreSQL storage tests ({PG_SERVER}): {counts or 'none ran'}")
