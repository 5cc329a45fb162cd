import json
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import Engine, func, select

from hardmine.errors import IngestError
from hardmine.pipeline.ingest import holdout_split, ingest
from hardmine.storage.db import session_scope
from hardmine.storage.models import Image, Object
from tests.conftest import shared_data


def _jpeg(path: Path, width: int = 64, height: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (width, height), (120, 30, 30)).save(path)


def _coco(tmp_path: Path, annotations: list[dict], name: str = "train.json") -> Path:
    """Three 64x48 images: a.jpg, b.jpg (no objects unless given), c.jpg."""
    for file_name in ("a.jpg", "b.jpg", "c.jpg"):
        _jpeg(tmp_path / "images" / file_name)
    data = {
        "images": [
            {"id": i + 1, "file_name": f, "width": 64, "height": 48}
            for i, f in enumerate(("a.jpg", "b.jpg", "c.jpg"))
        ],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "raccoon"}],
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


GOOD = [
    {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 10]},
    {"id": 2, "image_id": 1, "category_id": 1, "bbox": [30, 20, 10, 10]},
    {"id": 3, "image_id": 3, "category_id": 1, "bbox": [0, 0, 64, 48]},
]


def _counts(engine: Engine) -> tuple[int, int]:
    with session_scope(engine) as session:
        images = session.scalar(select(func.count()).select_from(Image))
        objects = session.scalar(select(func.count()).select_from(Object))
    return images, objects


def _ingest(engine: Engine, path: Path, format: str, **options) -> dict:
    with session_scope(engine) as session:
        return ingest(session, path, format, **options).to_dict()


def test_coco_ingest_keeps_images_without_objects_as_background(
    engine: Engine, tmp_path: Path
) -> None:
    summary = _ingest(engine, _coco(tmp_path, GOOD), "coco", images_dir=tmp_path / "images")
    # a.jpg holds 2 objects, c.jpg 1, b.jpg none: it stays, as pure background.
    assert (summary["images"], summary["objects"], summary["background_only"]) == (3, 3, 1)
    assert summary["splits"] == {"train": 3}  # from the file name train.json
    assert _counts(engine) == (3, 3)


def test_coco_boxes_are_stored_as_xyxy_pixels(engine: Engine, tmp_path: Path) -> None:
    _ingest(engine, _coco(tmp_path, GOOD[:1]), "coco", images_dir=tmp_path / "images")
    with session_scope(engine) as session:
        stored = session.scalars(select(Object)).one()
    assert stored.box == (4.0, 4.0, 24.0, 14.0)


def test_ingesting_the_same_file_again_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = _coco(tmp_path, GOOD)
    _ingest(engine, path, "coco", images_dir=tmp_path / "images")
    again = _ingest(engine, path, "coco", images_dir=tmp_path / "images")
    assert again["added_images"] == 0
    assert _counts(engine) == (3, 3)


def test_reingesting_changed_annotations_is_an_error_and_keeps_the_stored_ones(
    engine: Engine, tmp_path: Path
) -> None:
    _ingest(engine, _coco(tmp_path, GOOD), "coco", images_dir=tmp_path / "images")
    changed = _coco(tmp_path, GOOD[:2])
    with pytest.raises(IngestError, match="c.jpg is already in dataset .* different objects"):
        _ingest(engine, changed, "coco", images_dir=tmp_path / "images")
    assert _counts(engine) == (3, 3)


def test_two_coco_files_feed_one_dataset_with_a_split_each(engine: Engine, tmp_path: Path) -> None:
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    train = _coco(tmp_path, GOOD, name="annotations/person_train2017.json")
    val_dir = tmp_path / "val"
    val = json.loads(train.read_text())
    for image in val["images"]:
        image["file_name"] = "v" + image["file_name"]
        _jpeg(val_dir / image["file_name"])
    (annotations / "person_val2017.json").write_text(json.dumps(val))

    first = _ingest(engine, train, "coco", images_dir=tmp_path / "images")
    second = _ingest(engine, annotations / "person_val2017.json", "coco", images_dir=val_dir)
    # Both default to the folder above annotations/ as the dataset name.
    assert first["dataset"] == second["dataset"] == tmp_path.name
    assert (first["splits"], second["splits"]) == ({"train": 3}, {"val": 3})
    assert _counts(engine) == (6, 6)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (
            {"bbox": [30, 4, -10, 10]},
            r"annotation 9 in train.json: bbox \[30, 4, -10, 10\] has zero",
        ),
        ({"bbox": [4, 4, 0, 10]}, r"annotation 9 in train.json: bbox .* zero or negative"),
        ({"bbox": [50, 4, 30, 10]}, r"annotation 9 in train.json: bbox .* outside the 64x48"),
        ({"bbox": [4, 4, 10]}, r"annotation 9 in train.json: bbox .* not four numbers"),
        ({"category_id": 7}, r"annotation 9 in train.json: category_id 7 is not among .*1 raccoon"),
        ({"image_id": 99}, r"annotation 9 in train.json: image_id 99 is not among"),
    ],
)
def test_bad_coco_annotation_names_file_annotation_and_value_and_writes_nothing(
    engine: Engine, tmp_path: Path, annotation: dict, message: str
) -> None:
    bad = {"id": 9, "image_id": 2, "category_id": 1, "bbox": [4, 4, 10, 10]} | annotation
    path = _coco(tmp_path, [*GOOD, bad])
    with pytest.raises(IngestError, match=message):
        _ingest(engine, path, "coco", images_dir=tmp_path / "images")
    assert _counts(engine) == (0, 0)


