"""Typed SQLAlchemy 2 models of the store: datasets, images, objects, runs, rounds, the pool.

Boxes are stored as four float columns, xyxy in pixels of the original image (0-based, x2 and
y2 exclusive, so a box's width is x2 - x1). Times are timezone-aware UTC.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class ExampleKind(enum.StrEnum):
    """Where a pool example came from."""

    positive = "positive"  # an object's ground-truth box
    random = "random"  # a background window drawn at random
    hard = "hard"  # a false positive admitted by a mining pass


class RoundStatus(enum.StrEnum):
    pending = "pending"
    training = "training"
    mining = "mining"
    evaluating = "evaluating"
    done = "done"
    failed = "failed"


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    format: Mapped[str] = mapped_column(String(16))  # coco | voc
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="dataset")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("dataset_id", "file_name", name="uq_images_dataset_file"),
        Index("ix_images_dataset_split", "dataset_id", "split"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    # The name the annotations use (relative to the images folder) and where the file is now.
    file_name: Mapped[str] = mapped_column(String(1000))
    path: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(64))
    readable: Mapped[bool] = mapped_column(Boolean, default=True)
    unreadable_reason: Mapped[str | None] = mapped_column(Text, default=None)

    dataset: Mapped[Dataset] = relationship(back_populates="images")
    objects: Mapped[list[Object]] = relationship(
        back_populates="image", cascade="all, delete-orphan", order_by="Object.id"
    )


class Object(Base):
    """A ground-truth box with its class."""

    __tablename__ = "objects"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(200))
    # A COCO crowd region or a VOC "difficult" object: never a positive, never background,
    # and left out of evaluation.
    ignore: Mapped[bool] = mapped_column(Boolean, default=False)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)

    image: Mapped[Image] = relationship(back_populates="objects")

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


class Run(Base):
    """One bootstrap experiment: a dataset, a config, its rounds."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Why the run stopped adding rounds (rounds reached, low yield, no improvement), once it has.
    stop_reason: Mapped[str | None] = mapped_column(Text, default=None)

    dataset: Mapped[Dataset] = relationship()
    rounds: Mapped[list[Round]] = relationship(
        back_populates="run", order_by="Round.number", cascade="all, delete-orphan"
    )


class Round(Base):
    """Train, then mine, then evaluate; `metrics` holds the figures of all three."""

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("run_id", "number", name="uq_rounds_run_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[RoundStatus] = mapped_column(
        Enum(RoundStatus, native_enum=False, length=16), default=RoundStatus.pending
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)

    run: Mapped[Run] = relationship(back_populates="rounds")


class PoolExample(Base):
    """A training example: a box on an image, its label and where it came from."""

    __tablename__ = "pool_examples"
    __table_args__ = (
        Index("ix_pool_run_round", "run_id", "round"),
        Index("ix_pool_run_image", "run_id", "image_id"),
        Index("ix_pool_run_kind_score", "run_id", "kind", "score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    label: Mapped[int] = mapped_column(Integer)  # 1 object, 0 background
    kind: Mapped[ExampleKind] = mapped_column(Enum(ExampleKind, native_enum=False, length=16))
    round: Mapped[int] = mapped_column(Integer)  # the round that added it
    # The detector's score and loss when a mining pass found it; null for positives and
    # round-0 random negatives.
    score: Mapped[float | None] = mapped_column(Float, default=None)
    loss: Mapped[float | None] = mapped_column(Float, default=None)
    times_remined: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


class MinedShard(Base):
    """A shard of a round's mining pass whose examples are in the pool.

    Written in the transaction that admits the shard, so a shard is either fully admitted and
    recorded here, or neither: a resumed round skips exactly the shards listed.
    """

    __tablename__ = "mined_shards"
    __table_args__ = (
        UniqueConstraint("run_id", "round", "shard", name="uq_mined_shards_run_round_shard"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer)
    shard: Mapped[int] = mapped_column(Integer)
    images: Mapped[int] = mapped_column(Integer)  # images scored (readable ones)
    skipped_images: Mapped[int] = mapped_column(Integer, default=0)  # unreadable at mining time
    windows_scored: Mapped[int] = mapped_column(Integer)
    candidates: Mapped[int] = mapped_column(Integer)  # selected before dedupe against the pool
    admitted: Mapped[int] = mapped_column(Integer)
    remined: Mapped[int] = mapped_column(Integer)  # candidates already in the pool
    elapsed_s: Mapped[float] = mapped_column(Float)  # scoring time of the shard
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "round", name="uq_checkpoints_run_round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
