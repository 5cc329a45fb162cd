"""The page in headless Chromium: the pool chart, the galleries' crops, the numbers, the refresh.

Needs Debian's Chromium at /usr/bin/chromium (`apt-get install chromium`); without it the test
skips, unless HARDMINE_REQUIRE_BROWSER=1 makes that a failure. The screenshot goes to
test-artifacts/dashboard.png at the repository root.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette

from hardmine.dashboard.app import create_app
from hardmine.dashboard.chromium import CHROMIUM, CHROMIUM_ARGS
from hardmine.storage.db import session_scope
from hardmine.storage.models import Round, RoundStatus
from hardmine.storage.status import status_report
from tests.dashboard.conftest import RUN, build_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WAIT_MS = 15_000  # page content and the 3 s refresh, with room for a loaded machine


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.is_file():
        reason = f"no Chromium at {CHROMIUM}; install it with `apt-get install -y chromium`"
        if os.environ.get("HARDMINE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason} (HARDMINE_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return CHROMIUM


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Runs `app` under uvicorn in a thread on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _finish_round_two(engine: Engine) -> None:
    with session_scope(engine) as session:
        round_ = session.query(Round).filter_by(number=2).one()
        round_.status = RoundStatus.done
        round_.finished_at = round_.started_at + timedelta(seconds=120)
        round_.metrics = {"ap": 0.66, "ap50": 0.9, "fp_per_image": 0.7, "recall": 0.81}


def test_page_draws_the_run_its_crops_and_the_status_numbers(
    chromium: Path, sqlite_engine: Engine, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    # Round 2 is still evaluating, so the page keeps refreshing until it is done.
    build_store(sqlite_engine, tmp_path / "images", last_status=RoundStatus.evaluating)
    with session_scope(sqlite_engine) as session:
        report = status_report(session)
    run = next(run for run in report["runs"] if run["name"] == RUN)

    with serving(create_app(sqlite_engine)) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        requested: list[str] = []
        script_errors: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{base}/", wait_until="domcontentloaded")

        # The newest run is shown, one chart group per round.
        page.wait_for_selector("#pool-chart .round-group")
        assert page.locator("#run-select").input_value() == RUN
        assert page.locator("#pool-chart .round-group").count() == 3
        assert page.locator("#live").inner_text().startswith("live")

        # The numbers are the status report's.
        last = run["rounds"][2]
        row = page.locator('#rounds-table tr[data-round="2"]')
        assert row.locator('td[data-field="pool-hard"]').inner_text() == str(last["pool"]["hard"])
        total = page.locator('.round-group[data-round="2"] [data-field="pool-total"]')
        assert total.text_content() == str(sum(last["pool"].values()))
        ap50 = run["rounds"][1]["metrics"]["ap50"]
        cell = page.locator('#rounds-table tr[data-round="1"] td[data-field="ap50"]')
        assert cell.inner_text() == f"{ap50:.3f}"

        # Round 2's three hard negatives and the three scored 0.95 or more, every crop loaded.
        page.wait_for_function(_crops_settled("#gallery", 3))
        page.wait_for_function(_crops_settled("#missing-labels", 3))
        widths = page.eval_on_selector_all(
            ".gallery img.crop", "all => all.map(i => i.naturalWidth)"
        )
        assert len(widths) == 6 and all(width > 0 for width in widths)
        scores = page.locator('#gallery [data-field="score"]').all_inner_texts()
        assert scores == ["score 0.990", "score 0.955", "score 0.700"]

        # Round 1 lists 5; two images are missing or unreadable and show a placeholder.
        page.select_option("#round-select", "1")
        page.wait_for_function(_crops_settled("#gallery", 5))
        assert page.locator("#gallery .card.broken").count() == 2

        # Round 2 finishes: the next refresh shows it, then the page stops refreshing.
        _finish_round_two(sqlite_engine)
        done = page.locator('#rounds-table tr[data-round="2"] td[data-field="status"]')
        page.wait_for_function(
            "() => document.querySelector('#live').textContent === 'finished'", timeout=WAIT_MS
        )
        assert done.inner_text() == "done"
        assert row.locator('td[data-field="ap50"]').inner_text() == "0.900"

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        browser.close()

    assert script_errors == []
    assert requested and all(url.startswith(f"{base}/") for url in requested)


def _crops_settled(gallery: str, cards: int) -> str:
    """JS: `gallery` shows `cards` cards and every crop in it has loaded or failed."""
    return f"""() => {{
        const shown = document.querySelectorAll('{gallery} .card');
        const images = [...document.querySelectorAll('{gallery} img.crop')];
        return shown.length === {cards} && images.every(image => image.complete);
    }}"""
