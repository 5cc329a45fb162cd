"""Locks that die with their holder: one round of a run at a time.

A Prefect concurrency slot held by a process that is killed stays taken until its lease expires,
and in Prefect's ephemeral mode nothing ever expires it, so a killed round would block every
later one. These locks are released by the database or the operating system the moment the
holder's connection or process ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

log = logging.getLogger(__name__)


@contextmanager
def run_lock(engine: Engine, run_name: str) -> Iterator[None]:
    """Hold the run's lock for the block; waits while another process holds it.

    PostgreSQL: a session advisory lock on a connection kept open for the block. SQLite: an
    exclusive flock on a file beside the database. Other databases: no lock (a warning).
    """
    dialect = engine.dialect.name
    if dialect == "postgresql":
        key = int.from_bytes(
            hashlib.sha256(f"hardmine-run:{run_name}".encode()).digest()[:8], "big", signed=True
        )
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        return

    database = engine.url.database
    if dialect == "sqlite" and database and database != ":memory:":
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", run_name)
        with file_lock(Path(database).with_name(f"{Path(database).name}.run-{slug}.lock")):
            yield
        return

    log.warning("no run lock on %s: do not run two rounds of run %s at once", dialect, run_name)
    yield


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing), between processes and threads alike."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
