"""One bootstrap round as plain Python: train, mine, evaluate, record.

Each step is a function of (engine, run name, round number) that reads what it needs from the
store and writes its result back in its own transaction, so the steps can run as Prefect tasks,
in other processes, or again after a crash:

- `create_run`: the run and its round-0 pool (positives, random background windows).
- `open_round`: the first round not done (a crashed one is resumed), else a new one.
- `train_round`: train on the pool as it stood before this round's mining; checkpoint.
- `mine_shard`: score one shard of the mining images, admit its hard negatives atomically
  together with the shard's record; a shard already recorded is skipped.
- `evaluate_round`: detect on the held-out images, record the round's metrics once.
- `should_stop`: whether the run ends here, and why.

`run_rounds` strings them together for the CLI and tests.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hardmine.errors import HardmineError
from hardmine.miners.base import shard_quota
from hardmine.miners.detect import detect
from hardmine.miners.mine import MiningImage, decode_rgb
from hardmine.miners.mine import mine_shard as mine_images
from hardmine.miners.registry import build_strategy
from hardmine.miners.windows import random_background_windows, window_shapes
from hardmine.models import (
    RoITrainingSet,
    RoIWindowNet,
    TrainingSet,
    build_crops,
    build_model,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    train,
)
from hardmine.pipeline.config import RunConfig
from hardmine.pipeline.evaluate import EvalImage, evaluate_detections
from hardmine.pipeline.ingest import holdout_split
from hardmine.storage import pool, runs
from hardmine.storage.datasets import get_dataset
from hardmine.storage.db import session_scope
from hardmine.storage.locks import run_lock
from hardmine.storage.models import ExampleKind, Image, MinedShard, RoundStatus, Run

log = logging.getLogger(__name__)

# Called as work advances: (stage, done, total), stage "train" | "mine" | "evaluate".
Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# The run and its images


def create_run(engine: Engine, name: str, config: RunConfig) -> None:
    """Create run `name` with its round-0 pool: every positive and seeded random negatives."""
    with session_scope(engine) as session:
        dataset = get_dataset(session, config.dataset)
        config = _resolve_splits(session, dataset.id, config)
        train_images = [i for i in _role_images(session, dataset.id, config, "train") if i.readable]
        eval_images = _role_images(session, dataset.id, config, "eval")
        if not train_images or not eval_images:
            raise HardmineError(
                f"run {name!r} needs readable images to train on and to evaluate on; split "
                f"{config.train_split!r} gives {len(train_images)} and the held-out images "
                f"{len(eval_images)}: pick other --train-split/--eval-split"
            )

        positives = _positives(train_images, config.classes)
        if not positives:
            raise HardmineError(
                f"the training images of {config.dataset!r} hold no objects of classes "
                f"{list(config.classes) or 'any'}; check --class or ingest annotations"
            )
        object_boxes = np.array([box for _, box in positives], dtype=np.float64)
        shapes = window_shapes(config.windows, object_boxes)

        stored = config.to_dict() | {"window_shapes": [list(s) for s in shapes]}
        run = runs.add_run(session, name, dataset, stored)
        randoms = _random_negatives(train_images, shapes, config)
        pool.admit(session, run.id, _initial_examples(positives, randoms))
    log.info(
        "run=%s dataset=%s positives=%d random=%d window_shapes=%d",
        name,
        config.dataset,
        len(positives),
        len(randoms),
        len(shapes),
    )


def run_config(run: Run) -> tuple[RunConfig, list[tuple[float, float]]]:
    """The run's config and its window shapes (fixed when the run was created)."""
    stored = dict(run.config)
    shapes = [tuple(s) for s in stored.pop("window_shapes")]
    return RunConfig.from_dict(stored), shapes


