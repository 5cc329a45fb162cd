"""Bulk admission speed: 100,000 pool examples in one transaction, SQLite and PostgreSQL.

    .venv/bin/python bench/pool_writes.py [--rows 100000] [--repeats 3] [--pg URL]

Each repeat writes into an empty pool through `hardmine.storage.pool.admit` (DBAPI executemany
on SQLite, COPY on PostgreSQL) and commits. Two reference lines put the numbers in context:
SQLAlchemy's Core executemany (the path `admit` replaces), and on PostgreSQL a COPY of the same
rows into a bare copy of the table with no index and no foreign key (what the pool's three
indexes, primary key and two foreign keys cost). Prints best and median of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, delete, text
from sqlalchemy.orm import Session

from hardmine.storage.db import open_engine, session_scope
from hardmine.storage.models import Dataset, ExampleKind, Image, PoolExample, Run
from hardmine.storage.pool import NewExample, _row, admit

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def make_examples(image_ids: list[int], rows: int) -> list[NewExample]:
    return [
        NewExample(
            image_id=image_ids[i % len(image_ids)],
            box=(float(i % 600), float(i % 400), float(i % 600 + 64), float(i % 400 + 64)),
            label=0,
            kind=ExampleKind.hard,
            round=1 + i % 3,
            score=0.5 + (i % 500) / 1000,
            loss=0.7,
        )
        for i in range(rows)
    ]


def seed_store(engine: Engine) -> tuple[int, list[int]]:
    with session_scope(engine) as session:
        dataset = Dataset(name="bench", format="coco")
        session.add(dataset)
        session.flush()
        images = [
            Image(
                dataset_id=dataset.id,
                file_name=f"{i}.jpg",
                path=f"/b/{i}.jpg",
                width=640,
                height=480,
                split="train",
            )
            for i in range(200)
        ]
        run = Run(name="bench", dataset_id=dataset.id, config={})
        session.add_all([*images, run])
        session.flush()
        return run.id, [image.id for image in images]


def core_executemany(session: Session, run_id: int, examples: list[NewExample]) -> None:
    columns = (
        "run_id",
        "image_id",
        "x1",
        "y1",
        "x2",
        "y2",
        "label",
        "kind",
        "round",
        "score",
        "loss",
    )
    rows = [dict(zip(columns, _row(run_id, e), strict=True)) for e in examples]
    session.execute(PoolExample.__table__.insert(), rows)


def bare_copy(session: Session, run_id: int, examples: list[NewExample]) -> None:
    """COPY into an index- and constraint-free copy of the pool table (reference only)."""
    session.execute(text("DROP TABLE IF EXISTS bare_pool"))
    session.execute(text("CREATE TABLE bare_pool (LIKE pool_examples INCLUDING DEFAULTS)"))
    columns = "run_id, image_id, x1, y1, x2, y2, label, kind, round, score, loss, times_remined"
    driver = session.connection().connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(f"COPY bare_pool ({columns}) FROM STDIN") as copy:
        for example in examples:
            copy.write_row((*_row(run_id, example), 0))


def time_writes(
    engine: Engine,
    write: Callable[[Session, int, list[NewExample]], object],
    rows: int,
    repeats: int,
) -> list[float]:
    run_id, image_ids = seed_store(engine)
    examples = make_examples(image_ids, rows)
    rates = []
    for _ in range(repeats):
        with session_scope(engine) as session:
            session.execute(delete(PoolExample))
        start = time.perf_counter()
        with session_scope(engine) as session:
            write(session, run_id, examples)
        rates.append(rows / (time.perf_counter() - start))
    return rates


def _reset(engine: Engine) -> None:
    with session_scope(engine) as session:
        for table in (PoolExample, Run, Image, Dataset):
            session.execute(delete(table))


def report(store: str, method: str, rates: list[float]) -> None:
    print(
        f"{store:<11} {method:<23} best={max(rates):>9,.0f} rows/s  "
        f"median={statistics.median(rates):>9,.0f} rows/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server URL (admin database)")
    args = parser.parse_args()
    print(f"rows per transaction: {args.rows:,}  repeats: {args.repeats}")

    with tempfile.TemporaryDirectory() as folder:
        engine = open_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        report("sqlite", "admit (executemany)", time_writes(engine, admit, args.rows, args.repeats))
        _reset(engine)
        rates = time_writes(engine, core_executemany, args.rows, args.repeats)
        report("sqlite", "Core executemany (ref)", rates)
        engine.dispose()

    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    name = f"hardmine_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        engine = open_engine(url)
        report("postgresql", "admit (COPY)", time_writes(engine, admit, args.rows, args.repeats))
        _reset(engine)
        rates = time_writes(engine, core_executemany, args.rows, args.repeats)
        report("postgresql", "Core executemany (ref)", rates)
        _reset(engine)
        rates = time_writes(engine, bare_copy, args.rows, args.repeats)
        report("postgresql", "COPY, bare table (ref)", rates)
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
