"""Mining strategies and losses compared on one dataset: same budget, same schedule, 3 seeds.

    .venv/bin/python bench/strategies.py [--dataset demo] [--rounds 3] [--seeds 0 1 2]
        [--steps 400] [--db URL] [--workdir DIR]

Without --db, a fresh SQLite store under --workdir gets the demo dataset (seed 0). Each
configuration (random, threshold, topk with cross-entropy; threshold with focal loss and with
OHEM) runs `--rounds` rounds per seed with identical settings apart from the one it varies.
Prints, per configuration and round, the mean and spread (sample standard deviation) over the
seeds of: AP50, AP, false positives per image at the operating threshold, false positives per
image at the highest recall level that round 0 of that seed reaches, log-average miss rate, and
the negatives the round admitted.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from hardmine.miners.base import MiningConfig
from hardmine.models import LossConfig, TrainConfig
from hardmine.pipeline.config import RunConfig
from hardmine.pipeline.demo import generate_demo
from hardmine.pipeline.ingest import ingest
from hardmine.pipeline.rounds import create_run, run_rounds
from hardmine.storage.db import open_engine, session_scope
from hardmine.storage.status import status_report

CONFIGS = {
    "random/ce": ("random", "ce"),
    "threshold/ce": ("threshold", "ce"),
    "topk/ce": ("topk", "ce"),
    "threshold/focal": ("threshold", "focal"),
    "threshold/ohem": ("threshold", "ohem"),
}


def demo_store(workdir: Path) -> str:
    url = f"sqlite:///{workdir / 'bench.db'}"
    files = generate_demo(workdir / "demo", seed=0)
    with session_scope(open_engine(url)) as session:
        for split, path in files.annotations.items():
            ingest(session, path, "coco", images_dir=files.images_dir, name="demo", split=split)
    return url


def fp_at_highest_recall(round_zero: dict, metrics: dict) -> tuple[str | None, float | None]:
    """FP/image at the highest recall level round 0 reaches, for this round."""
    reached = [k for k, v in round_zero["fp_per_image_at_recall"].items() if v is not None]
    if not reached:
        return None, None
    level = max(reached, key=float)
    return level, metrics["fp_per_image_at_recall"].get(level)


def summarize(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    spread = statistics.stdev(present) if len(present) > 1 else 0.0
    return f"{statistics.mean(present):.3f}±{spread:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="demo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--db", default=None, help="store holding --dataset (default: new demo)")
    parser.add_argument("--workdir", default=None, help="where the store and checkpoints go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hardmine-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.db or demo_store(workdir)
    engine = open_engine(url)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    print(f"dataset={args.dataset} rounds={args.rounds} seeds={args.seeds} steps={args.steps}")

    results: dict[str, list[list[dict]]] = {}
    for label in args.configs:
        strategy, loss = CONFIGS[label]
        results[label] = []
        for seed in args.seeds:
            config = RunConfig(
                dataset=args.dataset,
                rounds=args.rounds,
                seed=seed,
                checkpoint_dir=str(workdir / "checkpoints" / f"{label}-{seed}"),
                train=TrainConfig(steps=args.steps, loss=LossConfig(name=loss)),
                mining=MiningConfig(strategy=strategy),
            )
            name = f"bench-{stamp}-{label.replace('/', '-')}-s{seed}"
            start = time.perf_counter()
            create_run(engine, name, config)
            run_rounds(engine, name)
            with session_scope(engine) as session:
                run = status_report(session, name)["runs"][0]
            results[label].append([r["metrics"] for r in run["rounds"]])
            print(f"  {label} seed={seed} done in {time.perf_counter() - start:.0f} s", flush=True)

    header = (
        f"{'config':<16} {'round':>5} {'AP50':>13} {'AP':>13} {'fp/img@0.5':>13} "
        f"{'fp/img@R0max':>13} {'LAMR':>13} {'admitted':>13}"
    )
    print(header)
    for label, per_seed in results.items():
        for number in range(args.rounds):
            rows = [seed_rounds[number] for seed_rounds in per_seed if len(seed_rounds) > number]
            at_recall = [fp_at_highest_recall(seed[0], seed[number])[1] for seed in per_seed]
            print(
                f"{label:<16} {number:>5} {summarize([m['ap50'] for m in rows]):>13} "
                f"{summarize([m['ap'] for m in rows]):>13} "
                f"{summarize([m['fp_per_image'] for m in rows]):>13} "
                f"{summarize(at_recall):>13} {summarize([m['lamr'] for m in rows]):>13} "
                f"{summarize([float(m['admitted']) for m in rows]):>13}"
            )
    levels = {
        fp_at_highest_recall(seed[0], seed[0])[0] for runs in results.values() for seed in runs
    }
    print(f"fp/img@R0max: recall level(s) {sorted(levels)}; spreads are sample std over seeds")


if __name__ == "__main__":
    main()
