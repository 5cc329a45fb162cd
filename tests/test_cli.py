"""The `hardmine` command as a user runs it: exit codes, stdout, stderr."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_data


def hardmine(*args: str, cwd: Path, db: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("HARDMINE_DB", None)
    if db:
        env["HARDMINE_DB"] = db
    return subprocess.run(
        [sys.executable, "-m", "hardmine", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ingest_json_reports_raccoon_counts(tmp_path: Path) -> None:
    result = hardmine(
        "ingest", str(shared_data("raccoon")), "--format", "voc", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["images"], summary["objects"]) == (200, 217)
    assert summary["splits"] == {"test": 40, "train": 160}
    # The default store is a SQLite file in the working directory.
    assert (tmp_path / "hardmine.db").is_file()


def test_ingest_table_lists_the_counts(tmp_path: Path) -> None:
    annotations = shared_data("coco128", "annotations", "person_train2017.json")
    images = shared_data("coco128", "train2017")
    result = hardmine(
        "ingest", str(annotations), "--format", "coco", "--images", str(images), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "128" in result.stdout and "254" in result.stdout


def test_bad_annotation_exits_1_with_the_message_on_stderr_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"")
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [8, 1, -3, 4]}],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "bad.json").write_text(json.dumps(coco))
    result = hardmine("ingest", "bad.json", "--format", "coco", cwd=tmp_path)
    assert result.returncode == 1
    assert "annotation 5 in bad.json" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_unknown_format_is_rejected_by_the_parser(tmp_path: Path) -> None:
    result = hardmine("ingest", ".", "--format", "yolo", cwd=tmp_path)
    assert result.returncode == 2
    assert "yolo" in result.stderr


@pytest.mark.slow
def test_demo_runs_a_round_through_prefect_and_status_json_matches(tmp_path: Path) -> None:
    # One short round: the README's `make demo` runs three full ones.
    result = hardmine("demo", "--workdir", "demo", "--rounds", "1", "--steps", "40", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run demo on demo" in result.stdout and "stopped: completed 1 rounds" in result.stdout

    status = hardmine("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert [d["name"] for d in report["datasets"]] == ["demo"]
    assert report["datasets"][0]["splits"] == {"test": 80, "train": 160}
    (run,) = report["runs"]
    assert run["name"] == "demo" and [r["status"] for r in run["rounds"]] == ["done"]
    assert run["rounds"][0]["pool"]["positive"] > 0 and "ap50" in run["rounds"][0]["metrics"]


def test_status_of_an_unknown_run_exits_1_naming_it(tmp_path: Path) -> None:
    result = hardmine("status", "--run", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "no run named 'nope'" in result.stderr


def test_run_on_an_unknown_dataset_exits_1_listing_the_known_ones(tmp_path: Path) -> None:
    result = hardmine("run", "--dataset", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "no dataset named 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_serve_needs_exactly_one_schedule(tmp_path: Path) -> None:
    result = hardmine("serve", "--run", "r", cwd=tmp_path)
    assert result.returncode == 1
    assert "exactly one of --cron EXPR and --interval SECONDS" in result.stderr


def test_db_flag_and_environment_select_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    root = shared_data("raccoon")
    assert hardmine("ingest", str(root), "--format", "voc", cwd=tmp_path, db=url).returncode == 0
    assert (tmp_path / "elsewhere.db").is_file() and not (tmp_path / "hardmine.db").exists()
    listed = hardmine("status", "--json", "--db", url, cwd=tmp_path)
    assert [d["name"] for d in json.loads(listed.stdout)["datasets"]] == ["raccoon"]
