"""The `bootstrap` and `mining_round` flows: thin Prefect wrappers over `hardmine.pipeline`.

A round is a list of tasks: open (or resume) the round, train, mine the shards (mapped, on the
thread pool or a Dask cluster), admit each shard, evaluate, publish artifacts, decide whether to
stop. Tasks that touch the store or the files retry; training and scoring do not (a retry would
only repeat the same computation), and they hold the machine's device lock, so training and
mining never share a GPU.
"""

import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import Engine

import hardmine.flows  # noqa: F401  (offline defaults before Prefect loads its settings)
from hardmine.errors import HardmineError
from hardmine.models import resolve_device
from hardmine.pipeline import rounds
from hardmine.pipeline.rounds import RoundRef, ShardFindings, ShardReport
from hardmine.storage.db import database_url, open_engine, session_scope
from hardmine.storage.locks import file_lock, run_lock
from hardmine.storage.status import status_report

TASK_RUNNERS = ("thread", "dask")

# Progress of the round's stages in this process (the CLI draws bars from it). Tasks running in
# other processes (Dask workers) report through Prefect's logs and artifacts only.
_progress: rounds.Progress = rounds.no_progress


def set_progress(callback: rounds.Progress) -> None:
    """Have tasks in this process report (stage, done, total) to `callback`."""
    global _progress
    _progress = callback


@lru_cache(maxsize=8)
def _engine(db: str) -> Engine:
    """One engine per store and process (tasks may run in Dask worker processes)."""
    return open_engine(db)


@contextmanager
def device_slot() -> Iterator[None]:
    """This machine's device, one holder at a time: training and mining never share a GPU.

    A file lock per host and device, released by the OS if its holder dies, where a Prefect
    concurrency slot would stay taken (see `hardmine.storage.locks`).
    """
    device = resolve_device("auto")
    index = "" if device.index is None else str(device.index)
    with file_lock(Path(tempfile.gettempdir()) / f"hardmine-device-{device.type}{index}.lock"):
        yield


