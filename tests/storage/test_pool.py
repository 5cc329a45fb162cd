import pytest
from sqlalchemy import Engine, func, select

from hardmine.storage.db import session_scope
from hardmine.storage.models import Dataset, ExampleKind, Image, PoolExample, Run
from hardmine.storage.pool import (
    NewExample,
    added_by_round,
    admit,
    count_remined,
    counts_by_kind,
    negatives_by_image,
    training_examples,
)


def _run_with_images(engine: Engine, images: int = 2) -> tuple[int, list[int]]:
    with session_scope(engine) as session:
        dataset = Dataset(name="d", format="coco")
        session.add(dataset)
        session.flush()
        rows = [
            Image(
                dataset_id=dataset.id,
                file_name=f"{i}.jpg",
                path=f"/x/{i}.jpg",
                width=100,
                height=80,
                split="train",
            )
            for i in range(images)
        ]
        run = Run(name="r", dataset_id=dataset.id, config={"seed": 1})
        session.add_all([*rows, run])
        session.flush()
        return run.id, [image.id for image in rows]


def _example(image_id: int, kind: ExampleKind, round_: int, x: float = 0.0) -> NewExample:
    label = 1 if kind is ExampleKind.positive else 0
    score = 0.9 if kind is ExampleKind.hard else None
    return NewExample(image_id, (x, 0.0, x + 10.0, 10.0), label, kind, round_, score, 0.1)


def test_admit_writes_every_example_with_its_provenance(engine: Engine) -> None:
    run_id, (image, _) = _run_with_images(engine)
    with session_scope(engine) as session:
        assert admit(session, run_id, [_example(image, ExampleKind.hard, 2, x=5.0)]) == 1

    with session_scope(engine) as session:
        stored = session.scalars(select(PoolExample)).one()
    assert (stored.run_id, stored.image_id, stored.round) == (run_id, image, 2)
    assert stored.box == (5.0, 0.0, 15.0, 10.0)
    assert (stored.kind, stored.label, stored.score, stored.times_remined) == (
        ExampleKind.hard,
        0,
        0.9,
        0,
    )


def test_admit_of_nothing_writes_nothing(engine: Engine) -> None:
    run_id, _ = _run_with_images(engine)
    with session_scope(engine) as session:
        assert admit(session, run_id, []) == 0
        assert counts_by_kind(session, run_id) == {"positive": 0, "random": 0, "hard": 0}


def test_admit_is_undone_when_the_callers_transaction_fails(engine: Engine) -> None:
    run_id, (image, _) = _run_with_images(engine)
    examples = [_example(image, ExampleKind.random, 0, x=float(i)) for i in range(500)]
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        admit(session, run_id, examples)
        raise RuntimeError("crash after admission, before commit")

    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(PoolExample)) == 0


def test_admit_takes_100k_examples_in_one_transaction(engine: Engine) -> None:
    run_id, images = _run_with_images(engine, images=10)
    examples = [
        _example(images[i % 10], ExampleKind.hard, 1, x=float(i % 90)) for i in range(100_000)
    ]
    with session_scope(engine) as session:
        admit(session, run_id, examples)
    with session_scope(engine) as session:
        assert counts_by_kind(session, run_id) == {"positive": 0, "random": 0, "hard": 100_000}


def test_counts_and_added_by_round_follow_the_round_that_added_each_example(
    engine: Engine,
) -> None:
    run_id, (image, _) = _run_with_images(engine)
    with session_scope(engine) as session:
        admit(session, run_id, [_example(image, ExampleKind.positive, 0)] * 3)
        admit(session, run_id, [_example(image, ExampleKind.random, 0)] * 5)
        admit(session, run_id, [_example(image, ExampleKind.hard, 0)] * 2)
        admit(session, run_id, [_example(image, ExampleKind.hard, 1)] * 4)

    with session_scope(engine) as session:
        assert counts_by_kind(session, run_id) == {"positive": 3, "random": 5, "hard": 6}
        assert counts_by_kind(session, run_id, up_to_round=0) == {
            "positive": 3,
            "random": 5,
            "hard": 2,
        }
        assert added_by_round(session, run_id) == {
            0: {"positive": 3, "random": 5, "hard": 2},
            1: {"positive": 0, "random": 0, "hard": 4},
        }


def test_negatives_by_image_returns_only_negatives_of_the_asked_images(engine: Engine) -> None:
    run_id, (first, second) = _run_with_images(engine)
    with session_scope(engine) as session:
        admit(session, run_id, [_example(first, ExampleKind.positive, 0)])
        admit(session, run_id, [_example(first, ExampleKind.hard, 1, x=1.0)])
        admit(session, run_id, [_example(second, ExampleKind.random, 0, x=2.0)])

    with session_scope(engine) as session:
        found = negatives_by_image(session, run_id, [first])
        assert list(found) == [first]
        assert [box for _, box in found[first]] == [(1.0, 0.0, 11.0, 10.0)]
        assert negatives_by_image(session, run_id, []) == {}


def test_count_remined_adds_once_per_mention(engine: Engine) -> None:
    run_id, (image, _) = _run_with_images(engine)
    with session_scope(engine) as session:
        admit(session, run_id, [_example(image, ExampleKind.hard, 0, x=float(i)) for i in range(2)])
    with session_scope(engine) as session:
        first, second = (row[0] for row in training_examples(session, run_id))
        count_remined(session, [first, first, second])
    with session_scope(engine) as session:
        remined = dict(session.execute(select(PoolExample.id, PoolExample.times_remined)).all())
    assert remined == {first: 2, second: 1}
