"""Datasets, images and objects: storing an ingested dataset and reading it back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from hardmine.errors import IngestError, StoreError
from hardmine.storage.models import Dataset, Image, Object


class ObjectLike(Protocol):
    category: str
    box: tuple[float, float, float, float]
    ignore: bool


class ImageLike(Protocol):
    file_name: str
    path: object
    width: int
    height: int
    split: str
    objects: Sequence[ObjectLike]
    readable: bool
    unreadable_reason: str | None


def store_images(session: Session, name: str, format: str, images: Sequence[ImageLike]) -> int:
    """Add `images` to dataset `name` (created if new); returns how many were new.

    An image already stored under the same file name must match exactly (split, size, objects):
    ingesting the same files again changes nothing, and changed annotations are an error rather
    than a silent overwrite of what runs were trained on.
    """
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        dataset = Dataset(name=name, format=format)
        session.add(dataset)
        session.flush()
    elif dataset.format != format:
        raise IngestError(
            f"dataset {name!r} was ingested as {dataset.format}, not {format}; pick another --name"
        )

    stored = {
        image.file_name: image
        for image in session.scalars(
            select(Image).where(Image.dataset_id == dataset.id).options(selectinload(Image.objects))
        )
    }
    new = []
    for image in images:
        existing = stored.get(image.file_name)
        if existing is None:
            new.append(_new_image(dataset.id, image))
        else:
            _check_same(name, existing, image)
    session.add_all(new)
    session.flush()
    return len(new)


def _new_image(dataset_id: int, image: ImageLike) -> Image:
    return Image(
        dataset_id=dataset_id,
        file_name=image.file_name,
        path=str(image.path),
        width=image.width,
        height=image.height,
        split=image.split,
        readable=image.readable,
        unreadable_reason=image.unreadable_reason,
        objects=[
            Object(
                category=o.category,
                ignore=o.ignore,
                x1=o.box[0],
                y1=o.box[1],
                x2=o.box[2],
                y2=o.box[3],
            )
            for o in image.objects
        ],
    )


def _check_same(name: str, existing: Image, image: ImageLike) -> None:
    def objects_of(items: Sequence) -> list[tuple]:
        return sorted((o.category, o.ignore, *(round(v, 3) for v in o.box)) for o in items)

    differences = []
    if existing.split != image.split:
        differences.append(f"split {existing.split} -> {image.split}")
    if (existing.width, existing.height) != (image.width, image.height):
        differences.append("image size")
    if objects_of(existing.objects) != objects_of(image.objects):
        differences.append("objects")
    if differences:
        raise IngestError(
            f"image {image.file_name} is already in dataset {name!r} with different "
            f"{', '.join(differences)}; ingest the changed annotations under a new --name"
        )


def get_dataset(session: Session, name: str) -> Dataset:
    """The dataset called `name`, or a StoreError listing the ones there are."""
    dataset = session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        known = session.scalars(select(Dataset.name).order_by(Dataset.name)).all()
        raise StoreError(
            f"no dataset named {name!r}; the store has {', '.join(known) or 'none'} "
            "(add one with `hardmine ingest`)"
        )
    return dataset


def dataset_overview(session: Session) -> list[dict]:
    """Per dataset: images, objects, background-only and unreadable images, images per split."""
    overview = []
    for dataset in session.scalars(select(Dataset).order_by(Dataset.name)):
        splits = dict(
            session.execute(
                select(Image.split, func.count())
                .where(Image.dataset_id == dataset.id)
                .group_by(Image.split)
                .order_by(Image.split)
            ).all()
        )
        objects_per_image = (
            select(Image.id, Image.readable, func.count(Object.id).label("objects"))
            .outerjoin(Object, Object.image_id == Image.id)
            .where(Image.dataset_id == dataset.id)
            .group_by(Image.id, Image.readable)
            .subquery()
        )
        rows = session.execute(
            select(objects_per_image.c.readable, objects_per_image.c.objects)
        ).all()
        overview.append(
            {
                "name": dataset.name,
                "format": dataset.format,
                "images": len(rows),
                "objects": sum(count for _, count in rows),
                "background_only": sum(1 for _, count in rows if count == 0),
                "unreadable": sum(1 for readable, _ in rows if not readable),
                "splits": splits,
            }
        )
    return overview