def artifact_key(run: str, what: str) -> str:
    """An artifact key for a run: lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", run.lower()).strip("-")
    return f"{slug}-{what}"


# ---------------------------------------------------------------------------------------------
# Tasks


@task(retries=2, retry_delay_seconds=3)
def open_round_task(db: str, run: str) -> RoundRef:
    return rounds.open_round(_engine(db), run)


@task
def train_task(db: str, ref: RoundRef) -> str:
    with device_slot():
        return rounds.train_round(_engine(db), ref, _progress)


@task(retries=2, retry_delay_seconds=3)
def shards_task(db: str, ref: RoundRef) -> list[list[int]]:
    rounds.mark_round(_engine(db), ref, rounds.RoundStatus.mining)
    return rounds.mining_shards(_engine(db), ref.run)


@task
def mine_task(
    db: str, ref: RoundRef, shard: int, image_ids: list[int], total_images: int
) -> ShardFindings | ShardReport:
    with device_slot():
        return rounds.score_shard(_engine(db), ref, shard, image_ids, total_images)


@task(retries=2, retry_delay_seconds=3)
def admit_task(db: str, findings: ShardFindings | ShardReport) -> ShardReport:
    if isinstance(findings, ShardReport):
        return findings
    return rounds.admit_shard(_engine(db), findings)


@task
def evaluate_task(db: str, ref: RoundRef) -> dict[str, Any]:
    with device_slot():
        return rounds.evaluate_round(_engine(db), ref, _progress)


@task(retries=2, retry_delay_seconds=3)
def publish_task(db: str, ref: RoundRef) -> None:
    """Pool growth as a keyed table (versioned round by round), the round as markdown."""
    with session_scope(_engine(db)) as session:
        run = status_report(session, ref.run)["runs"][0]
    create_table_artifact(
        key=artifact_key(ref.run, "pool-growth"),
        table=[_growth_row(r) for r in run["rounds"]],
        description=f"Pool growth and held-out quality per round of run {ref.run}",
    )
    this_round = next(r for r in run["rounds"] if r["number"] == ref.number)
    create_markdown_artifact(
        key=artifact_key(ref.run, "round-summary"),
        markdown=_round_markdown(ref.run, this_round),
        description=f"Round {ref.number} of run {ref.run}",
    )


@task(retries=2, retry_delay_seconds=3)
def stop_task(db: str, run: str) -> str | None:
    return rounds.should_stop(_engine(db), run)


def _growth_row(round_: dict[str, Any]) -> dict[str, Any]:
    metrics = round_["metrics"]
    return {
        "round": round_["number"],
        "status": round_["status"],
        **{kind: count for kind, count in round_["pool"].items()},
        "added": sum(round_["added"].values()),
        **{key: metrics.get(key) for key in ("ap50", "fp_per_image", "lamr", "yield_per_1k")},
    }


def _round_markdown(run: str, round_: dict[str, Any]) -> str:
    metrics = round_["metrics"]
    lines = [
        f"# Run `{run}`, round {round_['number']}",
        "",
        f"Pool after the round: {round_['pool']}; added: {round_['added']}.",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in (
        "ap",
        "ap50",
        "fp_per_image",
        "recall",
        "lamr",
        "windows_scored",
        "windows_per_s",
        "admitted",
        "yield_per_1k",
        "train_elapsed_s",
        "elapsed_s",
    ):
        lines.append(f"| {key} | {metrics.get(key)} |")
    at_recall = metrics.get("fp_per_image_at_recall") or {}
    lines.append(f"| fp_per_image_at_recall | {at_recall} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Flows


@flow(name="mine-shards")
def mine_shards(db: str, ref: RoundRef, shards: Sequence[list[int]]) -> list[ShardReport]:
    """Score every shard (mapped on this flow's task runner) and admit each as it finishes."""
    total = sum(len(shard) for shard in shards)
    progress = create_progress_artifact(
        0.0,
        key=artifact_key(ref.run, "mining-progress"),
        description=f"Images mined in round {ref.number} of run {ref.run}",
    )
    found = mine_task.map(unmapped(db), unmapped(ref), range(len(shards)), shards, total)
    admitted = [admit_task.submit(db, findings) for findings in found]

    reports, done = [], 0
    for future in as_completed(admitted):
        report = future.result()
        reports.append(report)
        done += report.images
        update_progress_artifact(progress, 100.0 * done / max(total, 1))
        _progress("mine", done, total)
    return sorted(reports, key=lambda report: report.shard)


@flow(name="mining-round")
def mining_round(
    run: str,
    db: str | None = None,
    task_runner: str = "thread",
    dask_address: str | None = None,
) -> dict[str, Any]:
    """One round of `run`: train, mine, admit, evaluate, publish. Resumes an unfinished round."""
    db = database_url(db)
    logger = get_run_logger()
    # One round of a run at a time: a schedule that fires while a round still runs (or a
    # `hardmine round` by hand) waits here instead of racing it.
    with run_lock(_engine(db), run):
        return _one_round(run, db, task_runner, dask_address, logger)


def _one_round(
    run: str, db: str, task_runner: str, dask_address: str | None, logger: Any
) -> dict[str, Any]:
    ref = open_round_task(db, run)
    try:
        train_task(db, ref)
        shards = shards_task(db, ref)
        runner = _task_runner(task_runner, dask_address)
        reports = mine_shards.with_options(task_runner=runner)(db, ref, shards)
        metrics = evaluate_task(db, ref)
    except BaseException:
        rounds.mark_round(_engine(db), ref, rounds.RoundStatus.failed)
        raise
    publish_task(db, ref)

    admitted = sum(report.admitted for report in reports)
    logger.info(
        "round=%d run=%s admitted=%d fp_per_image=%s ap50=%s",
        ref.number,
        run,
        admitted,
        metrics.get("fp_per_image"),
        metrics.get("ap50"),
    )
    return metrics


@flow(name="bootstrap")
def bootstrap(
    run: str,
    db: str | None = None,
    task_runner: str = "thread",
    dask_address: str | None = None,
) -> str:
    """Rounds of `run` until it stops (its round count, low yield or no improvement)."""
    db = database_url(db)
    while True:
        mining_round(run, db, task_runner, dask_address)
        reason = stop_task(db, run)
        if reason:
            get_run_logger().info("run=%s stopped: %s", run, reason)
            return reason


def _task_runner(name: str, dask_address: str | None) -> Any:
    if name not in TASK_RUNNERS:
        raise HardmineError(f"--task-runner must be one of {TASK_RUNNERS}, got {name!r}")
    if name == "thread":
        if dask_address:
            raise HardmineError("--dask-address needs --task-runner dask")
        return ThreadPoolTaskRunner(max_workers=2)

    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    # A local cluster of 2 single-threaded worker processes.
    return DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1})


def serve_rounds(run: str, db: str, cron: str | None = None, interval: float | None = None) -> None:
    """Serve a deployment of `mining_round` for `run` on a schedule (blocks until stopped).

    Needs a Prefect API: a server named by PREFECT_API_URL, or Prefect's ephemeral one.
    """
    mining_round.serve(
        name=artifact_key(run, "rounds"),
        parameters={"run": run, "db": db},
        cron=cron,
        interval=interval,
        limit=1,
        tags=["hardmine"],
        description=f"Scheduled mining rounds of hardmine run {run}",
    )