def _resolve_splits(session: Session, dataset_id: int, config: RunConfig) -> RunConfig:
    splits = runs.dataset_splits(session, dataset_id)
    train_split = config.train_split or ("train" if "train" in splits else None)
    if train_split is None or train_split not in splits:
        raise HardmineError(
            f"dataset {config.dataset!r} has splits {splits}; pass --train-split with one of them"
        )
    eval_split = config.eval_split
    if eval_split is None:
        eval_split = next((s for s in ("val", "test") if s in splits), None)
    if eval_split is not None and eval_split not in splits:
        raise HardmineError(f"dataset {config.dataset!r} has no split {eval_split!r}: {splits}")
    if eval_split == train_split:
        raise HardmineError(f"--eval-split must differ from --train-split ({train_split})")
    return replace(config, train_split=train_split, eval_split=eval_split)


def _role_images(session: Session, dataset_id: int, config: RunConfig, role: str) -> list[Image]:
    """Training ("train") or held-out ("eval") images of a run, by id.

    Without an eval split, a seeded `holdout` fraction of the training split is held out.
    """
    if config.eval_split is not None:
        split = config.train_split if role == "train" else config.eval_split
        return runs.split_images(session, dataset_id, [split])
    images = runs.split_images(session, dataset_id, [config.train_split])
    held_out = {
        i.id for i in images if holdout_split(i.file_name, config.holdout, config.seed) == "test"
    }
    return [i for i in images if (i.id in held_out) == (role == "eval")]


def _positives(images: Sequence[Image], classes: Sequence[str]) -> list[tuple[int, tuple]]:
    return [
        (image.id, obj.box)
        for image in images
        for obj in image.objects
        if not obj.ignore and (not classes or obj.category in classes)
    ]


def _random_negatives(
    images: Sequence[Image], shapes: Sequence[tuple[float, float]], config: RunConfig
) -> list[tuple[int, tuple]]:
    generator = torch.Generator().manual_seed(config.seed)
    per_image = math.ceil(config.random_negatives / len(images))
    found = []
    for image in images:
        objects = torch.tensor([o.box for o in image.objects], dtype=torch.float64).reshape(-1, 4)
        boxes = random_background_windows(
            shapes,
            image.width,
            image.height,
            objects,
            per_image,
            generator,
            config.mining.background_iou,
            config.mining.max_object_cover,
        )
        found.extend((image.id, tuple(box)) for box in boxes.tolist())
    return found[: config.random_negatives]


def _initial_examples(positives: list, randoms: list) -> list[pool.NewExample]:
    return [
        pool.NewExample(image_id, box, 1, ExampleKind.positive, 0) for image_id, box in positives
    ] + [pool.NewExample(image_id, box, 0, ExampleKind.random, 0) for image_id, box in randoms]


# ---------------------------------------------------------------------------------------------
# Rounds


@dataclass(frozen=True)
class RoundRef:
    run: str
    number: int


def open_round(engine: Engine, run_name: str) -> RoundRef:
    """The round to work on next (resuming a crashed one), marked as started."""
    with session_scope(engine) as session:
        run = runs.get_run(session, run_name)
        round_ = runs.open_round(session, run)
        if round_.status is RoundStatus.failed:
            log.warning("resuming round %d of run %s after a failure", round_.number, run_name)
        log.info("round=%d run=%s status=started", round_.number, run_name)
        return RoundRef(run_name, round_.number)


def mark_round(engine: Engine, ref: RoundRef, status: RoundStatus) -> None:
    with session_scope(engine) as session:
        run = runs.get_run(session, ref.run)
        runs.set_round_status(session, runs.get_round(session, run.id, ref.number), status)


