"""The status report: datasets, runs, and per round the pool, what it added, its metrics.

`status_report` builds the documented JSON of `hardmine status --json`, which scripts, tests and
the dashboard share:

    {"datasets": [...], "runs": [{"name", "dataset", "created_at", "stop_reason",
      "rounds": [{"number", "status", "started_at", "finished_at", "elapsed_s",
                  "pool": {"positive", "random", "hard"}, "added": {"positive", "random", "hard"},
                  "metrics": {...}}]}]}

`pool` is the pool as it stood once the round had admitted its examples; `added` is what the
round itself admitted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from hardmine.errors import StoreError
from hardmine.storage.datasets import dataset_overview
from hardmine.storage.models import ExampleKind, Round, Run
from hardmine.storage.pool import added_by_round


def status_report(session: Session, run_name: str | None = None) -> dict[str, Any]:
    """Datasets and runs (or only run `run_name`) as a JSON-ready dict."""
    query = select(Run).options(selectinload(Run.rounds), selectinload(Run.dataset))
    if run_name is not None:
        query = query.where(Run.name == run_name)
    runs = session.scalars(query.order_by(Run.created_at, Run.id)).all()
    if run_name is not None and not runs:
        known = session.scalars(select(Run.name).order_by(Run.name)).all()
        raise StoreError(f"no run named {run_name!r}; the store has {', '.join(known) or 'none'}")

    return {
        "datasets": dataset_overview(session),
        "runs": [_run_report(session, run) for run in runs],
    }


def _run_report(session: Session, run: Run) -> dict[str, Any]:
    added = added_by_round(session, run.id)
    empty = {kind.value: 0 for kind in ExampleKind}
    pool = dict(empty)

    rounds = []
    for round_ in run.rounds:
        round_added = added.get(round_.number, empty)
        pool = {kind: pool[kind] + round_added[kind] for kind in pool}
        rounds.append(_round_report(round_, dict(pool), round_added))
    return {
        "name": run.name,
        "dataset": run.dataset.name,
        "created_at": run.created_at.isoformat(),
        "stop_reason": run.stop_reason,
        "config": run.config,
        "rounds": rounds,
    }


def _round_report(round_: Round, pool: dict[str, int], added: dict[str, int]) -> dict[str, Any]:
    elapsed_s = None
    if round_.started_at and round_.finished_at:
        elapsed_s = round((round_.finished_at - round_.started_at).total_seconds(), 3)
    return {
        "number": round_.number,
        "status": round_.status.value,
        "started_at": round_.started_at.isoformat() if round_.started_at else None,
        "finished_at": round_.finished_at.isoformat() if round_.finished_at else None,
        "elapsed_s": elapsed_s,
        "pool": pool,
        "added": dict(added),
        "metrics": dict(round_.metrics or {}),
    }
