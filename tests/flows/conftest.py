"""Prefect's test harness, started once per test session (about 20 s on 2 cores)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

import hardmine.flows  # noqa: F401  (offline defaults before Prefect loads its settings)
from hardmine.miners.base import MiningConfig
from hardmine.models import TrainConfig
from hardmine.pipeline.config import RunConfig
from hardmine.pipeline.demo import DemoConfig, generate_demo
from hardmine.pipeline.ingest import ingest
from hardmine.storage.db import session_scope

TINY = DemoConfig(train_images=12, test_images=6)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def tiny_run_config(tmp_path: Path, **changes: object) -> RunConfig:
    """Two quick rounds: a barely trained detector and a low threshold, so mining finds plenty."""
    values: dict = dict(
        dataset="demo",
        rounds=2,
        random_negatives=200,
        positive_jitter=1,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        train=TrainConfig(steps=15, batch_size=16, device="cpu"),
        mining=MiningConfig(score_threshold=0.2, shard_images=4, per_image_cap=5),
    )
    return RunConfig(**(values | changes))


@pytest.fixture
def demo_store(sqlite_engine: Engine, tmp_path: Path) -> Engine:
    files = generate_demo(tmp_path / "demo", seed=1, config=TINY)
    with session_scope(sqlite_engine) as session:
        for split, path in files.annotations.items():
            ingest(session, path, "coco", images_dir=files.images_dir, name="demo", split=split)
    return sqlite_engine
