"""The dashboard's reads of the store: a session that never writes, and the few queries that
`hardmine.storage` does not already offer.

Like the storage functions, the queries take a `Session` and never commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hardmine.storage.models import Image, Object, PoolExample

Box = tuple[float, float, float, float]


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reading only: nothing is flushed, and its transaction is rolled back.

    The dashboard watches a store that the pipeline writes; whatever a request touches, the
    store is left as it was.
    """
    session = Session(engine, autoflush=False)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def file_names(session: Session, image_ids: Sequence[int]) -> dict[int, str]:
    """The file name of each image in `image_ids`: {image_id: file_name}."""
    if not image_ids:
        return {}
    query = select(Image.id, Image.file_name).where(Image.id.in_(set(image_ids)))
    return {image_id: name for image_id, name in session.execute(query)}


def example_with_image(session: Session, example_id: int) -> tuple[PoolExample, Image] | None:
    """The pool example `example_id` and the image it lies on, or None when there is none."""
    query = (
        select(PoolExample, Image)
        .join(Image, Image.id == PoolExample.image_id)
        .where(PoolExample.id == example_id)
    )
    row = session.execute(query).first()
    return None if row is None else (row[0], row[1])


def away_from_objects(
    session: Session, examples: Sequence[PoolExample], max_overlap: float = 0.5
) -> list[PoolExample]:
    """The examples that overlap no labelled object of their image by more than `max_overlap`
    of the smaller of the two boxes, in the order given.

    A confident false positive next to a labelled object is mostly that object seen at another
    scale or in part; the ones far from every label are those worth a look for a missing label.
    """
    image_ids = {example.image_id for example in examples}
    objects: dict[int, list[Box]] = {image_id: [] for image_id in image_ids}
    query = select(Object.image_id, Object.x1, Object.y1, Object.x2, Object.y2).where(
        Object.image_id.in_(image_ids)
    )
    for image_id, x1, y1, x2, y2 in session.execute(query):
        objects[image_id].append((x1, y1, x2, y2))
    return [
        example
        for example in examples
        if all(
            overlap_of_smaller(example.box, box) <= max_overlap for box in objects[example.image_id]
        )
    ]


def overlap_of_smaller(a: Box, b: Box) -> float:
    """Intersection of two xyxy boxes over the smaller box's area (1: one holds the other)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / smaller if smaller > 0 else 0.0
