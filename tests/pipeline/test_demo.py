import hashlib
import json
from pathlib import Path

from hardmine.pipeline.demo import DemoConfig, generate_demo

SMALL = DemoConfig(train_images=30, test_images=10)


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_demo_is_identical_for_the_same_seed_and_differs_for_another(tmp_path: Path) -> None:
    generate_demo(tmp_path / "a", seed=5, config=SMALL)
    generate_demo(tmp_path / "b", seed=5, config=SMALL)
    generate_demo(tmp_path / "c", seed=6, config=SMALL)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_demo_has_background_only_images_and_lookalikes_in_a_minority(tmp_path: Path) -> None:
    files = generate_demo(tmp_path, seed=0)
    coco = json.loads(files.annotations["train"].read_text())
    with_objects = {a["image_id"] for a in coco["annotations"]}
    with_lookalikes = [image for image in coco["images"] if image["lookalikes"]]

    # Defaults: 20% of images hold no target, 30% hold look-alikes (160 train images).
    assert 0.1 < 1 - len(with_objects) / len(coco["images"]) < 0.3
    assert 0.2 < len(with_lookalikes) / len(coco["images"]) < 0.4
    assert all(
        0 <= x and 0 <= y and x + w <= 256 and y + h <= 256
        for x, y, w, h in (a["bbox"] for a in coco["annotations"])
    )
