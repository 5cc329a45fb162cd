"""Runs, rounds, checkpoints and mined shards: the bookkeeping of a bootstrap experiment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from hardmine.errors import StoreError
from hardmine.storage.models import (
    Checkpoint,
    Dataset,
    Image,
    MinedShard,
    Round,
    RoundStatus,
    Run,
    utcnow,
)


def get_run(session: Session, name: str) -> Run:
    """The run called `name`, or a StoreError listing the runs there are."""
    run = session.scalar(select(Run).where(Run.name == name).options(selectinload(Run.rounds)))
    if run is None:
        known = session.scalars(select(Run.name).order_by(Run.name)).all()
        raise StoreError(
            f"no run named {name!r}; the store has {', '.join(known) or 'none'} "
            "(start one with `hardmine run`)"
        )
    return run


def add_run(session: Session, name: str, dataset: Dataset, config: dict[str, Any]) -> Run:
    """A new run; an error if the name is taken."""
    if session.scalar(select(Run.id).where(Run.name == name)) is not None:
        raise StoreError(
            f"a run named {name!r} exists; continue it with `hardmine round --run {name}` or "
            "pick another --name"
        )
    run = Run(name=name, dataset_id=dataset.id, config=config)
    session.add(run)
    session.flush()
    return run


def split_images(session: Session, dataset_id: int, splits: Sequence[str]) -> list[Image]:
    """The dataset's images in `splits` (readable or not), with their objects, by id."""
    query = (
        select(Image)
        .where(Image.dataset_id == dataset_id, Image.split.in_(list(splits)))
        .options(selectinload(Image.objects))
        .order_by(Image.id)
    )
    return list(session.scalars(query))


def images_by_id(session: Session, image_ids: Sequence[int]) -> dict[int, Image]:
    """The images with these ids, their objects loaded: {image_id: image}."""
    query = select(Image).where(Image.id.in_(list(image_ids))).options(selectinload(Image.objects))
    return {image.id: image for image in session.scalars(query)}


def image_paths(session: Session, image_ids: Sequence[int]) -> dict[int, str]:
    """Where the images with these ids are: {image_id: path}."""
    query = select(Image.id, Image.path).where(Image.id.in_(list(image_ids)))
    return dict(session.execute(query).all())


def dataset_splits(session: Session, dataset_id: int) -> list[str]:
    query = select(Image.split).where(Image.dataset_id == dataset_id).distinct()
    return sorted(session.scalars(query))


def open_round(session: Session, run: Run) -> Round:
    """The round to work on: the first one not done (resumed as it stands), else a new one."""
    unfinished = [r for r in run.rounds if r.status is not RoundStatus.done]
    if unfinished:
        return unfinished[0]
    number = max((r.number for r in run.rounds), default=-1) + 1
    round_ = Round(run_id=run.id, number=number, status=RoundStatus.pending, started_at=utcnow())
    session.add(round_)
    session.flush()
    return round_


def get_round(session: Session, run_id: int, number: int) -> Round:
    round_ = session.scalar(select(Round).where(Round.run_id == run_id, Round.number == number))
    if round_ is None:
        raise StoreError(f"run {run_id} has no round {number}")
    return round_


def set_round_status(session: Session, round_: Round, status: RoundStatus) -> None:
    round_.status = status
    if status is RoundStatus.done:
        round_.finished_at = utcnow()


def checkpoint_path(session: Session, run_id: int, number: int) -> str | None:
    query = select(Checkpoint.path).where(Checkpoint.run_id == run_id, Checkpoint.round == number)
    return session.scalar(query)


def record_checkpoint(session: Session, run_id: int, number: int, path: str) -> None:
    existing = session.scalar(
        select(Checkpoint).where(Checkpoint.run_id == run_id, Checkpoint.round == number)
    )
    if existing is None:
        session.add(Checkpoint(run_id=run_id, round=number, path=path))
    else:
        existing.path = path


def mined_shards(session: Session, run_id: int, number: int) -> list[MinedShard]:
    query = (
        select(MinedShard)
        .where(MinedShard.run_id == run_id, MinedShard.round == number)
        .order_by(MinedShard.shard)
    )
    return list(session.scalars(query))


def free_run_name(session: Session, base: str) -> str:
    """`base` if no run has it, else the first free `base-2`, `base-3`..."""
    taken = set(session.scalars(select(Run.name).where(Run.name.startswith(base))))
    if base not in taken:
        return base
    return next(f"{base}-{n}" for n in range(2, len(taken) + 3) if f"{base}-{n}" not in taken)
