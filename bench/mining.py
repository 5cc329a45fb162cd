"""Mining-pass speed: dense scoring against one window at a time and batched, same windows.

    .venv/bin/python bench/mining.py [--image PATH] [--device cpu|cuda] [--repeats 3]

Scores every grid window of a real photo (default: the first raccoon image in ../shared/data,
else scikit-learn's bundled china.jpg) with a WindowNet three ways: `dense_scores` (one
fully convolutional pass per window shape over the image pyramid), `crop_scores` with batch 1
(one network pass per window), and `crop_scores` with batch 64. Single-window scoring runs on a
random subset of the windows (it is slow) and its rate is reported for that subset. It then
compares the scores on the same windows and relates the dense pass's FLOP rate to a large
matmul's on the same device. The last line is machine-readable.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from hardmine.models import WindowNet, crop_scores, dense_scores, normalize, resolve_device

SHAPES = [(48.0, 48.0), (64.0, 64.0), (96.0, 96.0), (128.0, 96.0), (96.0, 128.0), (160.0, 160.0)]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_image(path: str | None) -> tuple[torch.Tensor, str]:
    if path is None:
        candidates = sorted((DATA / "raccoon" / "JPEGImages").glob("*.jpg"))
        if candidates:
            path = str(candidates[0])
    if path is None:
        from sklearn.datasets import load_sample_image

        return normalize(load_sample_image("china.jpg")), "sklearn china.jpg"
    return normalize(np.array(Image.open(path).convert("RGB"))), path


def best_of(repeats: int, work: Callable[[], object], device: torch.device) -> float:
    """Fastest wall time of `repeats` runs, seconds."""
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        work()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    seconds = best_of(repeats, lambda: a @ b, device)
    return 2 * size**3 / seconds / 1e9


def dense_flops(model: WindowNet, image: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        dense_scores(model, image, SHAPES)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=None, help="photo to score (default: a raccoon)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single-windows", type=int, default=600, help="subset scored one by one")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = WindowNet().to(device).eval()
    image, source = load_image(args.image)
    image = image.to(device)
    boxes, dense = dense_scores(model, image, SHAPES)
    subset = torch.randperm(len(boxes), generator=torch.Generator().manual_seed(0))
    subset = subset[: args.single_windows]
    print(
        f"image: {source} {tuple(image.shape[1:])}  device: {device}  threads: "
        f"{torch.get_num_threads()}  window shapes: {len(SHAPES)}  windows: {len(boxes)}"
    )

    dense_s = best_of(args.repeats, lambda: dense_scores(model, image, SHAPES), device)
    batched_s = best_of(args.repeats, lambda: crop_scores(model, image, boxes, 64), device)
    single_s = best_of(1, lambda: crop_scores(model, image, boxes[subset], 1), device)
    rates = {
        "dense (shared pass)": len(boxes) / dense_s,
        "batched crops (64)": len(boxes) / batched_s,
        "one window at a time": len(subset) / single_s,
    }
    for name, rate in rates.items():
        print(f"{name:<22} {rate:>10,.0f} windows/s")

    batched = crop_scores(model, image, boxes, 64)
    single = crop_scores(model, image, boxes[subset], 1)
    max_diff = max(
        (dense - batched.cpu()).abs().max().item(),
        (dense[subset] - single.cpu()).abs().max().item(),
    )
    print(f"max |dense - per-window| score over {len(boxes)} windows: {max_diff:.2e}")

    flops = dense_flops(model, image)
    dense_gflops = flops / dense_s / 1e9
    peak = statistics.median(matmul_gflops(device) for _ in range(3))
    print(
        f"dense pass: {flops / 1e9:.2f} GFLOP per image, {dense_gflops:.1f} GFLOP/s; "
        f"2048x2048 matmul: {peak:.1f} GFLOP/s ({100 * dense_gflops / peak:.0f}% of it)"
    )

    print(
        f"speedup_vs_single={rates['dense (shared pass)'] / rates['one window at a time']:.1f} "
        f"speedup_vs_batched={rates['dense (shared pass)'] / rates['batched crops (64)']:.1f} "
        f"max_abs_diff={max_diff:.2e}"
    )


if __name__ == "__main__":
    main()
