"""The dashboard's HTTP interface: JSON endpoints, crops, static files, and that it never writes."""

from __future__ import annotations

import io
import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import Engine
from starlette.testclient import TestClient

from hardmine.dashboard.app import create_app, open_store
from hardmine.dashboard.queries import read_session
from hardmine.errors import HardmineError, StoreError
from hardmine.storage.db import session_scope
from hardmine.storage.models import Dataset, Round
from hardmine.storage.status import status_report
from tests.dashboard.conftest import (
    EMPTY_RUN,
    LARGE_BOX,
    RUN,
    SCORES_HIGH_TO_LOW,
    Store,
    build_store,
    store_snapshot,
)

EXAMPLE_FIELDS = {
    "id",
    "image_id",
    "file_name",
    "box",
    "score",
    "loss",
    "round",
    "kind",
    "times_remined",
    "crop_url",
}


@pytest.fixture
def store(engine: Engine, tmp_path: Path) -> Store:
    return build_store(engine, tmp_path / "images")


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store.engine)) as client:
        yield client


def _report(engine: Engine, run: str | None = None) -> dict:
    """status_report as it reads once through JSON (datetimes are already strings)."""
    with session_scope(engine) as session:
        return json.loads(json.dumps(status_report(session, run)))


# ---------------------------------------------------------------------------------------------
# Status


def test_status_is_exactly_the_status_report(client: TestClient, store: Store) -> None:
    response = client.get("/api/status")
    assert response.status_code == 200
    assert response.json() == _report(store.engine)


def test_run_is_that_runs_entry_of_the_status_report(client: TestClient, store: Store) -> None:
    run = client.get(f"/api/runs/{RUN}").json()
    assert run == _report(store.engine, RUN)["runs"][0]
    # 3 positives + 4 random in round 0; round 1 mined 5, round 2 mined 3.
    assert [r["pool"]["hard"] for r in run["rounds"]] == [0, 5, 8]
    assert run["rounds"][2]["pool"] == {"positive": 3, "random": 4, "hard": 8}


def test_run_with_no_rounds_reports_none(client: TestClient) -> None:
    assert client.get(f"/api/runs/{EMPTY_RUN}").json()["rounds"] == []


