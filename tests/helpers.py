"""Builders shared by the tests that run real rounds on a tiny demo dataset."""

from pathlib import Path

from sqlalchemy import Engine

from hardmine.miners.base import MiningConfig
from hardmine.models import TrainConfig
from hardmine.pipeline.config import RunConfig
from hardmine.pipeline.demo import DemoConfig, generate_demo
from hardmine.pipeline.ingest import ingest
from hardmine.storage.db import session_scope

TINY = DemoConfig(train_images=12, test_images=6)


def ingest_tiny_demo(engine: Engine, folder: Path) -> Engine:
    """12 train and 6 test demo images, ingested as dataset `demo`."""
    files = generate_demo(folder, seed=1, config=TINY)
    with session_scope(engine) as session:
        for split, path in files.annotations.items():
            ingest(session, path, "coco", images_dir=files.images_dir, name="demo", split=split)
    return engine


def tiny_run_config(tmp_path: Path, shard_images: int = 4, **changes: object) -> RunConfig:
    """Quick rounds: a barely trained detector and a low threshold, so mining finds plenty."""
    values: dict = dict(
        dataset="demo",
        rounds=2,
        random_negatives=200,
        positive_jitter=1,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        train=TrainConfig(steps=15, batch_size=16, device="cpu"),
        mining=MiningConfig(score_threshold=0.2, shard_images=shard_images, per_image_cap=5),
    )
    return RunConfig(**(values | changes))