def train_round(engine: Engine, ref: RoundRef, progress: Progress = no_progress) -> str:
    """Train round `ref`'s detector on the pool as it stood before its mining; returns the
    checkpoint path. A checkpoint already recorded for the round is kept (resume)."""
    with session_scope(engine) as session:
        run = runs.get_run(session, ref.run)
        config, _ = run_config(run)
        existing = runs.checkpoint_path(session, run.id, ref.number)
        if existing and Path(existing).is_file():
            log.info("round=%d checkpoint exists, training skipped: %s", ref.number, existing)
            return existing
        runs.set_round_status(
            session, runs.get_round(session, run.id, ref.number), RoundStatus.training
        )
        examples = pool.training_examples(session, run.id, before_round=ref.number)
        paths = runs.image_paths(session, list({image_id for _, image_id, _, _ in examples}))
        previous = runs.checkpoint_path(session, run.id, ref.number - 1) if ref.number else None
        run_id = run.id

    model = _initial_model(config, previous)
    training_set = _training_set(model, examples, paths, config, ref.number)
    train_config = replace(config.train, seed=config.seed * 1000 + ref.number)
    report = train(
        model,
        training_set,
        train_config,
        lambda step, _: progress("train", step, train_config.steps),
    )

    path = _checkpoint_file(config, ref)
    meta = {"run": ref.run, "round": ref.number, "train_loss": report.mean_loss}
    save_checkpoint(path, model, meta)
    with session_scope(engine) as session:
        runs.record_checkpoint(session, run_id, ref.number, str(path))
        round_ = runs.get_round(session, run_id, ref.number)
        round_.metrics = dict(round_.metrics or {}) | {
            "train_examples": len(examples),
            "train_loss": round(report.mean_loss, 5),
            "train_elapsed_s": round(report.elapsed_s, 2),
        }
    return str(path)


def _initial_model(config: RunConfig, previous_checkpoint: str | None) -> torch.nn.Module:
    if config.retrain == "finetune" and previous_checkpoint:
        model, _ = load_checkpoint(previous_checkpoint, "cpu")
        return model.train()
    torch.manual_seed(config.seed)
    return build_model(config.backbone, config.weights)


def _training_set(
    model: torch.nn.Module,
    examples: list[tuple[int, int, tuple, int]],
    paths: dict[int, str],
    config: RunConfig,
    number: int,
) -> TrainingSet | RoITrainingSet:
    """Crops for WindowNet (decoded once, positives jittered), or image-centric for RoI nets."""
    by_image: dict[int, list[tuple[tuple, int]]] = defaultdict(list)
    for _, image_id, box, label in examples:
        by_image[image_id].append((box, label))

    if isinstance(model, RoIWindowNet):
        load = lru_cache(maxsize=512)(lambda image_id: decode_rgb(paths[image_id]))
        ids = [image_id for _, image_id, _, _ in examples]
        return RoITrainingSet(
            load_image=load,
            image_ids=torch.tensor(ids),
            boxes=torch.tensor([box for _, _, box, _ in examples], dtype=torch.float32),
            labels=torch.tensor([label for _, _, _, label in examples]),
        )

    generator = torch.Generator().manual_seed(config.seed * 1000 + number)
    jittered = {
        image_id: _with_jitter(items, config.positive_jitter, generator)
        for image_id, items in sorted(by_image.items())
    }
    with ThreadPoolExecutor(config.mining.decode_workers) as workers:
        pixels = workers.map(lambda image_id: decode_rgb(paths[image_id]), list(jittered))
        per_image = (
            (image, *_as_tensors(jittered[image_id], image.shape), image_id)
            for image_id, image in zip(jittered, pixels, strict=True)
        )
        return build_crops(per_image)


def _with_jitter(items: list[tuple[tuple, int]], copies: int, generator: torch.Generator) -> list:
    extra = []
    for box, label in items:
        if label != 1:
            continue
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        for shift in (torch.rand(copies, 4, generator=generator) * 0.2 - 0.1).tolist():
            cx, cy = (x1 + x2) / 2 + shift[0] * w, (y1 + y2) / 2 + shift[1] * h
            nw, nh = w * (1 + shift[2]), h * (1 + shift[3])
            extra.append(((cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2), 1))
    return items + extra


