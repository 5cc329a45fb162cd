"""Rounds in real processes: a killed round that is started again, and a served schedule."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from hardmine.pipeline.rounds import create_run
from hardmine.storage.db import session_scope
from hardmine.storage.models import MinedShard, PoolExample, Round, RoundStatus
from tests.helpers import tiny_run_config

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return env | extra


def _start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    # A session of its own, so the whole tree (Prefect's temporary server too) can be killed.
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(
        f"timed out after {timeout_s} s waiting for {what}; log:\n{log.read_text()[-3000:]}"
    )


def _count(engine: Engine, model: type) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_round_killed_while_mining_completes_when_started_again(
    demo_store: Engine, tmp_path: Path
) -> None:
    url = demo_store.url.render_as_string(hide_password=False)
    config = tiny_run_config(tmp_path, shard_images=2, rounds=1)
    create_run(demo_store, "killed", config)
    command = [sys.executable, "-m", "hardmine", "round", "--run", "killed", "--db", url]

    log = tmp_path / "first.log"
    first = _start(command, tmp_path, _env(tmp_path), log)
    try:
        _wait_for(lambda: _count(demo_store, MinedShard) >= 1, 300, "the first admitted shard", log)
    finally:
        _kill(first)
    shards_at_kill = _count(demo_store, MinedShard)
    assert shards_at_kill < 6, "the round finished before it could be killed"

    log = tmp_path / "second.log"
    second = _start(command, tmp_path, _env(tmp_path), log)
    try:
        assert second.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        _kill(second)  # a no-op once it has exited; never leave it running on failure

    with session_scope(demo_store) as session:
        rounds = session.scalars(select(Round)).all()
        shards = session.scalars(select(MinedShard)).all()
        duplicates = session.execute(
            select(PoolExample.image_id, PoolExample.x1, PoolExample.y1, PoolExample.x2)
            .group_by(
                PoolExample.image_id,
                PoolExample.x1,
                PoolExample.y1,
                PoolExample.x2,
                PoolExample.kind,
            )
            .having(func.count() > 1)
        ).all()
        hard = session.scalar(select(func.count()).where(PoolExample.kind == "hard"))
    assert [(r.number, r.status) for r in rounds] == [(0, RoundStatus.done)]
    assert sorted(s.shard for s in shards) == list(range(6))  # 12 images in shards of 2
    assert duplicates == []
    assert hard == sum(s.admitted for s in shards) == rounds[0].metrics["admitted"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_served_interval_schedule_runs_a_round_on_a_prefect_server(
    demo_store: Engine, tmp_path: Path
) -> None:
    url = demo_store.url.render_as_string(hide_password=False)
    create_run(demo_store, "served", tiny_run_config(tmp_path, rounds=1))
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _env(tmp_path, PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    prefect = str(Path(sys.executable).parent / "prefect")

    server_log = tmp_path / "server.log"
    server = _start(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        tmp_path,
        env,
        server_log,
    )
    served = None
    try:
        _wait_for(lambda: _healthy(api), 180, "the Prefect server", server_log)
        serve_log = tmp_path / "serve.log"
        served = _start(
            [
                sys.executable,
                "-m",
                "hardmine",
                "serve",
                "--run",
                "served",
                "--interval",
                "5",
                "--db",
                url,
            ],
            tmp_path,
            env | {"PREFECT_API_URL": api},
            serve_log,
        )

        def round_done() -> bool:
            with session_scope(demo_store) as session:
                statuses = session.scalars(select(Round.status)).all()
            return RoundStatus.done in statuses

        _wait_for(round_done, 480, "a scheduled round to complete", serve_log)
    finally:
        if served is not None:
            _kill(served, signal.SIGTERM)
        _kill(server, signal.SIGTERM)


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
