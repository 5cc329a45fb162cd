from sqlalchemy import Engine

from hardmine.dashboard.queries import away_from_objects, overlap_of_smaller, read_session
from hardmine.storage.db import session_scope
from hardmine.storage.models import Dataset, ExampleKind, Image, Object, PoolExample, Run


def test_overlap_of_smaller_is_one_when_a_box_holds_the_other() -> None:
    assert overlap_of_smaller((0, 0, 100, 100), (10, 10, 30, 30)) == 1.0  # object in window
    assert overlap_of_smaller((10, 10, 30, 30), (0, 0, 100, 100)) == 1.0  # window in object
    assert overlap_of_smaller((0, 0, 10, 10), (5, 0, 15, 10)) == 0.5
    assert overlap_of_smaller((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_away_from_objects_drops_confident_windows_on_labelled_objects(
    sqlite_engine: Engine,
) -> None:
    with session_scope(sqlite_engine) as session:
        dataset = Dataset(name="d", format="coco")
        session.add(dataset)
        session.flush()
        image = Image(
            dataset_id=dataset.id,
            file_name="a.jpg",
            path="/a.jpg",
            width=200,
            height=200,
            split="train",
            objects=[Object(category="c", x1=0, y1=0, x2=40, y2=40)],
        )
        empty = Image(
            dataset_id=dataset.id,
            file_name="b.jpg",
            path="/b.jpg",
            width=200,
            height=200,
            split="train",
        )
        run = Run(name="r", dataset_id=dataset.id, config={})
        session.add_all([image, empty, run])
        session.flush()
        boxes = {
            "object at twice the scale": (image.id, (0, 0, 80, 80)),
            "far from the object": (image.id, (120, 120, 160, 160)),
            "on an image with no objects": (empty.id, (0, 0, 40, 40)),
        }
        for image_id, (x1, y1, x2, y2) in boxes.values():
            session.add(
                PoolExample(
                    run_id=run.id,
                    image_id=image_id,
                    x1=x1,
                    y1=y1,
                    x2=x2,
                    y2=y2,
                    label=0,
                    kind=ExampleKind.hard,
                    round=0,
                    score=0.99,
                )
            )

    with read_session(sqlite_engine) as session:
        examples = session.query(PoolExample).order_by(PoolExample.id).all()
        kept = [example.box for example in away_from_objects(session, examples)]
    assert kept == [(120, 120, 160, 160), (0, 0, 40, 40)]
