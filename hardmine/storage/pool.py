"""Pool queries: admitting examples in bulk, counting them, reading them back.

Every function takes the caller's `Session` and never commits: the caller owns the
transaction, so a round's admission is one transaction however many calls it makes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from hardmine.storage.models import ExampleKind, PoolExample

# Column order of a bulk write; `times_remined` starts at 0.
_COLUMNS = ("run_id", "image_id", "x1", "y1", "x2", "y2", "label", "kind", "round", "score", "loss")


# Columns read back as (id, image_id, x1, y1, x2, y2).
_ID_IMAGE_BOX = (
    PoolExample.id,
    PoolExample.image_id,
    PoolExample.x1,
    PoolExample.y1,
    PoolExample.x2,
    PoolExample.y2,
)


@dataclass(frozen=True, slots=True)
class NewExample:
    """An example about to enter the pool.

    Args:
        box: xyxy, pixels of the original image.
        score, loss: the detector's, when a mining pass found it; None otherwise.
    """

    image_id: int
    box: tuple[float, float, float, float]
    label: int
    kind: ExampleKind
    round: int
    score: float | None = None
    loss: float | None = None


def admit(session: Session, run_id: int, examples: Sequence[NewExample]) -> int:
    """Insert `examples` into the run's pool in the session's transaction; returns the count.

    The rows go to the driver directly, past SQLAlchemy's per-row processing: PostgreSQL takes
    them through COPY, SQLite through one DBAPI executemany, other databases through a Core
    executemany. `bench/pool_writes.py` measures each.
    """
    if not examples:
        return 0
    rows = [(*_row(run_id, example), 0) for example in examples]
    columns = (*_COLUMNS, "times_remined")
    table = PoolExample.__tablename__

    connection = session.connection()
    driver_connection = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    elif connection.dialect.name == "sqlite":
        placeholders = ", ".join("?" * len(columns))
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"
        driver_connection.executemany(statement, rows)
    else:
        mappings = [dict(zip(columns, row, strict=True)) for row in rows]
        session.execute(PoolExample.__table__.insert(), mappings)
    return len(rows)


def _row(run_id: int, example: NewExample) -> tuple:
    x1, y1, x2, y2 = (float(v) for v in example.box)
    score = None if example.score is None else float(example.score)
    loss = None if example.loss is None else float(example.loss)
    kind = ExampleKind(example.kind).value
    return (
        run_id,
        example.image_id,
        x1,
        y1,
        x2,
        y2,
        int(example.label),
        kind,
        example.round,
        score,
        loss,
    )


def counts_by_kind(session: Session, run_id: int, up_to_round: int | None = None) -> dict[str, int]:
    """Pool size per kind (all three kinds present, zero when empty), optionally as it stood
    after `up_to_round`."""
    query = select(PoolExample.kind, func.count()).where(PoolExample.run_id == run_id)
    if up_to_round is not None:
        query = query.where(PoolExample.round <= up_to_round)
    counts = dict(session.execute(query.group_by(PoolExample.kind)).all())
    return {kind.value: counts.get(kind, 0) for kind in ExampleKind}


def added_by_round(session: Session, run_id: int) -> dict[int, dict[str, int]]:
    """What each round added, per kind: {round: {"positive": n, "random": n, "hard": n}}."""
    query = (
        select(PoolExample.round, PoolExample.kind, func.count())
        .where(PoolExample.run_id == run_id)
        .group_by(PoolExample.round, PoolExample.kind)
    )
    added: dict[int, dict[str, int]] = defaultdict(lambda: {k.value: 0 for k in ExampleKind})
    for round_number, kind, count in session.execute(query):
        added[round_number][ExampleKind(kind).value] = count
    return dict(added)


def training_examples(
    session: Session, run_id: int, before_round: int | None = None
) -> list[tuple[int, int, tuple, int]]:
    """The run's examples as (id, image_id, box xyxy, label), ordered by id.

    With `before_round=r`: what round r trains on, i.e. the initial pool (positives and
    round-0 random negatives, which carry no score) plus everything mining rounds before r
    admitted. The mining pass of round r itself comes after its training.
    """
    query = select(*_ID_IMAGE_BOX, PoolExample.label).where(PoolExample.run_id == run_id)
    if before_round is not None:
        query = query.where(or_(PoolExample.score.is_(None), PoolExample.round < before_round))
    rows = session.execute(query.order_by(PoolExample.id))
    return [(i, image, (x1, y1, x2, y2), label) for i, image, x1, y1, x2, y2, label in rows]


def hardest_negatives(
    session: Session,
    run_id: int,
    round_number: int | None = None,
    min_score: float = 0.0,
    limit: int = 50,
) -> list[PoolExample]:
    """Mined negatives of the run (of one round, if given), highest score first."""
    query = select(PoolExample).where(
        PoolExample.run_id == run_id, PoolExample.label == 0, PoolExample.score >= min_score
    )
    if round_number is not None:
        query = query.where(PoolExample.round == round_number)
    order = (PoolExample.score.desc(), PoolExample.id)
    return list(session.scalars(query.order_by(*order).limit(limit)))


def negatives_by_image(
    session: Session, run_id: int, image_ids: Sequence[int]
) -> dict[int, list[tuple[int, tuple]]]:
    """The run's pooled negatives (random and hard) on `image_ids`: {image_id: [(id, box)]}."""
    found: dict[int, list[tuple[int, tuple]]] = defaultdict(list)
    if not image_ids:
        return found
    query = select(*_ID_IMAGE_BOX).where(
        PoolExample.run_id == run_id,
        PoolExample.label == 0,
        PoolExample.image_id.in_(list(image_ids)),
    )
    for example_id, image_id, x1, y1, x2, y2 in session.execute(query):
        found[image_id].append((example_id, (x1, y1, x2, y2)))
    return found


def count_remined(session: Session, example_ids: Sequence[int]) -> None:
    """Add one to `times_remined` of each example (an id listed twice counts twice)."""
    tally: dict[int, int] = defaultdict(int)
    for example_id in example_ids:
        tally[example_id] += 1
    by_increment: dict[int, list[int]] = defaultdict(list)
    for example_id, increment in tally.items():
        by_increment[increment].append(example_id)
    for increment, ids in by_increment.items():
        session.execute(
            update(PoolExample)
            .where(PoolExample.id.in_(ids))
            .values(times_remined=PoolExample.times_remined + increment)
        )
