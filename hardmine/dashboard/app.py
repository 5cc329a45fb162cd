"""The dashboard: a read-only web view of a store's runs, their pool and their hardest negatives.

`create_app(engine)` builds the Starlette app and `serve(db_url)` runs it under uvicorn
(`hardmine dashboard`, http://127.0.0.1:8050/ unless `--host`/`--port` say otherwise). Every
request reads the store in a transaction that is rolled back: the dashboard never writes.

Endpoints:

- `GET /`: the page: a run selector (default the newest run), the pool per round by kind, the
  metrics per round, the rounds with status and timing, the hardest negatives of a chosen round
  and the possible missing labels. It refreshes every 3 s while a round of the run is unfinished,
  every 30 s otherwise (a scheduled round may start).
- `GET /static/NAME`: the page's script and style sheet, from the files shipped in
  `hardmine/dashboard/static/`; no other file is served.
- `GET /api/status`: exactly `hardmine status --json`: `{"datasets": [...], "runs": [...]}`.
- `GET /api/runs/RUN`: one run as `hardmine status --run RUN --json` lists it under `runs`:
  `{"name", "dataset", "created_at", "stop_reason", "config", "rounds": [...]}`.
- `GET /api/runs/RUN/hard-negatives?round=N&limit=K`: the run's mined negatives (of round N if
  given, else of every round), highest score first, at most K (default 50, at most 500):
  `{"run", "round", "limit", "examples": [EXAMPLE, ...]}`.
- `GET /api/runs/RUN/missing-labels?min_score=S&limit=K`: mined negatives scoring S or more
  (default: `hardmine dashboard --missing-label-score`, 0.95) that overlap no labelled object
  by more than half of the smaller box (next to a label, a confident false positive is mostly
  that object at another scale or in part), highest score first, at most K (default 50):
  windows the detector is all but sure hold an object, so a person can tell a background
  look-alike from an object nobody labelled: `{"run", "min_score", "limit", "examples":
  [EXAMPLE, ...]}`.
- EXAMPLE is `{"id", "image_id", "file_name", "box": [x1, y1, x2, y2] (pixels), "score", "loss",
  "round", "kind", "times_remined", "crop_url"}`; `id` is the pool example's id.
- `GET /crops/ID`: a JPEG of pool example ID's box cut from its image with a 10% margin, scaled
  down so its longer side is at most 160 px. Only the image the store records for that example
  is ever read.

Errors are JSON, `{"error": "message"}`: 404 for an unknown run, round or pool example, or an
image file that is missing or does not decode; 400 for a bad query value; 503 when the store
cannot be read. Numbers JSON cannot carry (NaN, infinity) are sent as null.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hardmine.dashboard.crops import CropError, crop_jpeg
from hardmine.dashboard.queries import (
    away_from_objects,
    example_with_image,
    file_names,
    read_session,
)
from hardmine.errors import HardmineError, StoreError
from hardmine.storage.db import database_url, open_engine, schema_head, schema_revision
from hardmine.storage.models import PoolExample, Run
from hardmine.storage.pool import hardest_negatives
from hardmine.storage.runs import get_run
from hardmine.storage.status import status_report

log = logging.getLogger(__name__)
T = TypeVar("T")

STATIC = Path(__file__).parent / "static"
DEFAULT_LIMIT = 50  # examples per gallery request
MAX_LIMIT = 500
# Confident false positives examined for the missing-label view, highest score first; those
# next to a labelled object are dropped before the limit applies.
MISSING_SCAN = 5000
CROP_CACHE_S = 600  # a pool example's box never changes: browsers may keep its crop this long
# Scripts, styles, images and data from this server only: no CDN, no inline code.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(engine: Engine, missing_label_score: float = 0.95) -> Starlette:
    """The dashboard's Starlette app over the store behind `engine`, which it only reads.

    Args:
        engine: an engine on a migrated store (`hardmine.storage.db.open_engine`).
        missing_label_score: score from which a mined negative is listed as a possible missing
            label, in (0, 1].
    """
    check_missing_label_score(missing_label_score, "missing_label_score")
    routes = [
        Route("/", page),
        Route("/static/{name}", static_file),
        Route("/api/status", api_status),
        Route("/api/runs/{run}", api_run),
        Route("/api/runs/{run}/hard-negatives", api_hard_negatives),
        Route("/api/runs/{run}/missing-labels", api_missing_labels),
        Route("/crops/{example_id}", crop),
    ]
    handlers = {HTTPException: _error_response, OperationalError: _store_unreadable}
    app = Starlette(
        routes=routes, exception_handlers=handlers, middleware=[Middleware(_SecurityHeaders)]
    )

    app.state.engine = engine
    app.state.missing_label_score = missing_label_score
    app.state.static_files = {path.name: path for path in STATIC.iterdir() if path.is_file()}
    return app


def serve(
    db_url: str | None,
    host: str = "127.0.0.1",
    port: int = 8050,
    missing_label_score: float = 0.95,
) -> None:
    """Serve the dashboard of the store at `db_url` with uvicorn until interrupted.

    Args:
        db_url: SQLAlchemy URL of the store; None for $HARDMINE_DB or ./hardmine.db.
        host: address to listen on; the loopback address keeps the dashboard on this machine.
        port: TCP port to listen on.
        missing_label_score: score from which a mined negative is a possible missing label.
    """
    import uvicorn

    check_missing_label_score(missing_label_score, "missing_label_score")
    if not 0 < port < 65536:
        raise HardmineError(f"--port must be a TCP port from 1 to 65535, got {port}")
    engine = open_store(db_url)
    app = create_app(engine, missing_label_score)

    if not _is_loopback(host):
        log.warning(
            "dashboard listens on %s: it has no login, anyone who reaches this port sees the "
            "runs and their images",
            host,
        )
    store = engine.url.render_as_string(hide_password=True)
    log.info("dashboard of %s at http://%s:%d/ (read-only; Ctrl+C stops it)", store, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def open_store(db_url: str | None) -> Engine:
    """An engine on an existing store at the newest schema, opened without writing to it.

    Raises:
        StoreError: there is no store at the URL, it cannot be reached, or its schema is older
            than this hardmine's (any other hardmine command upgrades it).
    """
    url = database_url(db_url)
    database = make_url(url).database if url.startswith("sqlite") else None
    if database and database != ":memory:" and not Path(database).expanduser().is_file():
        raise StoreError(
            f"no store at {database}; create one with `hardmine demo` or `hardmine ingest`, "
            "or point --db at an existing store"
        )

    engine = open_engine(url, upgrade=False)
    try:
        revision = schema_revision(engine)
    except OperationalError as exc:
        raise StoreError(f"cannot open the store at {_shown(engine)}: {exc.orig}") from exc
    if revision != schema_head():
        raise StoreError(
            f"the store at {_shown(engine)} is at schema {revision or 'none'}, this hardmine "
            f"reads {schema_head()}; run `hardmine status` on it once to upgrade it "
            "(the dashboard never writes)"
        )
    return engine


def check_missing_label_score(score: float, name: str) -> None:
    """Raises a HardmineError naming `name` unless `score` is in (0, 1]."""
    if not 0 < score <= 1:
        raise HardmineError(
            f"{name} must be a detector score in (0, 1], got {score}; e.g. 0.95 lists the "
            "mined negatives the detector scored 0.95 or more"
        )


# ---------------------------------------------------------------------------------------------
# Endpoints. Plain functions: Starlette runs them in its thread pool, off the event loop.


def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def static_file(request: Request) -> Response:
    # Served from the list made at start-up, looked up by name: a request names no path.
    path = request.app.state.static_files.get(request.path_params["name"])
    if path is None:
        raise HTTPException(404, f"no static file {request.path_params['name']!r}")
    return FileResponse(path, headers={"Cache-Control": "no-cache"})


def api_status(request: Request) -> Response:
    with read_session(request.app.state.engine) as session:
        return _JSON(status_report(session))


def api_run(request: Request) -> Response:
    with read_session(request.app.state.engine) as session:
        run = _find_run(session, request.path_params["run"])
        return _JSON(status_report(session, run.name)["runs"][0])


def api_hard_negatives(request: Request) -> Response:
    round_number = _int_param(request, "round", None, 0, 10**9)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)

    with read_session(request.app.state.engine) as session:
        run = _find_run(session, request.path_params["run"])
        numbers = [round_.number for round_ in run.rounds]
        if round_number is not None and round_number not in numbers:
            known = ", ".join(map(str, numbers)) or "none yet"
            raise HTTPException(404, f"run {run.name!r} has no round {round_number}: {known}")
        examples = hardest_negatives(session, run.id, round_number, limit=limit)
        body = {"run": run.name, "round": round_number, "limit": limit}
        return _JSON(body | {"examples": _examples(session, examples)})


def api_missing_labels(request: Request) -> Response:
    default = request.app.state.missing_label_score
    min_score = _score_param(request, "min_score", default)
    limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)

    with read_session(request.app.state.engine) as session:
        run = _find_run(session, request.path_params["run"])
        confident = hardest_negatives(session, run.id, min_score=min_score, limit=MISSING_SCAN)
        examples = away_from_objects(session, confident)[:limit]
        body = {"run": run.name, "min_score": min_score, "limit": limit}
        return _JSON(body | {"examples": _examples(session, examples)})


def crop(request: Request) -> Response:
    raw = request.path_params["example_id"]
    # Pool example ids are positive integers that fit a BIGINT; anything else names nothing.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise HTTPException(404, f"no pool example {raw!r}: crops are named by pool example id")

    with read_session(request.app.state.engine) as session:
        found = example_with_image(session, int(raw))
        if found is None:
            raise HTTPException(404, f"no pool example {raw}")
        example, image = found
        path, box = image.path, example.box
        unreadable = None if image.readable else image.unreadable_reason or "no reason recorded"
        file_name = image.file_name

    if unreadable is not None:
        raise HTTPException(404, f"image {file_name} was unreadable at ingestion: {unreadable}")
    try:
        data = crop_jpeg(path, box)
    except CropError as exc:
        raise HTTPException(404, f"no crop of pool example {raw}: {exc}") from exc
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": f"max-age={CROP_CACHE_S}"}
    )


# ---------------------------------------------------------------------------------------------
# Helpers


def _find_run(session: Session, name: str) -> Run:
    try:
        return get_run(session, name)
    except StoreError as exc:
        raise HTTPException(404, str(exc)) from exc


def _examples(session: Session, examples: list[PoolExample]) -> list[dict[str, Any]]:
    """Pool examples as the JSON the galleries show, in the order given."""
    names = file_names(session, [example.image_id for example in examples])
    return [
        {
            "id": example.id,
            "image_id": example.image_id,
            "file_name": names.get(example.image_id),
            "box": list(example.box),
            "score": example.score,
            "loss": example.loss,
            "round": example.round,
            "kind": example.kind.value,
            "times_remined": example.times_remined,
            "crop_url": f"/crops/{example.id}",
        }
        for example in examples
    ]


def _int_param(request: Request, name: str, default: T, low: int, high: int) -> int | T:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise HTTPException(400, f"{name} must be a whole number from {low} to {high}, got {raw!r}")
    return value


def _score_param(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise HTTPException(400, f"{name} must be a score from 0 to 1, got {raw!r}")
    return value


def _error_response(request: Request, exc: HTTPException) -> Response:
    return _JSON({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _store_unreadable(request: Request, exc: Exception) -> Response:
    log.warning("dashboard request %s failed reading the store: %s", request.url.path, exc)
    return _JSON({"error": f"cannot read the store: {exc}"}, status_code=503)


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _JSON(JSONResponse):
    """JSON with NaN and infinity sent as null, which every JSON parser reads."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            _finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class _SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
