"""One bootstrap round end to end on a tiny demo dataset (a few seconds of training)."""

from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from hardmine.errors import HardmineError
from hardmine.pipeline import rounds
from hardmine.pipeline.config import RunConfig, StopConfig
from hardmine.storage.db import session_scope
from hardmine.storage.models import MinedShard, PoolExample, RoundStatus
from hardmine.storage.runs import get_run
from hardmine.storage.status import status_report
from tests.helpers import ingest_tiny_demo, tiny_run_config


def tiny_config(tmp_path: Path, **changes: object) -> RunConfig:
    return tiny_run_config(tmp_path, shard_images=5, **changes)


@pytest.fixture
def demo_engine(engine: Engine, tmp_path: Path) -> Engine:
    return ingest_tiny_demo(engine, tmp_path / "demo")


def _pool_rows(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(PoolExample))


def test_create_run_pools_every_positive_and_the_random_negatives(
    demo_engine: Engine, tmp_path: Path
) -> None:
    rounds.create_run(demo_engine, "r", tiny_config(tmp_path))
    with session_scope(demo_engine) as session:
        report = status_report(session, "r")
        dataset = report["datasets"][0]
    run = report["runs"][0]
    assert run["rounds"] == []
    assert run["config"]["train_split"] == "train" and run["config"]["eval_split"] == "test"
    assert _pool_rows(demo_engine) > 200
    assert dataset["splits"] == {"test": 6, "train": 12}


def test_two_rounds_grow_the_pool_and_record_every_metric(
    demo_engine: Engine, tmp_path: Path
) -> None:
    rounds.create_run(demo_engine, "r", tiny_config(tmp_path))
    reason = rounds.run_rounds(demo_engine, "r")
    assert reason == "completed 2 rounds"

    with session_scope(demo_engine) as session:
        run = status_report(session, "r")["runs"][0]
    assert [r["number"] for r in run["rounds"]] == [0, 1]
    assert all(r["status"] == "done" for r in run["rounds"])
    first, second = run["rounds"]
    assert first["pool"]["random"] == 200 and first["added"]["hard"] == first["metrics"]["admitted"]
    assert second["pool"]["hard"] == first["pool"]["hard"] + second["added"]["hard"]
    for key in (
        "ap",
        "ap50",
        "fp_per_image",
        "recall",
        "fp_per_image_at_recall",
        "lamr",
        "windows_scored",
        "windows_per_s",
        "admitted",
        "yield_per_1k",
    ):
        assert key in first["metrics"], key
    assert first["metrics"]["windows_scored"] > 0
    assert set(first["metrics"]["fp_per_image_at_recall"]) == {
        "0.3",
        "0.4",
        "0.5",
        "0.6",
        "0.7",
        "0.8",
    }
    assert run["stop_reason"] == "completed 2 rounds"


def test_round_trains_on_the_pool_before_its_own_mining(
    demo_engine: Engine, tmp_path: Path
) -> None:
    rounds.create_run(demo_engine, "r", tiny_config(tmp_path, rounds=1))
    rounds.run_rounds(demo_engine, "r")
    with session_scope(demo_engine) as session:
        run = get_run(session, "r")
        round_zero = run.rounds[0].metrics
        pooled = session.scalar(select(func.count()).select_from(PoolExample))
    # Round 0 trained on positives and random negatives only, not on what it mined.
    assert round_zero["train_examples"] == pooled - round_zero["admitted"]


def test_a_round_killed_between_shards_resumes_without_duplicates(
    demo_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds.create_run(demo_engine, "r", tiny_config(tmp_path, rounds=1))
    real_mine = rounds.mine_images
    calls = []

    def crash_on_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed while mining")
        return real_mine(*args, **kwargs)

    monkeypatch.setattr(rounds, "mine_images", crash_on_second_shard)
    with pytest.raises(RuntimeError, match="killed while mining"):
        rounds.run_round(demo_engine, "r")
    with session_scope(demo_engine) as session:
        run = get_run(session, "r")
        assert run.rounds[0].status is RoundStatus.failed
        shards_before = session.scalar(select(func.count()).select_from(MinedShard))
    assert shards_before == 1
    pool_after_crash = _pool_rows(demo_engine)

    monkeypatch.setattr(rounds, "mine_images", real_mine)
    rounds.run_round(demo_engine, "r")
    with session_scope(demo_engine) as session:
        run = get_run(session, "r")
        shards = session.scalars(select(MinedShard)).all()
        duplicates = session.execute(
            select(PoolExample.image_id, PoolExample.x1, PoolExample.y1, func.count())
            .where(PoolExample.kind == "hard")
            .group_by(PoolExample.image_id, PoolExample.x1, PoolExample.y1)
            .having(func.count() > 1)
        ).all()
    assert [r.status for r in run.rounds] == [RoundStatus.done]  # one round, recorded once
    assert sorted(s.shard for s in shards) == [0, 1, 2]  # 12 images in shards of 5
    assert duplicates == []
    admitted = sum(s.admitted for s in shards)
    assert _pool_rows(demo_engine) == pool_after_crash + admitted - shards[0].admitted
    assert run.rounds[0].metrics["admitted"] == admitted


def test_early_stop_on_low_yield_records_why(demo_engine: Engine, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, rounds=5, stop=StopConfig(min_yield_per_1k=1e9))
    rounds.create_run(demo_engine, "r", config)
    reason = rounds.run_rounds(demo_engine, "r")
    assert reason.startswith("mining yield")
    with session_scope(demo_engine) as session:
        run = get_run(session, "r")
        assert len(run.rounds) == 1 and run.stop_reason == reason


def test_stop_reason_on_a_metric_that_stops_improving() -> None:
    config = RunConfig(dataset="d", rounds=9, stop=StopConfig(patience=2, metric="ap50"))
    history = [{"ap50": 0.5}, {"ap50": 0.6}, {"ap50": 0.6}, {"ap50": 0.55}]
    assert rounds._stop_reason(config, history) == "ap50 did not improve for 2 rounds"
    assert rounds._stop_reason(config, history[:3]) is None


def test_run_names_are_unique(demo_engine: Engine, tmp_path: Path) -> None:
    rounds.create_run(demo_engine, "r", tiny_config(tmp_path))
    with pytest.raises(HardmineError, match="a run named 'r' exists"):
        rounds.create_run(demo_engine, "r", tiny_config(tmp_path))


def test_run_on_a_missing_split_names_the_splits_there_are(
    demo_engine: Engine, tmp_path: Path
) -> None:
    with pytest.raises(HardmineError, match=r"has no split 'val'"):
        rounds.create_run(demo_engine, "r", tiny_config(tmp_path, eval_split="val"))


def test_resnet18_backbone_trains_mines_and_evaluates_a_round(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    # The store is not this test's subject: SQLite only.
    demo_engine = ingest_tiny_demo(sqlite_engine, tmp_path / "demo")
    config = tiny_config(tmp_path, rounds=1, backbone="resnet18")
    rounds.create_run(demo_engine, "roi", replace(config, train=replace(config.train, steps=3)))
    rounds.run_rounds(demo_engine, "roi")
    with session_scope(demo_engine) as session:
        (round_,) = status_report(session, "roi")["runs"][0]["rounds"]
    assert round_["status"] == "done"
    assert round_["metrics"]["windows_scored"] > 0 and "ap50" in round_["metrics"]
