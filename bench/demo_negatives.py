"""Where the mined negatives of demo runs lie: on look-alikes, on targets, or elsewhere.

    .venv/bin/python bench/demo_negatives.py --db sqlite:///PATH/bench.db [--runs PATTERN]

The demo dataset keeps its look-alike boxes in each COCO image entry (`lookalikes`). For every
run on dataset `demo` whose name matches PATTERN (SQL LIKE, default all), and each round, this
counts the negatives the round's mining admitted (kind hard or random, with a score) that
overlap a look-alike, else a target (ground-truth object), by more than half of the smaller box.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from hardmine.dashboard.queries import overlap_of_smaller
from hardmine.storage.db import open_engine, session_scope
from hardmine.storage.models import Dataset, Image, PoolExample, Run


def lookalikes_by_path(images: list[Image]) -> dict[str, list[tuple]]:
    """Look-alike boxes (xyxy) per image path, from the demo's COCO files."""
    boxes: dict[str, list[tuple]] = {}
    folders = {Path(image.path).parent.parent for image in images}
    for folder in folders:
        for annotation_file in (folder / "annotations").glob("demo_*.json"):
            for entry in json.loads(annotation_file.read_text())["images"]:
                path = str((folder / "images" / entry["file_name"]).resolve())
                boxes[path] = [(x, y, x + w, y + h) for x, y, w, h in entry["lookalikes"]]
    return boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--runs", default="%")
    args = parser.parse_args()

    with session_scope(open_engine(args.db)) as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == "demo"))
        images = {image.id: image for image in dataset.images}
        lookalikes = lookalikes_by_path(list(images.values()))
        query = select(Run).where(Run.dataset_id == dataset.id, Run.name.like(args.runs))
        print(
            f"{'run':<48} {'round':>5} {'admitted':>8} {'look-alike':>10} {'target':>6} "
            f"{'other':>6}"
        )
        for run in session.scalars(query.order_by(Run.id)):
            mined = session.scalars(
                select(PoolExample).where(
                    PoolExample.run_id == run.id, PoolExample.score.is_not(None)
                )
            ).all()
            for number in sorted({example.round for example in mined}):
                places = Counter(
                    _place(example, images[example.image_id], lookalikes)
                    for example in mined
                    if example.round == number
                )
                print(
                    f"{run.name:<48} {number:>5} {sum(places.values()):>8} "
                    f"{places['look-alike']:>10} {places['target']:>6} {places['other']:>6}"
                )


def _place(example: PoolExample, image: Image, lookalikes: dict[str, list[tuple]]) -> str:
    if any(overlap_of_smaller(example.box, box) > 0.5 for box in lookalikes.get(image.path, [])):
        return "look-alike"
    if any(overlap_of_smaller(example.box, obj.box) > 0.5 for obj in image.objects):
        return "target"
    return "other"


if __name__ == "__main__":
    main()