def test_box_overshooting_the_image_by_under_a_pixel_is_clipped(
    engine: Engine, tmp_path: Path
) -> None:
    path = _coco(
        tmp_path, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [-0.4, 0, 64.6, 48]}]
    )
    _ingest(engine, path, "coco", images_dir=tmp_path / "images")
    with session_scope(engine) as session:
        assert session.scalars(select(Object)).one().box == (0.0, 0.0, 64.0, 48.0)


def test_malformed_coco_json_names_the_file_and_position(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('{"images": [}')
    with pytest.raises(IngestError, match=r"train.json: not valid JSON .* line 1, column 13"):
        _ingest(engine, path, "coco")


def test_coco_without_images_list_says_what_it_expected(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    path.write_text('{"annotations": [], "categories": []}')
    with pytest.raises(IngestError, match="'images' must be a list"):
        _ingest(engine, path, "coco")


def test_missing_image_file_fails_with_its_path(engine: Engine, tmp_path: Path) -> None:
    path = _coco(tmp_path, GOOD)
    (tmp_path / "images" / "b.jpg").unlink()
    with pytest.raises(IngestError, match=f"image file {tmp_path / 'images' / 'b.jpg'} does not"):
        _ingest(engine, path, "coco", images_dir=tmp_path / "images")
    assert _counts(engine) == (0, 0)


def test_image_that_does_not_decode_is_recorded_unreadable_and_the_rest_go_in(
    engine: Engine, tmp_path: Path
) -> None:
    path = _coco(tmp_path, GOOD)
    (tmp_path / "images" / "b.jpg").write_bytes(b"this is not a jpeg")
    summary = _ingest(engine, path, "coco", images_dir=tmp_path / "images")
    assert [item["file"] for item in summary["unreadable"]] == ["b.jpg"]
    with session_scope(engine) as session:
        readable = dict(session.execute(select(Image.file_name, Image.readable)).all())
    assert readable == {"a.jpg": True, "b.jpg": False, "c.jpg": True}


def test_annotated_size_differing_from_the_file_is_an_error(engine: Engine, tmp_path: Path) -> None:
    path = _coco(tmp_path, GOOD)
    _jpeg(tmp_path / "images" / "a.jpg", width=48, height=64)
    with pytest.raises(IngestError, match="a.jpg: annotations say 64x48 but the file is 48x64"):
        _ingest(engine, path, "coco", images_dir=tmp_path / "images")


def test_holdout_split_is_seeded_stable_and_near_the_fraction() -> None:
    names = [f"img{i}.jpg" for i in range(2000)]
    splits = [holdout_split(name, 0.2, seed=3) for name in names]
    assert splits == [holdout_split(name, 0.2, seed=3) for name in names]
    assert 0.17 < splits.count("test") / len(names) < 0.23
    assert splits != [holdout_split(name, 0.2, seed=4) for name in names]


# ---------------------------------------------------------------------------------------------
# Pascal VOC


def _voc(root: Path, objects: dict[str, list[tuple]], splits: dict[str, list[str]]) -> Path:
    """A devkit folder: one 64x48 JPEG and one XML per stem; objects are 1-based corners."""
    for stem, boxes in objects.items():
        _jpeg(root / "JPEGImages" / f"{stem}.jpg")
        parts = "".join(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for name, x1, y1, x2, y2 in boxes
        )
        xml = (
            f"<annotation><filename>{stem}.jpg</filename><size><width>64</width>"
            f"<height>48</height><depth>3</depth></size>{parts}</annotation>"
        )
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, stems in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root


VOC_OBJECTS = {"r1": [("raccoon", 1, 1, 64, 48)], "r2": [("raccoon", 5, 5, 20, 20)], "r3": []}


def test_voc_ingest_takes_splits_from_imagesets_and_1_based_corners(
    engine: Engine, tmp_path: Path
) -> None:
    root = _voc(tmp_path / "pets", VOC_OBJECTS, {"train": ["r1", "r3"], "test": ["r2"]})
    summary = _ingest(engine, root, "voc")
    assert summary["dataset"] == "pets"
    assert summary["splits"] == {"test": 1, "train": 2}
    assert (summary["objects"], summary["background_only"]) == (2, 1)
    with session_scope(engine) as session:
        whole = session.scalars(select(Object).join(Image).where(Image.file_name == "r1.jpg")).one()
    # xmin=1..xmax=64 covers the whole 64-pixel width: [0, 64) in 0-based xyxy.
    assert whole.box == (0.0, 0.0, 64.0, 48.0)


def test_voc_split_option_ingests_only_that_list(engine: Engine, tmp_path: Path) -> None:
    root = _voc(tmp_path / "pets", VOC_OBJECTS, {"train": ["r1", "r3"], "test": ["r2"]})
    assert _ingest(engine, root, "voc", split="test")["images"] == 1


def test_voc_without_imagesets_holds_out_a_seeded_fraction(engine: Engine, tmp_path: Path) -> None:
    root = _voc(tmp_path / "pets", VOC_OBJECTS, {})
    summary = _ingest(engine, root, "voc", holdout=0.5, seed=1)
    expected = [holdout_split(stem, 0.5, 1) for stem in ("r1", "r2", "r3")]
    assert sum(summary["splits"].values()) == 3
    assert summary["splits"].get("test", 0) == expected.count("test")


def test_voc_truncated_jpeg_is_listed_unreadable_and_the_others_are_kept(
    engine: Engine, tmp_path: Path
) -> None:
    root = _voc(tmp_path / "pets", VOC_OBJECTS, {"train": ["r1", "r2", "r3"]})
    whole = (root / "JPEGImages" / "r2.jpg").read_bytes()
    (root / "JPEGImages" / "r2.jpg").write_bytes(whole[: len(whole) // 2])

    summary = _ingest(engine, root, "voc")
    assert summary["images"] == 3
    assert [item["file"] for item in summary["unreadable"]] == ["r2.jpg"]
    assert "truncated" in summary["unreadable"][0]["reason"].lower()
    with session_scope(engine) as session:
        unreadable = session.scalars(select(Image).where(Image.readable.is_(False))).one()
    assert unreadable.file_name == "r2.jpg" and "truncated" in unreadable.unreadable_reason.lower()


def test_voc_malformed_xml_names_the_file(engine: Engine, tmp_path: Path) -> None:
    root = _voc(tmp_path / "pets", VOC_OBJECTS, {"train": ["r1", "r2", "r3"]})
    (root / "Annotations" / "r2.xml").write_text("<annotation><size>")
    with pytest.raises(IngestError, match=r"r2.xml: malformed XML"):
        _ingest(engine, root, "voc")
    assert _counts(engine) == (0, 0)


def test_voc_box_with_xmax_below_xmin_names_file_object_and_box(
    engine: Engine, tmp_path: Path
) -> None:
    objects = dict(VOC_OBJECTS, r3=[("raccoon", 1, 1, 9, 9), ("raccoon", 30, 5, 20, 20)])
    root = _voc(tmp_path / "pets", objects, {"train": ["r1", "r2", "r3"]})
    with pytest.raises(IngestError, match=r"r3.xml, object 2: box \[30.0, 5.0, 20.0, 20.0\]"):
        _ingest(engine, root, "voc")
    assert _counts(engine) == (0, 0)


def test_voc_image_listed_in_two_splits_is_an_error(engine: Engine, tmp_path: Path) -> None:
    root = _voc(tmp_path / "pets", VOC_OBJECTS, {"train": ["r1", "r2"], "test": ["r2", "r3"]})
    with pytest.raises(IngestError, match="'r2' is listed in both"):
        _ingest(engine, root, "voc")


def test_voc_folder_without_annotations_says_what_a_devkit_holds(
    engine: Engine, tmp_path: Path
) -> None:
    with pytest.raises(IngestError, match="not a Pascal VOC devkit folder"):
        _ingest(engine, tmp_path, "voc")


# ---------------------------------------------------------------------------------------------
# The real datasets in ../shared/data


def test_raccoon_ingests_200_images_and_217_objects(sqlite_engine: Engine) -> None:
    summary = _ingest(sqlite_engine, shared_data("raccoon"), "voc")
    assert (summary["images"], summary["objects"]) == (200, 217)
    assert summary["splits"] == {"test": 40, "train": 160}
    assert summary["unreadable"] == []


def test_coco128_person_train_ingests_128_images_and_254_objects(sqlite_engine: Engine) -> None:
    annotations = shared_data("coco128", "annotations", "person_train2017.json")
    summary = _ingest(
        sqlite_engine, annotations, "coco", images_dir=shared_data("coco128", "train2017")
    )
    assert (summary["images"], summary["objects"]) == (128, 254)
    assert summary["dataset"] == "coco128"
