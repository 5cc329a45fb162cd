"""The `hardmine` command: parse, call one function, present.

User errors (bad input, a missing dataset, an unreachable database) print one message to stderr
and exit with status 1, without a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hardmine.errors import HardmineError

app = typer.Typer(
    name="hardmine",
    help="Hard negative mining for object detectors: ingest, run rounds, watch the pool grow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Piped output (logs, CI, tests) is not squeezed into 80 columns: tables stay whole.
out = Console() if Console().is_terminal else Console(width=200)
err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="HARDMINE_DB",
        help="SQLAlchemy URL of the store [default: sqlite:///./hardmine.db]",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


class DatasetFormat(StrEnum):
    coco = "coco"
    voc = "voc"


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic narrates every schema check and httpx every Prefect API call at INFO; hardmine
    # and Prefect log what matters themselves.
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="COCO annotation file, or VOC devkit folder.")],
    format: Annotated[DatasetFormat, typer.Option("--format", help="Annotation format.")],
    images: Annotated[
        Path | None, typer.Option("--images", help="COCO: folder the file names are relative to.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Dataset name in the store.")] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Split of these images (default: the dataset's).")
    ] = None,
    holdout: Annotated[
        float, typer.Option("--holdout", help="Held-out fraction when the dataset has no splits.")
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out draw.")] = 0,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest a COCO JSON or Pascal VOC dataset into the store."""
    from hardmine.pipeline.ingest import ingest as ingest_dataset
    from hardmine.storage.db import open_engine, session_scope

    with session_scope(open_engine(db)) as session:
        summary = ingest_dataset(
            session,
            path,
            format.value,
            images_dir=images,
            name=name,
            split=split,
            holdout=holdout,
            seed=seed,
        )
    _show_ingest(summary.to_dict(), as_json)


@app.command()
def demo(
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where the demo images and annotations go.")
    ] = Path("hardmine-demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the images and of the run.")] = 0,
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds of the demo run.")] = 3,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per round.")] = 400,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The embedded default: generate the demo dataset, ingest it, run its rounds on Prefect."""
    from hardmine.models import TrainConfig
    from hardmine.pipeline.config import RunConfig
    from hardmine.pipeline.demo import generate_demo
    from hardmine.pipeline.ingest import ingest as ingest_dataset
    from hardmine.pipeline.rounds import create_run
    from hardmine.storage.db import open_engine, session_scope
    from hardmine.storage.runs import free_run_name

    files = generate_demo(workdir, seed=seed)
    engine = open_engine(db)
    with session_scope(engine) as session:
        for split, annotation_file in files.annotations.items():
            ingest_dataset(
                session,
                annotation_file,
                "coco",
                images_dir=files.images_dir,
                name="demo",
                split=split,
            )
        # Each demo is a fresh run: demo, then demo-2, demo-3... on later calls.
        run_name = free_run_name(session, "demo")
    config = RunConfig(dataset="demo", rounds=rounds, seed=seed, train=TrainConfig(steps=steps))
    checkpoints = str((workdir / "checkpoints" / run_name).resolve())
    create_run(engine, run_name, replace(config, checkpoint_dir=checkpoints))
    _bootstrap(engine, run_name, "thread", None, as_json)


@app.command()
def status(
    run: Annotated[str | None, typer.Option("--run", help="Show only this run.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Datasets and runs; per round the pool by kind, what it added, and its metrics."""
    from hardmine.storage.db import open_engine, session_scope
    from hardmine.storage.status import status_report

    with session_scope(open_engine(db)) as session:
        report = status_report(session, run)
    _show_status(report, as_json)


class TaskRunner(StrEnum):
    thread = "thread"
    dask = "dask"


TaskRunnerOption = Annotated[
    TaskRunner,
    typer.Option("--task-runner", help="Where mining shards run: threads, or a Dask cluster."),
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option(
        "--dask-address", help="tcp://HOST:PORT of a Dask scheduler [default: a local cluster]"
    ),
]


class Strategy(StrEnum):
    threshold = "threshold"
    topk = "topk"
    random = "random"


class Loss(StrEnum):
    ce = "ce"
    focal = "focal"
    ohem = "ohem"


