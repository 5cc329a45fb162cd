import subprocess
import sys
import threading
import time

from sqlalchemy import Engine

from hardmine.storage.locks import run_lock

HOLD_AND_WAIT = """
import sys, time
from hardmine.storage.db import open_engine
from hardmine.storage.locks import run_lock
with run_lock(open_engine(sys.argv[1]), "r"):
    print("held", flush=True)
    time.sleep(600)
"""


def _acquire_in_thread(engine: Engine, run: str) -> threading.Event:
    acquired = threading.Event()

    def take() -> None:
        with run_lock(engine, run):
            acquired.set()

    threading.Thread(target=take, daemon=True).start()
    return acquired


def test_run_lock_makes_a_second_holder_wait_until_release(engine: Engine) -> None:
    with run_lock(engine, "r"):
        waiting = _acquire_in_thread(engine, "r")
        assert not waiting.wait(1.0)
        other_run = _acquire_in_thread(engine, "other")
        assert other_run.wait(10)  # another run's lock is independent
    assert waiting.wait(10)


def test_run_lock_is_released_when_its_holder_is_killed(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        blocked = _acquire_in_thread(engine, "r")
        assert not blocked.wait(1.0)
        holder.kill()
        holder.wait(timeout=30)
        started = time.monotonic()
        assert blocked.wait(30), "the killed holder's lock was never released"
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