def _as_tensors(items: list, shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = shape[:2]
    boxes = torch.tensor([box for box, _ in items], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return boxes, torch.tensor([label for _, label in items])


def _checkpoint_file(config: RunConfig, ref: RoundRef) -> Path:
    folder = Path(config.checkpoint_dir or Path.cwd() / "hardmine-checkpoints" / ref.run)
    return folder.resolve() / f"round-{ref.number}.pt"


# ---------------------------------------------------------------------------------------------
# Mining


def mining_shards(engine: Engine, run_name: str) -> list[list[int]]:
    """The run's mining images (readable training images), in shards of image ids.

    Sharding depends only on the run's images and config, never on the workers, so any task
    runner produces the same shards and the same pool.
    """
    with session_scope(engine) as session:
        run = runs.get_run(session, run_name)
        config, _ = run_config(run)
        images = _role_images(session, run.dataset_id, config, "train")
        ids = [image.id for image in images if image.readable]
    size = config.mining.shard_images
    return [ids[start : start + size] for start in range(0, len(ids), size)]


@dataclass(frozen=True)
class ShardReport:
    shard: int
    images: int
    windows_scored: int
    admitted: int
    remined: int
    skipped: bool  # already admitted by an earlier attempt


@dataclass(frozen=True)
class ShardFindings:
    """What scoring one shard found, ready for `admit_shard` (picklable, for remote workers)."""

    ref: RoundRef
    shard: int
    examples: list[pool.NewExample]
    remined: list[int]
    images: int
    skipped_images: int
    windows_scored: int
    selected: int
    elapsed_s: float


def mine_shard(
    engine: Engine, ref: RoundRef, shard: int, image_ids: Sequence[int], total_images: int
) -> ShardReport:
    """Score one shard and admit what it finds (`score_shard`, then `admit_shard`)."""
    findings = score_shard(engine, ref, shard, image_ids, total_images)
    if isinstance(findings, ShardReport):
        return findings
    return admit_shard(engine, findings)


def score_shard(
    engine: Engine, ref: RoundRef, shard: int, image_ids: Sequence[int], total_images: int
) -> ShardFindings | ShardReport:
    """Mine one shard with round `ref`'s detector; reads the store, writes nothing.

    Returns the shard's record instead when an earlier attempt already admitted it.
    """
    with session_scope(engine) as session:
        run = runs.get_run(session, ref.run)
        config, shapes = run_config(run)
        done = [s for s in runs.mined_shards(session, run.id, ref.number) if s.shard == shard]
        if done:
            return _shard_report(done[0], skipped=True)
        images = _mining_images(session, run.id, image_ids)
        checkpoint = runs.checkpoint_path(session, run.id, ref.number)
    if checkpoint is None:
        raise HardmineError(f"round {ref.number} of run {ref.run} has no checkpoint: train first")

    model = _detector(checkpoint, config.train.device)
    strategy = build_strategy(config.mining)
    quota = shard_quota(config.mining.per_round_cap, len(image_ids), total_images)
    result = mine_images(model, images, shapes, strategy, quota, _shard_seed(config, ref, shard))

    kind = ExampleKind(strategy.kind)
    examples = [
        pool.NewExample(c.image_id, c.box, 0, kind, ref.number, c.score, c.loss)
        for c in result.candidates
    ]
    return ShardFindings(
        ref=ref,
        shard=shard,
        examples=examples,
        remined=result.remined,
        images=result.images,
        skipped_images=result.skipped_images,
        windows_scored=result.windows_scored,
        selected=result.selected,
        elapsed_s=result.elapsed_s,
    )


def admit_shard(engine: Engine, findings: ShardFindings) -> ShardReport:
    """Admit a shard's hard negatives, its re-mined counts and its record in one transaction.

    After a crash a shard is either wholly in the pool or not at all; admitting a shard that is
    already recorded changes nothing (the unique record rejects the second transaction).
    """
    ref = findings.ref
    with session_scope(engine) as session:
        run_id = runs.get_run(session, ref.run).id
    record = MinedShard(
        run_id=run_id,
        round=ref.number,
        shard=findings.shard,
        images=findings.images,
        skipped_images=findings.skipped_images,
        windows_scored=findings.windows_scored,
        candidates=findings.selected,
        admitted=len(findings.examples),
        remined=len(findings.remined),
        elapsed_s=findings.elapsed_s,
    )
    try:
        with session_scope(engine) as session:
            session.add(record)
            session.flush()
            pool.admit(session, run_id, findings.examples)
            pool.count_remined(session, findings.remined)
    except IntegrityError:
        log.warning(
            "shard %d of round %d was already admitted; kept the first admission",
            findings.shard,
            ref.number,
        )
        with session_scope(engine) as session:
            shards = runs.mined_shards(session, run_id, ref.number)
            return _shard_report(next(s for s in shards if s.shard == findings.shard), True)
    return _shard_report(record, skipped=False)


def _shard_report(record: MinedShard, skipped: bool) -> ShardReport:
    return ShardReport(
        record.shard, record.images, record.windows_scored, record.admitted, record.remined, skipped
    )


def _detector(checkpoint: str, device: str) -> torch.nn.Module:
    """The round's detector, read from disk once per process rather than once per shard."""
    return _cached_detector(checkpoint, Path(checkpoint).stat().st_mtime_ns, device)


@lru_cache(maxsize=2)
def _cached_detector(checkpoint: str, mtime_ns: int, device: str) -> torch.nn.Module:
    model, _ = load_checkpoint(checkpoint, resolve_device(device))
    return model


def _shard_seed(config: RunConfig, ref: RoundRef, shard: int) -> int:
    digest = hashlib.sha256(f"{config.seed}:{ref.number}:{shard}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _mining_images(session: Session, run_id: int, image_ids: Sequence[int]) -> list[MiningImage]:
    images = runs.images_by_id(session, image_ids)
    pooled = pool.negatives_by_image(session, run_id, list(image_ids))
    return [
        MiningImage(
            image_id=image_id,
            path=images[image_id].path,
            objects=torch.tensor(
                [o.box for o in images[image_id].objects], dtype=torch.float64
            ).reshape(-1, 4),
            pooled=pooled.get(image_id, []),
        )
        for image_id in image_ids
    ]


# ---------------------------------------------------------------------------------------------
# Evaluation and the round's record


def evaluate_round(
    engine: Engine, ref: RoundRef, progress: Progress = no_progress
) -> dict[str, Any]:
    """Detect on the held-out images, combine with the mining figures, record the metrics and
    mark the round done. Running it again rewrites the same metrics: they are recorded once."""
    with session_scope(engine) as session:
        run = runs.get_run(session, ref.run)
        config, shapes = run_config(run)
        round_ = runs.get_round(session, run.id, ref.number)
        runs.set_round_status(session, round_, RoundStatus.evaluating)
        images = [i for i in _role_images(session, run.dataset_id, config, "eval") if i.readable]
        targets = [_eval_target(image, config.classes) for image in images]
        checkpoint = runs.checkpoint_path(session, run.id, ref.number)
        shards = runs.mined_shards(session, run.id, ref.number)
        run_id = run.id

    model = _detector(checkpoint, config.train.device)
    evaluated = []
    for done, (image_id, width, height, path, objects) in enumerate(targets, start=1):
        boxes, scores = detect(model, decode_rgb(path), shapes, config.detect)
        evaluated.append(EvalImage(image_id, width, height, objects, boxes.numpy(), scores.numpy()))
        progress("evaluate", done, len(targets))
    quality = evaluate_detections(evaluated, operating_threshold=config.operating_threshold)

    metrics = _mining_metrics(shards) | quality.to_dict()
    with session_scope(engine) as session:
        round_ = runs.get_round(session, run_id, ref.number)
        round_.metrics = dict(round_.metrics or {}) | metrics
        runs.set_round_status(session, round_, RoundStatus.done)
        counts = pool.counts_by_kind(session, run_id)
        elapsed = (round_.finished_at - round_.started_at).total_seconds()
        round_.metrics = round_.metrics | {"elapsed_s": round(elapsed, 2)}
    log.info(
        "round=%d mined=%d admitted=%d pool=%d fp_per_image=%s ap50=%s elapsed_s=%.1f",
        ref.number,
        metrics["candidates"],
        metrics["admitted"],
        sum(counts.values()),
        _fmt(metrics.get("fp_per_image")),
        _fmt(metrics.get("ap50")),
        elapsed,
    )
    return round_.metrics


def _eval_target(image: Image, classes: Sequence[str]) -> tuple:
    objects = [
        o.box for o in image.objects if not o.ignore and (not classes or o.category in classes)
    ]
    return (
        image.id,
        image.width,
        image.height,
        image.path,
        np.array(objects, dtype=np.float64).reshape(-1, 4),
    )


def _mining_metrics(shards: Sequence[MinedShard]) -> dict[str, Any]:
    windows = sum(s.windows_scored for s in shards)
    elapsed = sum(s.elapsed_s for s in shards)
    admitted = sum(s.admitted for s in shards)
    return {
        "mined_images": sum(s.images for s in shards),
        "skipped_images": sum(s.skipped_images for s in shards),
        "windows_scored": windows,
        "windows_per_s": round(windows / elapsed, 1) if elapsed > 0 else None,
        "candidates": sum(s.candidates for s in shards),
        "admitted": admitted,
        "remined": sum(s.remined for s in shards),
        "yield_per_1k": round(1000 * admitted / windows, 4) if windows else None,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def should_stop(engine: Engine, run_name: str) -> str | None:
    """Why the run ends after its latest round (and record it), or None to go on."""
    with session_scope(engine) as session:
        run = runs.get_run(session, run_name)
        config, _ = run_config(run)
        done = [r for r in run.rounds if r.status is RoundStatus.done]
        reason = _stop_reason(config, [r.metrics for r in done])
        if reason:
            run.stop_reason = reason
            log.info("run=%s stops: %s", run_name, reason)
        return reason


def _stop_reason(config: RunConfig, history: list[dict[str, Any]]) -> str | None:
    if len(history) >= config.rounds:
        return f"completed {len(history)} rounds"
    stop = config.stop
    latest = history[-1] if history else {}
    yield_per_1k = latest.get("yield_per_1k")
    if stop.min_yield_per_1k and yield_per_1k is not None and yield_per_1k < stop.min_yield_per_1k:
        return f"mining yield {yield_per_1k} per 1k windows under {stop.min_yield_per_1k}"

    if stop.patience and len(history) > stop.patience:
        sign = 1 if stop.metric in ("ap50", "ap") else -1
        values = [sign * m[stop.metric] for m in history if m.get(stop.metric) is not None]
        if len(values) > stop.patience:
            best_before = max(values[: -stop.patience])
            if max(values[-stop.patience :]) <= best_before + stop.min_delta:
                return f"{stop.metric} did not improve for {stop.patience} rounds"
    return None


# ---------------------------------------------------------------------------------------------
# All steps in order


def run_round(engine: Engine, run_name: str, progress: Progress = no_progress) -> dict[str, Any]:
    """One full round of run `run_name` (resuming an unfinished one); returns its metrics."""
    with run_lock(engine, run_name):
        ref = open_round(engine, run_name)
        try:
            train_round(engine, ref, progress)
            mark_round(engine, ref, RoundStatus.mining)
            shards = mining_shards(engine, run_name)
            total = sum(len(s) for s in shards)
            done = 0
            for index, image_ids in enumerate(shards):
                mine_shard(engine, ref, index, image_ids, total)
                done += len(image_ids)
                progress("mine", done, total)
            return evaluate_round(engine, ref, progress)
        except BaseException:
            mark_round(engine, ref, RoundStatus.failed)
            raise


def run_rounds(engine: Engine, run_name: str, progress: Progress = no_progress) -> str:
    """Rounds until the run stops; returns why it stopped."""
    while True:
        run_round(engine, run_name, progress)
        reason = should_stop(engine, run_name)
        if reason:
            return reason