@app.command()
def run(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name in the store.")],
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds to run (round 0 first).")] = 3,
    name: Annotated[
        str | None, typer.Option("--name", help="Run name [default: DATASET-STRATEGY-LOSS-sSEED]")
    ] = None,
    loss: Annotated[Loss, typer.Option("--loss", help="Training loss.")] = Loss.ce,
    strategy: Annotated[
        Strategy, typer.Option("--strategy", help="Which background windows become negatives.")
    ] = Strategy.threshold,
    train_split: Annotated[
        str | None, typer.Option("--train-split", help="Split trained on and mined.")
    ] = None,
    eval_split: Annotated[
        str | None,
        typer.Option("--eval-split", help="Held-out split [default: val/test, else 20%]"),
    ] = None,
    classes: Annotated[
        list[str] | None, typer.Option("--class", help="Object class that is positive (repeat).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seeds sampling, training and mining.")] = 0,
    backbone: Annotated[
        str, typer.Option("--backbone", help="windownet (dense) or resnet18 (RoIAlign head).")
    ] = "windownet",
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Local weights to start from.")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per round.")] = 400,
    retrain: Annotated[
        str, typer.Option("--retrain", help="scratch or finetune, for rounds after 0.")
    ] = "scratch",
    score_threshold: Annotated[
        float, typer.Option("--score-threshold", help="threshold strategy: score floor, 0-1.")
    ] = 0.5,
    topk: Annotated[int, typer.Option("--topk", help="topk strategy: windows per image.")] = 10,
    per_image_cap: Annotated[
        int, typer.Option("--per-image-cap", help="Most hard negatives per image and round.")
    ] = 20,
    per_round_cap: Annotated[
        int, typer.Option("--per-round-cap", help="Most hard negatives per round.")
    ] = 2000,
    max_object_cover: Annotated[
        float,
        typer.Option(
            "--max-object-cover",
            help="Background windows may have at most this fraction covered by an object (1: off).",
        ),
    ] = 1.0,
    random_negatives: Annotated[
        int, typer.Option("--random-negatives", help="Random background windows in round 0.")
    ] = 2000,
    min_yield: Annotated[
        float, typer.Option("--min-yield", help="Stop when admitted per 1k windows falls under.")
    ] = 0.0,
    patience: Annotated[
        int, typer.Option("--patience", help="Stop after this many rounds without AP50 gain.")
    ] = 0,
    task_runner: TaskRunnerOption = TaskRunner.thread,
    dask_address: DaskAddressOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a bootstrap run and execute its rounds through the `bootstrap` flow."""
    from hardmine.miners.base import MiningConfig
    from hardmine.models import LossConfig, TrainConfig
    from hardmine.pipeline.config import RunConfig, StopConfig

    config = RunConfig(
        dataset=dataset,
        rounds=rounds,
        train_split=train_split,
        eval_split=eval_split,
        classes=tuple(classes or ()),
        random_negatives=random_negatives,
        retrain=retrain,
        backbone=backbone,
        weights=str(weights) if weights else None,
        seed=seed,
        train=TrainConfig(steps=steps, device=device, loss=LossConfig(name=loss.value)),
        mining=MiningConfig(
            strategy=strategy.value,
            score_threshold=score_threshold,
            topk=topk,
            per_image_cap=per_image_cap,
            per_round_cap=per_round_cap,
            max_object_cover=max_object_cover,
        ),
        stop=StopConfig(min_yield_per_1k=min_yield, patience=patience),
    )
    from hardmine.pipeline.rounds import create_run
    from hardmine.storage.db import open_engine

    run_name = name or f"{dataset}-{strategy.value}-{loss.value}-s{seed}"
    engine = open_engine(db)
    create_run(engine, run_name, config)
    _bootstrap(engine, run_name, task_runner.value, dask_address, as_json)


@app.command(name="round")
def round_command(
    run: Annotated[str, typer.Option("--run", help="Name of an existing run.")],
    task_runner: TaskRunnerOption = TaskRunner.thread,
    dask_address: DaskAddressOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """One more mining round of an existing run (or finish an interrupted one), on Prefect."""
    from hardmine.flows.rounds import mining_round, set_progress
    from hardmine.storage.db import database_url, open_engine

    engine = open_engine(db)
    set_progress(_progress_bar())
    with _PROGRESS:
        mining_round(run, database_url(db), task_runner.value, dask_address)
    _show_run(engine, run, as_json)


@app.command()
def serve(
    run: Annotated[str, typer.Option("--run", help="Name of an existing run.")],
    cron: Annotated[
        str | None, typer.Option("--cron", help="Cron schedule, e.g. '0 2 * * *'.")
    ] = None,
    interval: Annotated[
        float | None, typer.Option("--interval", help="Seconds between scheduled rounds.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Serve a scheduled deployment of the mining round (runs until interrupted)."""
    from hardmine.flows.rounds import serve_rounds
    from hardmine.storage.db import database_url, open_engine, session_scope
    from hardmine.storage.runs import get_run

    if (cron is None) == (interval is None):
        raise HardmineError("serve needs exactly one of --cron EXPR and --interval SECONDS")
    if interval is not None and interval <= 0:
        raise HardmineError(f"--interval must be a positive number of seconds, got {interval}")
    with session_scope(open_engine(db)) as session:
        get_run(session, run)
    serve_rounds(run, database_url(db), cron=cron, interval=interval)


