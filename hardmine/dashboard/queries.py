"""The dashboard's reads of the store: a session that never writes, and the few queries that
`hardmine.storage` does not already offer.

Like the storage functions, the queries take a `Session` and never commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from hardmine.storage.models import Image, PoolExample


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