@pytest.mark.parametrize(
    "path", ["/api/runs/nope", "/api/runs/nope/hard-negatives", "/api/runs/nope/missing-labels"]
)
def test_unknown_run_is_404_naming_it_and_the_known_runs(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "no run named 'nope'" in response.json()["error"]
    assert RUN in response.json()["error"]


def test_non_finite_metrics_are_sent_as_null(sqlite_engine: Engine, tmp_path: Path) -> None:
    store = build_store(sqlite_engine, tmp_path / "images")
    with session_scope(sqlite_engine) as session:
        round_ = session.query(Round).filter_by(run_id=store.run_id, number=0).one()
        round_.metrics = round_.metrics | {"lamr": math.nan, "fp_per_image": math.inf}

    with TestClient(create_app(sqlite_engine)) as client:
        metrics = client.get(f"/api/runs/{RUN}").json()["rounds"][0]["metrics"]
    assert metrics["lamr"] is None and metrics["fp_per_image"] is None
    assert metrics["ap"] == pytest.approx(0.41)


# ---------------------------------------------------------------------------------------------
# Hard negatives and possible missing labels


def test_hard_negatives_are_every_mined_negative_highest_score_first(
    client: TestClient, store: Store
) -> None:
    body = client.get(f"/api/runs/{RUN}/hard-negatives").json()
    examples = body["examples"]
    assert (body["run"], body["round"], body["limit"]) == (RUN, None, 50)
    assert [e["score"] for e in examples] == SCORES_HIGH_TO_LOW
    assert all(set(e) == EXAMPLE_FIELDS for e in examples)

    top = examples[0]
    assert top["id"] == store.example_ids[0.99]
    assert (top["file_name"], top["round"], top["kind"]) == ("b.jpg", 2, "hard")
    assert top["box"] == [90.0, 40.0, 130.0, 90.0]
    assert top["loss"] == pytest.approx(0.01)
    assert top["crop_url"] == f"/crops/{top['id']}"


def test_hard_negatives_of_a_round_are_that_rounds_only(client: TestClient) -> None:
    examples = client.get(f"/api/runs/{RUN}/hard-negatives?round=1").json()["examples"]
    # Round 1 mined 0.97, 0.81, 0.62, 0.5 and the broken image's 0.3.
    assert [e["score"] for e in examples] == [0.97, 0.81, 0.62, 0.5, 0.3]
    assert {e["round"] for e in examples} == {1}


def test_round_zero_has_no_hard_negatives(client: TestClient) -> None:
    # Round 0's random negatives carry no score: they were drawn, not mined.
    body = client.get(f"/api/runs/{RUN}/hard-negatives?round=0").json()
    assert body["examples"] == []


def test_a_run_with_an_empty_pool_has_no_hard_negatives(client: TestClient) -> None:
    assert client.get(f"/api/runs/{EMPTY_RUN}/hard-negatives").json()["examples"] == []
    assert client.get(f"/api/runs/{EMPTY_RUN}/missing-labels").json()["examples"] == []


def test_hard_negatives_stop_at_the_limit(client: TestClient) -> None:
    examples = client.get(f"/api/runs/{RUN}/hard-negatives?limit=2").json()["examples"]
    assert [e["score"] for e in examples] == [0.99, 0.97]


def test_a_round_the_run_lacks_is_404(client: TestClient) -> None:
    response = client.get(f"/api/runs/{RUN}/hard-negatives?round=7")
    assert response.status_code == 404
    assert response.json()["error"] == f"run '{RUN}' has no round 7: 0, 1, 2"


def test_missing_labels_default_to_the_apps_threshold(client: TestClient) -> None:
    body = client.get(f"/api/runs/{RUN}/missing-labels").json()
    assert body["min_score"] == 0.95
    assert [e["score"] for e in body["examples"]] == [0.99, 0.97, 0.955]
    assert all(set(e) == EXAMPLE_FIELDS for e in body["examples"])


def test_missing_labels_take_min_score_from_the_query(client: TestClient) -> None:
    body = client.get(f"/api/runs/{RUN}/missing-labels?min_score=0.8&limit=3").json()
    assert [e["score"] for e in body["examples"]] == [0.99, 0.97, 0.955]
    body = client.get(f"/api/runs/{RUN}/missing-labels?min_score=0.8").json()
    assert [e["score"] for e in body["examples"]] == [0.99, 0.97, 0.955, 0.81]


def test_missing_labels_are_empty_when_every_score_is_below_the_threshold(
    client: TestClient,
) -> None:
    body = client.get(f"/api/runs/{RUN}/missing-labels?min_score=1").json()
    assert body["examples"] == []


def test_the_apps_missing_label_score_sets_the_default(store: Store) -> None:
    with TestClient(create_app(store.engine, missing_label_score=0.8)) as client:
        body = client.get(f"/api/runs/{RUN}/missing-labels").json()
    assert body["min_score"] == 0.8 and len(body["examples"]) == 4


@pytest.mark.parametrize(
    "query",
    [
        "hard-negatives?round=abc",
        "hard-negatives?round=-1",
        "hard-negatives?round=1.5",
        "hard-negatives?limit=0",
        "hard-negatives?limit=501",
        "missing-labels?limit=x",
        "missing-labels?min_score=2",
        "missing-labels?min_score=-0.1",
        "missing-labels?min_score=nan",
        "missing-labels?min_score=high",
    ],
)
def test_bad_query_values_are_400_naming_the_parameter(client: TestClient, query: str) -> None:
    response = client.get(f"/api/runs/{RUN}/{query}")
    assert response.status_code == 400
    name = query.split("?")[1].split("=")[0]
    assert response.json()["error"].startswith(f"{name} must be")


@pytest.mark.parametrize("score", [0.0, -0.5, 1.01, math.nan])
def test_create_app_rejects_a_missing_label_score_outside_0_to_1(
    sqlite_engine: Engine, score: float
) -> None:
    with pytest.raises(HardmineError, match=r"missing_label_score must be a detector score"):
        create_app(sqlite_engine, missing_label_score=score)


# ---------------------------------------------------------------------------------------------
# Crops


def _jpeg(response) -> PILImage.Image:  # noqa: ANN001 (an httpx response)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    image = PILImage.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    return image


def test_crop_is_a_jpeg_of_the_box_with_a_margin(client: TestClient, store: Store) -> None:
    image = _jpeg(client.get(f"/crops/{store.example_ids[0.97]}"))
    # The 40x20 box grows by 10% per side: 4 px left and right, 2 px top and bottom.
    assert image.size == (48, 24)


def test_crop_of_a_large_box_is_scaled_to_160_px(client: TestClient, store: Store) -> None:
    image = _jpeg(client.get(f"/crops/{store.example_ids[0.955]}"))
    # 300x200 grows to 330x220 (the image is 400x300), then scales by 160/330: 160x107.
    assert LARGE_BOX == (0.0, 0.0, 300.0, 200.0)
    assert image.size == (160, 107)


def test_crop_of_a_positive_is_served_too(client: TestClient, store: Store) -> None:
    # 60x60 box grows 6 px per side: 72x72.
    assert _jpeg(client.get(f"/crops/{store.positive_id}")).size == (72, 72)


@pytest.mark.parametrize("example_id", ["999999", "0", "abc", "1.5", "-1", "1e3", "9" * 30])
def test_crop_of_an_unknown_or_non_integer_id_is_404(client: TestClient, example_id: str) -> None:
    response = client.get(f"/crops/{example_id}")
    assert response.status_code == 404
    assert "no pool example" in response.json()["error"]


def test_crop_of_a_missing_image_file_is_404_naming_it(client: TestClient, store: Store) -> None:
    response = client.get(f"/crops/{store.example_ids[0.5]}")
    assert response.status_code == 404
    assert "gone.jpg is missing" in response.json()["error"]


def test_crop_of_an_image_unreadable_at_ingestion_is_404(client: TestClient, store: Store) -> None:
    response = client.get(f"/crops/{store.example_ids[0.3]}")
    assert response.status_code == 404
    assert response.json()["error"] == (
        "image broken.jpg was unreadable at ingestion: not an image PIL can identify"
    )


def test_crop_of_an_image_that_no_longer_decodes_is_404(client: TestClient, store: Store) -> None:
    with session_scope(store.engine) as session:
        path = session.get(Dataset, 1).images[0].path
    Path(path).write_bytes(b"not a jpeg any more")
    response = client.get(f"/crops/{store.example_ids[0.97]}")
    assert response.status_code == 404
    assert "does not decode" in response.json()["error"]


# ---------------------------------------------------------------------------------------------
# Page and static files


def test_page_loads_its_script_and_styles_from_this_server_only(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/dashboard.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text

    script = client.get("/static/dashboard.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/pyproject.toml",
        "/static/..%2fpyproject.toml",
        "/static/..%2f..%2f..%2fpyproject.toml",
        "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/..%5c..%5c..%5cpyproject.toml",
        "/static/app.py",
        "/static/",
        "/crops/..%2f..%2f..%2fpyproject.toml",
        "/static/%2fetc%2fpasswd",
    ],
)
def test_no_path_in_a_request_reaches_a_file_outside_the_static_files(
    client: TestClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert b"[project]" not in response.content and b"root:" not in response.content


# ---------------------------------------------------------------------------------------------
# Read-only


def test_no_request_changes_the_store(client: TestClient, store: Store) -> None:
    before = store_snapshot(store.engine)
    paths = [
        "/",
        "/api/status",
        f"/api/runs/{RUN}",
        f"/api/runs/{EMPTY_RUN}",
        f"/api/runs/{RUN}/hard-negatives",
        f"/api/runs/{RUN}/hard-negatives?round=2&limit=1",
        f"/api/runs/{RUN}/missing-labels?min_score=0.5",
        f"/api/runs/{RUN}/hard-negatives?round=9",
        "/api/runs/nope",
        *(f"/crops/{example_id}" for example_id in store.example_ids.values()),
        f"/crops/{store.positive_id}",
        "/crops/424242",
    ]
    for path in paths:
        assert client.get(path).status_code in (200, 404)
    assert client.post("/api/status").status_code == 405
    assert store_snapshot(store.engine) == before


def test_read_session_undoes_whatever_it_flushed(sqlite_engine: Engine) -> None:
    with read_session(sqlite_engine) as session:
        session.add(Dataset(name="stray", format="coco"))
        session.flush()
    with session_scope(sqlite_engine) as session:
        assert session.query(Dataset).count() == 0


def test_open_store_of_a_missing_sqlite_file_fails_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(StoreError, match="no store at .*absent.db"):
        open_store(f"sqlite:///{path}")
    assert not path.exists()


def test_open_store_of_an_unmigrated_database_fails_without_upgrading(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="schema none.*hardmine status"):
        open_store(f"sqlite:///{path}")
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_open_store_of_a_migrated_store_opens_it(sqlite_engine: Engine) -> None:
    url = sqlite_engine.url.render_as_string(hide_password=False)
    engine = open_store(url)
    assert engine.url.database == sqlite_engine.url.database
    engine.dispose()
