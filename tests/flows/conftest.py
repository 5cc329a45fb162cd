"""Prefect's test harness, started once per test session (about 20 s on 2 cores)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

import hardmine.flows  # noqa: F401  (offline defaults before Prefect loads its settings)
from tests.helpers import ingest_tiny_demo


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def demo_store(sqlite_engine: Engine, tmp_path: Path) -> Engine:
    return ingest_tiny_demo(sqlite_engine, tmp_path / "demo")