@app.command()
def dashboard(
    db: DbOption = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; 0.0.0.0 opens it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 8050,
    missing_label_score: Annotated[
        float,
        typer.Option(
            "--missing-label-score",
            help="Score (0-1] from which a mined negative is shown as a possible missing label.",
        ),
    ] = 0.95,
) -> None:
    """Serve the read-only web dashboard of the store's runs (runs until interrupted)."""
    from hardmine.dashboard.app import check_missing_label_score, serve

    check_missing_label_score(missing_label_score, "--missing-label-score")
    serve(db, host=host, port=port, missing_label_score=missing_label_score)


def _bootstrap(
    engine: Any, run_name: str, task_runner: str, dask_address: str | None, as_json: bool
) -> None:
    """Run the `bootstrap` flow under progress bars, then show the run's table."""
    from hardmine.flows.rounds import bootstrap, set_progress

    set_progress(_progress_bar())
    with _PROGRESS:
        bootstrap(
            run_name, engine.url.render_as_string(hide_password=False), task_runner, dask_address
        )
    _show_run(engine, run_name, as_json)


def _show_run(engine: Any, run_name: str, as_json: bool) -> None:
    from hardmine.storage.db import session_scope
    from hardmine.storage.status import status_report

    with session_scope(engine) as session:
        report = status_report(session, run_name)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        out.print(rounds_table(report["runs"][0]))


_PROGRESS = Progress(
    TextColumn("{task.description}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
    console=err,
    transient=True,
)


def _progress_bar() -> Any:
    """A progress callback drawing one bar per stage of the current round."""
    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in bars or done <= 1:
            if stage in bars:
                _PROGRESS.remove_task(bars[stage])
            bars[stage] = _PROGRESS.add_task(stage, total=total)
        _PROGRESS.update(bars[stage], completed=done, total=total)

    return update


# ---------------------------------------------------------------------------------------------
# Presentation


def _show_ingest(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"dataset {summary['dataset']} ({summary['format']})")
    for column in ("images", "objects", "background-only", "unreadable", "added", "splits"):
        table.add_column(column, justify="right" if column != "splits" else "left")
    splits = ", ".join(f"{name} {count}" for name, count in summary["splits"].items())
    table.add_row(
        str(summary["images"]),
        str(summary["objects"]),
        str(summary["background_only"]),
        str(len(summary["unreadable"])),
        str(summary["added_images"]),
        splits,
    )
    out.print(table)
    for item in summary["unreadable"]:
        out.print(f"unreadable: {item['file']}: {item['reason']}")
    if summary["skipped_unlisted"]:
        out.print(f"skipped {summary['skipped_unlisted']} annotations that no split file lists")


def _show_status(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    datasets = Table(title="datasets")
    for column in (
        "name",
        "format",
        "images",
        "objects",
        "background-only",
        "unreadable",
        "splits",
    ):
        datasets.add_column(column)
    for d in report["datasets"]:
        splits = ", ".join(f"{name} {count}" for name, count in d["splits"].items())
        datasets.add_row(
            d["name"],
            d["format"],
            str(d["images"]),
            str(d["objects"]),
            str(d["background_only"]),
            str(d["unreadable"]),
            splits,
        )
    out.print(datasets)
    if not report["runs"]:
        out.print("no runs yet")
    for run in report["runs"]:
        out.print(rounds_table(run))


def rounds_table(run: dict[str, Any]) -> Table:
    """The per-round table of a run: pool by kind, what the round added, its metrics."""
    table = Table(title=f"run {run['name']} on {run['dataset']}")
    columns = ("round", "status", "positive", "random", "hard", "added", "AP", "AP50", "FP/img")
    for column in (*columns, "recall", "LAMR", "windows/s", "yield/1k"):
        table.add_column(column, justify="right")
    for r in run["rounds"]:
        m = r["metrics"]
        table.add_row(
            str(r["number"]),
            r["status"],
            *(str(r["pool"][kind]) for kind in ("positive", "random", "hard")),
            str(sum(r["added"].values())),
            *(_number(m.get(key)) for key in ("ap", "ap50", "fp_per_image", "recall", "lamr")),
            _number(m.get("windows_per_s"), 0),
            _number(m.get("yield_per_1k"), 2),
        )
    if run.get("stop_reason"):
        table.caption = f"stopped: {run['stop_reason']}"
    return table


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def main() -> None:
    """Console-script entry point: user errors become one line on stderr and exit status 1."""
    try:
        app()
    except HardmineError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
