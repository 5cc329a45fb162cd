"""A small store the dashboard reads: real JPEGs, a run of 3 rounds, pool examples of each kind.

Written through the storage layer as the pipeline writes it: ORM rows for the dataset, images,
run and rounds, `admit` for the pool.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import Engine, func, select

from hardmine.storage.db import session_scope
from hardmine.storage.models import (
    Base,
    Dataset,
    ExampleKind,
    Image,
    PoolExample,
    Round,
    RoundStatus,
    Run,
)
from hardmine.storage.pool import NewExample, admit

RUN = "shapes-threshold-ce-s0"
EMPTY_RUN = "shapes-empty"  # created earlier, no rounds, no pool
START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# Mined negatives: (image, box xyxy px, round, score). Image "gone" has no file on disk.
SMALL_BOX = (40.0, 30.0, 80.0, 50.0)  # 40x20 on a 160x120 image
LARGE_BOX = (0.0, 0.0, 300.0, 200.0)  # 300x200 on the 400x300 image
MINED = [
    ("a", SMALL_BOX, 1, 0.97),
    ("b", (10.0, 10.0, 50.0, 50.0), 1, 0.62),
    ("c", (20.0, 20.0, 60.0, 70.0), 1, 0.81),
    ("gone", (5.0, 5.0, 25.0, 25.0), 1, 0.5),
    ("b", (90.0, 40.0, 130.0, 90.0), 2, 0.99),
    ("a", (100.0, 60.0, 150.0, 110.0), 2, 0.7),
    ("large", LARGE_BOX, 2, 0.955),
]
SCORES_HIGH_TO_LOW = [0.99, 0.97, 0.955, 0.81, 0.7, 0.62, 0.5, 0.3]  # 0.3: the broken image


@dataclass
class Store:
    """What `build_store` wrote, for tests to look up."""

    engine: Engine
    run_id: int
    image_ids: dict[str, int]
    example_ids: dict[float, int] = field(default_factory=dict)  # mined negatives by score
    positive_id: int = 0


def build_store(engine: Engine, folder: Path, last_status: RoundStatus = RoundStatus.done) -> Store:
    """Writes the dataset's images to `folder` and the store's rows through `engine`.

    Args:
        last_status: status of round 2 (the others are done), to show a run still working.
    """
    files = _write_images(folder)
    with session_scope(engine) as session:
        dataset = Dataset(name="shapes", format="coco")
        session.add(dataset)
        session.flush()
        images = {name: _image_row(dataset.id, name, path) for name, path in files.items()}
        images["broken"] = _image_row(dataset.id, "broken", folder / "broken.jpg")
        images["broken"].readable = False
        images["broken"].unreadable_reason = "not an image PIL can identify"
        session.add_all(images.values())

        empty = Run(name=EMPTY_RUN, dataset_id=dataset.id, config={}, created_at=START)
        run = Run(
            name=RUN,
            dataset_id=dataset.id,
            config={"rounds": 3, "strategy": "threshold"},
            created_at=START + timedelta(hours=1),
        )
        session.add_all([empty, run])
        session.flush()
        session.add_all(_rounds(run.id, last_status))
        store = Store(engine, run.id, {name: image.id for name, image in images.items()})

        admit(session, run.id, _initial_pool(store.image_ids))
        mined = [
            NewExample(store.image_ids[name], box, 0, ExampleKind.hard, round_, score, 1 - score)
            for name, box, round_, score in MINED
        ]
        admit(session, run.id, mined)
        # The broken image's negative: listed like any other, but it has no crop.
        admit(
            session,
            run.id,
            [NewExample(images["broken"].id, SMALL_BOX, 0, ExampleKind.hard, 1, 0.3, 0.7)],
        )

    with session_scope(engine) as session:
        rows = session.execute(select(PoolExample.id, PoolExample.score, PoolExample.label))
        for example_id, score, label in rows:
            if label == 1:
                store.positive_id = example_id
            elif score is not None:
                store.example_ids[score] = example_id
    return store


def _write_images(folder: Path) -> dict[str, Path]:
    """Three 160x120 images and one 400x300, each a coloured field with a few shapes."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"a": (160, 120), "b": (160, 120), "c": (160, 120), "large": (400, 300)}
    files = {}
    for index, (name, size) in enumerate(sizes.items()):
        image = PILImage.new("RGB", size, (40 + 50 * index, 110, 160))
        draw = ImageDraw.Draw(image)
        draw.ellipse((30, 25, 90, 85), fill=(200, 30, 30))
        draw.rectangle((95, 50, 140, 100), fill=(240, 200, 40))
        files[name] = folder / f"{name}.jpg"
        image.save(files[name], format="JPEG")
    files["gone"] = folder / "gone.jpg"  # recorded, never written: a moved dataset
    return files


def _image_row(dataset_id: int, name: str, path: Path) -> Image:
    width, height = (400, 300) if name == "large" else (160, 120)
    return Image(
        dataset_id=dataset_id,
        file_name=f"{name}.jpg",
        path=str(path),
        width=width,
        height=height,
        split="train",
    )


def _rounds(run_id: int, last_status: RoundStatus) -> list[Round]:
    rounds = []
    for number in range(3):
        status = last_status if number == 2 else RoundStatus.done
        started = START + timedelta(hours=1, minutes=10 * number)
        finished = started + timedelta(seconds=95.5) if status is RoundStatus.done else None
        metrics = {
            "ap": 0.41 + 0.1 * number,
            "ap50": 0.62 + 0.1 * number,
            "fp_per_image": 1.8 - 0.5 * number,
            "recall": 0.7 + 0.05 * number,
            "lamr": 0.55 - 0.1 * number,
            "windows_scored": 12000,
            "windows_per_s": 2400.0 + 100 * number,
            "admitted": [0, 4, 3][number],
            "yield_per_1k": [0.0, 0.3333, 0.25][number],
        }
        rounds.append(
            Round(
                run_id=run_id,
                number=number,
                status=status,
                started_at=started,
                finished_at=finished,
                metrics=metrics if status is RoundStatus.done else {},
            )
        )
    return rounds


def _initial_pool(image_ids: dict[str, int]) -> list[NewExample]:
    """Round 0: a positive on each of a, b, c and 4 random negatives (no score)."""
    positives = [
        NewExample(image_ids[name], (30.0, 25.0, 90.0, 85.0), 1, ExampleKind.positive, 0)
        for name in ("a", "b", "c")
    ]
    randoms = [
        NewExample(image_ids["a"], (float(x), 0.0, x + 20.0, 20.0), 0, ExampleKind.random, 0)
        for x in (0, 30, 60, 90)
    ]
    return positives + randoms


def store_snapshot(engine: Engine) -> tuple[dict[str, int], str]:
    """Row counts of every table and a checksum of the pool and rounds tables."""
    digest = hashlib.sha256()
    with session_scope(engine) as session:
        counts = {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
        for model in (PoolExample, Round):
            columns = model.__table__.columns
            for row in session.execute(select(*columns).order_by(model.id)):
                digest.update(repr(tuple(row)).encode())
    return counts, digest.hexdigest()
