"""Check the dashboard against `hardmine status --json` on a real store (after `make demo`).

    .venv/bin/python scripts/check_dashboard.py [--db URL] [--run RUN] [--screenshot PATH]

Starts `hardmine dashboard` on a free port, opens the page in Debian's headless Chromium,
and checks that the pool chart has one group per round of the run, that every bar's count and
every rounds-table number equals the status JSON, and that the gallery's crops load. Prints what
it compared and exits non-zero on the first mismatch; saves a screenshot.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from hardmine.dashboard.chromium import CHROMIUM, CHROMIUM_ARGS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def status_json(db: list[str], run: str | None) -> dict:
    command = [sys.executable, "-m", "hardmine", "status", "--json", *db]
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    runs = [r for r in report["runs"] if run is None or r["name"] == run]
    if not runs:
        sys.exit(f"no run {run!r} in the store; run `make demo` first")
    return runs[-1]


def wait_for(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    sys.exit(f"the dashboard did not answer at {url}")


def check(expected: object, found: object, what: str) -> None:
    if str(expected) != str(found):
        sys.exit(f"MISMATCH {what}: status JSON says {expected}, the page shows {found}")
    print(f"ok  {what}: {found}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None)
    parser.add_argument("--run", default=None, help="default: the newest run")
    parser.add_argument("--screenshot", default="test-artifacts/dashboard-demo.png")
    args = parser.parse_args()
    db = ["--db", args.db] if args.db else []
    run = status_json(db, args.run)

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hardmine", "dashboard", "--port", str(port), *db]
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/api/status")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.select_option("#run-select", run["name"])
            page.wait_for_function(
                "n => document.querySelectorAll('#pool-chart .round-group').length === n",
                arg=len(run["rounds"]),
            )
            check(
                len(run["rounds"]), page.locator("#pool-chart .round-group").count(), "round groups"
            )
            for round_ in run["rounds"]:
                number = round_["number"]
                for kind, count in round_["pool"].items():
                    bar = page.locator(f'.round-group[data-round="{number}"] rect.pool.kind-{kind}')
                    check(count, bar.get_attribute("data-count"), f"round {number} pool {kind}")
                row = page.locator(f'#rounds-table tr[data-round="{number}"]')
                for field, value, digits in (
                    ("ap50", round_["metrics"].get("ap50"), 3),
                    ("fp_per_image", round_["metrics"].get("fp_per_image"), 3),
                ):
                    cell = row.locator(f'td[data-field="{field}"]').inner_text()
                    check(f"{value:.{digits}f}", cell, f"round {number} {field}")
            page.wait_for_function(
                "() => [...document.querySelectorAll('#gallery img')].some(i => i.naturalWidth > 0)"
            )
            loaded = page.evaluate(
                "[...document.querySelectorAll('#gallery img')]"
                ".filter(i => i.naturalWidth > 0).length"
            )
            print(f"ok  gallery crops loaded: {loaded}")
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.screenshot, full_page=True)
            print(f"screenshot: {args.screenshot}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
