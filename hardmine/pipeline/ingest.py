"""Dataset ingestion: COCO JSON and Pascal VOC into the store.

Parsing validates every annotation before anything is written, so a dataset with one bad box
leaves the store as it was. Images that do not decode are not errors: they are recorded as
unreadable with the reason and skipped by every later step.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy.orm import Session

from hardmine.errors import IngestError
from hardmine.storage import datasets as store

log = logging.getLogger(__name__)

Format = Literal["coco", "voc"]

# Boxes may overshoot the image by up to this much (rounding in the tools that wrote them);
# they are clipped to the image. Anything further out is an error.
EDGE_TOLERANCE_PX = 1.0
DECODE_WORKERS = 4
SPLIT_WORDS = ("train", "val", "test")


@dataclass
class ParsedObject:
    category: str
    box: tuple[float, float, float, float]  # xyxy, pixels, 0-based
    ignore: bool = False


@dataclass
class ParsedImage:
    file_name: str
    path: Path
    width: int
    height: int
    split: str
    objects: list[ParsedObject] = field(default_factory=list)
    readable: bool = True
    unreadable_reason: str | None = None


@dataclass
class IngestSummary:
    dataset: str
    format: str
    images: int
    objects: int
    background_only: int
    splits: dict[str, int]
    unreadable: list[dict[str, str]]
    added_images: int
    skipped_unlisted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "format": self.format,
            "images": self.images,
            "objects": self.objects,
            "background_only": self.background_only,
            "unreadable": self.unreadable,
            "splits": self.splits,
            "added_images": self.added_images,
            "skipped_unlisted": self.skipped_unlisted,
        }


def ingest(
    session: Session,
    path: str | Path,
    format: Format,
    *,
    images_dir: str | Path | None = None,
    name: str | None = None,
    split: str | None = None,
    holdout: float = 0.2,
    seed: int = 0,
) -> IngestSummary:
    """Parse, validate and store a dataset in the session's transaction.

    Args:
        path: a COCO annotation file, or a VOC devkit folder (Annotations/, JPEGImages/).
        images_dir: COCO only; the folder the file names are relative to (default: the
            annotation file's folder).
        name: the dataset's name in the store; default from the path (see `default_name`).
        split: the split these images form. COCO default: train/val/test from the file name;
            VOC default: every ImageSets/Main/<split>.txt. Without either, a seeded `holdout`
            fraction becomes "test" and the rest "train".
    """
    path = Path(path).expanduser()
    if not 0.0 < holdout < 1.0:
        raise IngestError(f"--holdout must be a fraction in (0, 1), got {holdout}")
    if format == "coco":
        images, skipped = parse_coco(path, images_dir, split, holdout, seed), 0
    elif format == "voc":
        if images_dir is not None:
            raise IngestError("--images applies to COCO only; VOC images live in JPEGImages/")
        images, skipped = parse_voc(path, split, holdout, seed)
    else:
        raise IngestError(f"--format must be coco or voc, got {format!r}")

    check_decodable(images)
    dataset_name = name or default_name(path, format)
    added = store.store_images(session, dataset_name, format, images)
    summary = summarize(dataset_name, format, images, added, skipped)
    log.info(
        "ingested dataset=%s images=%d objects=%d added=%d unreadable=%d",
        dataset_name,
        summary.images,
        summary.objects,
        added,
        len(summary.unreadable),
    )
    return summary


def default_name(path: Path, format: Format) -> str:
    """VOC: the devkit folder's name. COCO: the folder above `annotations/` if the file sits in
    one (coco128/annotations/x.json -> coco128), so a dataset's split files share one name;
    else the file's stem."""
    path = path.resolve()
    if format == "voc":
        return path.name
    if path.parent.name == "annotations":
        return path.parent.parent.name
    return path.stem


def summarize(
    name: str, format: str, images: list[ParsedImage], added: int, skipped: int
) -> IngestSummary:
    splits: dict[str, int] = {}
    for image in images:
        splits[image.split] = splits.get(image.split, 0) + 1
    return IngestSummary(
        dataset=name,
        format=format,
        images=len(images),
        objects=sum(len(image.objects) for image in images),
        background_only=sum(1 for image in images if not image.objects),
        splits=dict(sorted(splits.items())),
        unreadable=[
            {"file": image.file_name, "reason": image.unreadable_reason or ""}
            for image in images
            if not image.readable
        ],
        added_images=added,
        skipped_unlisted=skipped,
    )


# ---------------------------------------------------------------------------------------------
# Splits


def holdout_split(file_name: str, holdout: float, seed: int) -> str:
    """ "test" for a seeded `holdout` fraction of file names, "train" for the rest.

    Hashing the name (not drawing in file order) keeps an image's split the same when the
    dataset is ingested again or grows.
    """
    digest = hashlib.sha256(f"{seed}:{file_name}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < holdout else "train"


def split_from_file_name(path: Path) -> str | None:
    """train, val or test when the annotation file's name says so (instances_val2017 -> val)."""
    words = re.findall(r"[a-z]+", path.stem.lower())
    found = [word for word in SPLIT_WORDS if word in words]
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------------------------------------
# COCO


def parse_coco(
    path: Path, images_dir: str | Path | None, split: str | None, holdout: float, seed: int
) -> list[ParsedImage]:
    """Parse and validate a COCO annotation file: boxes are [x, y, w, h] pixels."""
    data = _read_json(path)
    folder = Path(images_dir).expanduser() if images_dir else path.parent
    if not folder.is_dir():
        raise IngestError(f"images folder {folder} does not exist; pass --images DIR")
    split = split or split_from_file_name(path)

    categories = _coco_categories(path, data)
    images = _coco_images(path, data, folder, split, holdout, seed)
    by_id = {image_id: image for image_id, image in images}

    for index, annotation in enumerate(_list_field(path, data, "annotations")):
        where = f"annotation {annotation.get('id', f'#{index}')} in {path.name}"
        image = by_id.get(annotation.get("image_id"))
        if image is None:
            raise IngestError(
                f"{where}: image_id {annotation.get('image_id')!r} is not among the file's "
                "images; fix the image_id or add the image to 'images'"
            )
        category = categories.get(annotation.get("category_id"))
        if category is None:
            known = ", ".join(f"{k} {v}" for k, v in sorted(categories.items()))
            raise IngestError(
                f"{where}: category_id {annotation.get('category_id')!r} is not among the file's "
                f"categories [{known}]; add it to 'categories' or drop the annotation"
            )
        box = _coco_box(where, annotation.get("bbox"), image)
        ignore = bool(annotation.get("iscrowd", 0))
        image.objects.append(ParsedObject(category, box, ignore))
    return [image for _, image in images]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise IngestError(f"annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "expected a COCO annotation file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path}: not UTF-8 text; expected a COCO annotation file") from exc
    if not isinstance(data, dict):
        raise IngestError(
            f"{path}: top level is a {type(data).__name__}; expected a COCO object with "
            "'images', 'annotations' and 'categories'"
        )
    return data


def _list_field(path: Path, data: dict, key: str) -> list[dict]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise IngestError(
            f"{path}: '{key}' must be a list of objects, got {type(value).__name__}; "
            "is this a COCO annotation file?"
        )
    return value


def _coco_categories(path: Path, data: dict) -> dict[Any, str]:
    categories = {}
    for category in _list_field(path, data, "categories"):
        if "id" not in category or not isinstance(category.get("name"), str):
            raise IngestError(f"{path}: category {category} needs an 'id' and a 'name'")
        categories[category["id"]] = category["name"]
    return categories


def _coco_images(
    path: Path, data: dict, folder: Path, split: str | None, holdout: float, seed: int
) -> list[tuple[Any, ParsedImage]]:
    images = []
    for entry in _list_field(path, data, "images"):
        missing = [key for key in ("id", "file_name", "width", "height") if key not in entry]
        if missing:
            raise IngestError(f"{path}: image {entry} lacks {', '.join(missing)}")
        width, height = entry["width"], entry["height"]
        if not (_is_number(width) and _is_number(height) and width > 0 and height > 0):
            raise IngestError(
                f"image {entry['id']} in {path.name}: width/height {width}x{height} must be "
                "positive numbers"
            )
        file_name = str(entry["file_name"])
        parsed = ParsedImage(
            file_name=file_name,
            path=_existing_image(folder / file_name, "--images DIR"),
            width=int(width),
            height=int(height),
            split=split or holdout_split(file_name, holdout, seed),
        )
        images.append((entry["id"], parsed))
    return images


def _coco_box(where: str, bbox: Any, image: ParsedImage) -> tuple[float, float, float, float]:
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise IngestError(f"{where}: bbox {bbox!r} is not four numbers; boxes are [x, y, w, h]")
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        raise IngestError(
            f"{where}: bbox {bbox} has zero or negative width/height; boxes are [x, y, w, h] "
            "in pixels: fix or drop the annotation"
        )
    return _inside(where, f"bbox {bbox}", (x, y, x + w, y + h), image)


# ---------------------------------------------------------------------------------------------
# Pascal VOC


def parse_voc(
    root: Path, split: str | None, holdout: float, seed: int
) -> tuple[list[ParsedImage], int]:
    """Parse a VOC devkit folder; returns the images and how many annotations no split lists.

    VOC corners are 1-based and inclusive: xmin=1, xmax=W spans the whole width, which is
    [0, W) in hardmine's 0-based xyxy.
    """
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise IngestError(
            f"{root} is not a Pascal VOC devkit folder: {annotations} is missing; expected "
            "Annotations/, JPEGImages/ and optionally ImageSets/Main/<split>.txt"
        )
    stems = sorted(p.stem for p in annotations.glob("*.xml"))
    if not stems:
        raise IngestError(f"{annotations} holds no .xml files")

    assigned = _voc_splits(root, split)
    if assigned is None:
        chosen = {stem: holdout_split(stem, holdout, seed) for stem in stems}
    else:
        unknown = sorted(set(assigned) - set(stems))
        if unknown:
            raise IngestError(
                f"ImageSets/Main lists {unknown[0]!r} (and {len(unknown) - 1} more) with no "
                f"annotation in {annotations}; fix the split file or add the annotation"
            )
        chosen = assigned
    images = [_voc_image(root, stem, chosen[stem]) for stem in stems if stem in chosen]
    skipped = len(stems) - len(images)
    if skipped and split is None:
        log.warning("skipped %d annotations that no ImageSets/Main split lists", skipped)
    return images, skipped


def _voc_splits(root: Path, split: str | None) -> dict[str, str] | None:
    """{image stem: split} from ImageSets/Main, or None when the dataset defines no split."""
    main = root / "ImageSets" / "Main"
    if split is not None:
        split_file = main / f"{split}.txt"
        if not split_file.is_file():
            raise IngestError(f"--split {split}: {split_file} does not exist")
        return {stem: split for stem in _read_split_file(split_file)}

    # Class-specific lists (aeroplane_train.txt) are not splits; trainval repeats train + val.
    files = {p.stem: p for p in main.glob("*.txt") if "_" not in p.stem} if main.is_dir() else {}
    if "train" in files and "val" in files:
        files.pop("trainval", None)
    if not files:
        return None

    assigned: dict[str, str] = {}
    for name, split_file in sorted(files.items()):
        for stem in _read_split_file(split_file):
            if stem in assigned and assigned[stem] != name:
                raise IngestError(
                    f"image {stem!r} is listed in both ImageSets/Main/{assigned[stem]}.txt and "
                    f"{name}.txt; an image belongs to one split: pick one with --split"
                )
            assigned[stem] = name
    return assigned


def _read_split_file(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _voc_image(root: Path, stem: str, split: str) -> ParsedImage:
    xml_path = root / "Annotations" / f"{stem}.xml"
    try:
        tree = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise IngestError(f"{xml_path}: malformed XML ({exc}); fix or remove the file") from exc

    file_name = (tree.findtext("filename") or f"{stem}.jpg").strip()
    width = _voc_int(xml_path, tree, "size/width")
    height = _voc_int(xml_path, tree, "size/height")
    image = ParsedImage(
        file_name=file_name,
        path=_existing_image(root / "JPEGImages" / file_name, "the JPEGImages/ folder"),
        width=width,
        height=height,
        split=split,
    )
    for index, element in enumerate(tree.findall("object"), start=1):
        image.objects.append(_voc_object(xml_path, index, element, image))
    return image


def _voc_int(xml_path: Path, tree: ET.Element, key: str) -> int:
    text = tree.findtext(key)
    try:
        value = int(float(text))
    except (TypeError, ValueError):
        raise IngestError(f"{xml_path}: <{key}> is {text!r}; expected a positive integer") from None
    if value <= 0:
        raise IngestError(f"{xml_path}: <{key}> is {value}; expected a positive integer")
    return value


def _voc_object(
    xml_path: Path, index: int, element: ET.Element, image: ParsedImage
) -> ParsedObject:
    where = f"{xml_path.name}, object {index}"
    name = (element.findtext("name") or "").strip()
    if not name:
        raise IngestError(f"{where}: <name> is missing or empty; every object needs a class name")

    corners = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = element.findtext(f"bndbox/{key}")
        try:
            corners.append(float(text))
        except (TypeError, ValueError):
            raise IngestError(f"{where}: <bndbox><{key}> is {text!r}; expected a number") from None
    xmin, ymin, xmax, ymax = corners
    if xmax < xmin or ymax < ymin:
        raise IngestError(
            f"{where}: box {corners} has xmax < xmin or ymax < ymin; VOC boxes are "
            "xmin, ymin, xmax, ymax (1-based, inclusive)"
        )
    difficult = (element.findtext("difficult") or "0").strip() == "1"
    box = _inside(where, f"box {corners}", (xmin - 1, ymin - 1, xmax, ymax), image)
    return ParsedObject(name, box, ignore=difficult)


# ---------------------------------------------------------------------------------------------
# Shared checks


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _inside(
    where: str, shown: str, box: tuple[float, float, float, float], image: ParsedImage
) -> tuple[float, float, float, float]:
    """`box` clipped to the image, or an error if it reaches outside by more than the
    tolerance or has no area."""
    x1, y1, x2, y2 = box
    tol = EDGE_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > image.width + tol or y2 > image.height + tol:
        raise IngestError(
            f"{where}: {shown} reaches outside the {image.width}x{image.height} image "
            f"{image.file_name}; fix the box or the image size"
        )
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, image.width), min(y2, image.height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise IngestError(f"{where}: {shown} has zero area; fix or drop the annotation")
    return clipped


def _existing_image(path: Path, where: str) -> Path:
    if not path.is_file():
        raise IngestError(f"image file {path} does not exist; check the file name or {where}")
    return path.resolve()


def check_decodable(images: list[ParsedImage]) -> None:
    """Decode every image (in threads) and mark the ones that fail as unreadable.

    A readable image whose size differs from its annotation's is an error: the boxes were
    drawn on another image (or the file is rotated by EXIF and the annotation is not).
    """
    with ThreadPoolExecutor(DECODE_WORKERS) as pool:
        results = list(pool.map(_decode, (image.path for image in images)))

    for image, (size, reason) in zip(images, results, strict=True):
        if reason is not None:
            image.readable, image.unreadable_reason = False, reason
            log.warning("unreadable image %s: %s", image.path, reason)
        elif size != (image.width, image.height):
            raise IngestError(
                f"image {image.file_name}: annotations say {image.width}x{image.height} but the "
                f"file is {size[0]}x{size[1]}; fix the annotation's size"
            )


def _decode(path: Path) -> tuple[tuple[int, int] | None, str | None]:
    try:
        with PILImage.open(path) as image:
            image.load()
            return image.size, None
    except UnidentifiedImageError:
        return None, "not an image PIL can identify"
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"does not decode: {exc}"
