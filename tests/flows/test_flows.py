"""The flows under Prefect's test harness: rounds, artifacts, the Dask task runner."""

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from hardmine.errors import HardmineError
from hardmine.flows.rounds import _task_runner, artifact_key, bootstrap, mining_round
from hardmine.pipeline.rounds import create_run
from hardmine.storage.db import session_scope
from hardmine.storage.models import PoolExample
from hardmine.storage.runs import get_run
from hardmine.storage.status import status_report
from tests.helpers import tiny_run_config

pytestmark = pytest.mark.slow


def _pool(engine: Engine, run: str, up_to_round: int | None = None) -> list[tuple]:
    with session_scope(engine) as session:
        run_id = get_run(session, run).id
        query = select(
            PoolExample.image_id,
            PoolExample.x1,
            PoolExample.y1,
            PoolExample.x2,
            PoolExample.y2,
            PoolExample.kind,
            PoolExample.round,
            PoolExample.score,
        ).where(PoolExample.run_id == run_id)
        if up_to_round is not None:
            query = query.where(PoolExample.round <= up_to_round)
        return sorted(
            (
                i,
                round(x1, 3),
                round(y1, 3),
                round(x2, 3),
                round(y2, 3),
                str(k),
                r,
                None if s is None else round(s, 4),
            )
            for i, x1, y1, x2, y2, k, r, s in session.execute(query)
        )


def test_bootstrap_runs_two_rounds_grows_the_pool_and_publishes_artifacts(
    prefect_harness: None, demo_store: Engine, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    url = demo_store.url.render_as_string(hide_password=False)
    create_run(demo_store, "flows", tiny_run_config(tmp_path))
    assert bootstrap("flows", url) == "completed 2 rounds"

    with session_scope(demo_store) as session:
        rounds = status_report(session, "flows")["runs"][0]["rounds"]
    assert [r["status"] for r in rounds] == ["done", "done"]
    assert rounds[0]["added"]["hard"] > 0
    assert rounds[1]["pool"]["hard"] == rounds[0]["pool"]["hard"] + rounds[1]["added"]["hard"]

    with get_client(sync_client=True) as client:

        def versions(what: str) -> list:
            key = artifact_key("flows", what)
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
            return sorted(found, key=lambda artifact: artifact.created)

        tables = versions("pool-growth")
        summaries = versions("round-summary")
        progress = versions("mining-progress")
    # One table version per round, the last holding both rounds with their pool sizes.
    assert len(tables) == 2
    last_table = (
        json.loads(tables[-1].data) if isinstance(tables[-1].data, str) else tables[-1].data
    )
    assert [row["round"] for row in last_table] == [0, 1]
    assert last_table[1]["hard"] == rounds[1]["pool"]["hard"]
    assert len(summaries) == 2 and "round 1" in summaries[-1].data
    assert len(progress) == 2 and all(p.data == 100.0 for p in progress)


def test_dask_task_runner_ends_with_the_same_pool_as_threads(
    prefect_harness: None, demo_store: Engine, tmp_path: Path
) -> None:
    url = demo_store.url.render_as_string(hide_password=False)
    for name, runner in (("threads", "thread"), ("dask", "dask")):
        create_run(demo_store, name, tiny_run_config(tmp_path / name, rounds=1))
        mining_round(name, url, runner)

    threads, dask = _pool(demo_store, "threads"), _pool(demo_store, "dask")
    assert any(row[5] == "hard" for row in threads)
    assert dask == threads


def test_task_runner_names_are_checked() -> None:
    with pytest.raises(HardmineError, match="--task-runner must be one of"):
        _task_runner("ray", None)
    with pytest.raises(HardmineError, match="--dask-address needs --task-runner dask"):
        _task_runner("thread", "tcp://127.0.0.1:8786")


def test_artifact_keys_are_lowercase_dashes() -> None:
    assert artifact_key("Demo_Run 2", "pool-growth") == "demo-run-2-pool-growth"
