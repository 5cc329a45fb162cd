"""`hardmine dashboard` as a user runs it: bad options fail at once, a good one serves the store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.dashboard.conftest import RUN, build_store


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HARDMINE_DB", None)
    return env


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "hardmine", *args]
    return subprocess.run(
        command, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("score", ["0", "1.5", "-0.2"])
def test_a_missing_label_score_outside_0_to_1_exits_1_naming_the_flag(
    tmp_path: Path, score: str
) -> None:
    result = _run("dashboard", "--missing-label-score", score, cwd=tmp_path)
    assert result.returncode == 1
    assert "--missing-label-score must be a detector score in (0, 1]" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_store_that_does_not_exist_exits_1_and_is_not_created(tmp_path: Path) -> None:
    result = _run("dashboard", "--db", f"sqlite:///{tmp_path / 'nope.db'}", cwd=tmp_path)
    assert result.returncode == 1
    assert "no store at" in result.stderr and "hardmine demo" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_a_port_outside_1_to_65535_exits_1(tmp_path: Path, sqlite_engine: Engine) -> None:
    url = sqlite_engine.url.render_as_string(hide_password=False)
    result = _run("dashboard", "--db", url, "--port", "70000", cwd=tmp_path)
    assert result.returncode == 1
    assert "--port must be a TCP port from 1 to 65535, got 70000" in result.stderr


@pytest.mark.slow
def test_the_dashboard_serves_what_status_json_prints(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    build_store(sqlite_engine, tmp_path / "images")
    url = sqlite_engine.url.render_as_string(hide_password=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    command = [sys.executable, "-m", "hardmine", "dashboard", "--db", url, "--port", str(port)]
    server = subprocess.Popen(
        command, cwd=tmp_path, env=_environment(), stderr=subprocess.PIPE, text=True
    )
    try:
        served = _get_when_up(f"http://127.0.0.1:{port}/api/status", server)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)

    printed = json.loads(_run("status", "--json", "--db", url, cwd=tmp_path).stdout)
    assert served == printed
    assert [run["name"] for run in served["runs"]][-1] == RUN
    assert f"at http://127.0.0.1:{port}/ (read-only" in stderr


def _get_when_up(url: str, server: subprocess.Popen) -> dict:
    """The JSON at `url` once the server answers (it starts within 60 s on a loaded machine)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"hardmine dashboard exited with {server.returncode}")
        try:
            return httpx.get(url, timeout=5).json()
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"hardmine dashboard did not answer at {url} within 60 s")
