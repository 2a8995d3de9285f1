"""Read queries over Optuna's tables that its storage API has no call for, each one round trip.

Written with Optuna's own ORM models (through storage.optuna_internals), so they follow its
schema. A caller holding the study lock passes the lock's connection (`conn`): a lock holder must
not take a second pooled connection (see storage.rdb.ResilientRDBStorage.reap_allowed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optuna.storages import RDBStorage
from sqlalchemy.engine import Connection, Engine


@dataclass
class StudyCounts:
    """A study's trials by what a worker needs to know, from one query (see study_counts)."""

    waiting: int
    running: int
    originals: int
    """Trials that are no retry (no `failed_trial` system attr): what a budget counts."""
    budget: int | None
    """The study's `budget` user attr (set by `sarsweep init`), None when it has none."""
    tagged: int = 0
    """Trials with the user attr `tag` asked for (0 when none was asked for)."""


def study_counts(storage: RDBStorage, study_id: int, conn: Connection | None = None,
                 tag: str | None = None) -> StudyCounts:
    """WAITING and RUNNING trials, original trials, trials with the user attr `tag` and the
    study's `budget` user attr, in one query.

    The claim asks this under the study lock before every trial. Loading every trial through
    `study.get_trials()` for it cost ~3 ms a claim (a quarter of a trivial trial's time, see
    bench/storage_scaling.py). Optuna's own ORM models keep the query in step with its schema.
    The budget is read at each claim, so `sarsweep init` with a changed budget reaches running
    workers.
    """
    import json

    from optuna.trial import TrialState
    from sqlalchemy import case, exists, func, literal, select

    from storage.optuna_internals import (
        RETRY_ATTR,
        StudyUserAttributeModel,
        TrialModel,
        TrialSystemAttributeModel,
        TrialUserAttributeModel,
    )

    retry = exists().where(TrialSystemAttributeModel.trial_id == TrialModel.trial_id,
                           TrialSystemAttributeModel.key == RETRY_ATTR)
    budget = (select(StudyUserAttributeModel.value_json)
              .where(StudyUserAttributeModel.study_id == study_id, StudyUserAttributeModel.key == "budget")
              .scalar_subquery())

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    tagged = exists().where(TrialUserAttributeModel.trial_id == TrialModel.trial_id,
                            TrialUserAttributeModel.key == (tag or ""))
    query = select(count(TrialModel.state == TrialState.WAITING), count(TrialModel.state == TrialState.RUNNING),
                   count(~retry), count(tagged) if tag else literal(0),
                   budget).where(TrialModel.study_id == study_id)
    waiting, running, originals, marked, budget_json = one_row(storage.engine, query, conn)
    value = json.loads(budget_json) if budget_json is not None else None
    whole = isinstance(value, int) and not isinstance(value, bool)
    return StudyCounts(int(waiting), int(running), int(originals), value if whole else None, int(marked or 0))


def best_trial_id(storage: RDBStorage, study_id: int, maximize: bool, excluded_attrs: tuple[str, ...]) -> int:
    """The id of the study's best COMPLETE trial, passing over trials that hold any of the user attrs
    `excluded_attrs` (measurements, such as seed re-runs, that are no point of the search).

    Optuna's own query (TrialModel.find_max_value_trial_id) with that one condition added: ranked by
    value type (-inf < finite < +inf) then value, in the study's direction. No such trial: the
    ValueError Optuna raises, which its callers (study.best_trial, optuna-dashboard) expect.
    """
    from optuna.trial import TrialState
    from sqlalchemy import case, exists, select

    from storage.optuna_internals import TrialModel, TrialUserAttributeModel, TrialValueModel

    kind = TrialValueModel.TrialValueType
    rank = case((TrialValueModel.value_type == kind.INF_NEG, -1), (TrialValueModel.value_type == kind.FINITE, 0),
                (TrialValueModel.value_type == kind.INF_POS, 1))
    measurement = exists().where(TrialUserAttributeModel.trial_id == TrialModel.trial_id,
                                 TrialUserAttributeModel.key.in_(excluded_attrs))
    order = (rank.desc(), TrialValueModel.value.desc()) if maximize else (rank.asc(), TrialValueModel.value.asc())
    query = (select(TrialModel.trial_id).join(TrialValueModel, TrialValueModel.trial_id == TrialModel.trial_id)
             .where(TrialModel.study_id == study_id, TrialModel.state == TrialState.COMPLETE,
                    TrialValueModel.objective == 0, ~measurement)
             .order_by(*order).limit(1))
    with storage.engine.connect() as conn:
        found = conn.execute(query).scalar_one_or_none()
    if found is None:
        raise ValueError("No trials are completed yet (none that is a point of the search).")
    return int(found)


def heartbeat_ages(storage: RDBStorage, study_id: int) -> dict[int, float | None]:
    """Seconds since the last heartbeat of each RUNNING trial of a study, by trial id (None: the
    trial has no heartbeat row, and Optuna never reaps it).

    Measured on the database's clock, the one the reaper judges staleness by (Optuna's
    `_get_stale_trial_ids`), so a status host whose clock is off does not misreport.
    """
    from optuna.trial import TrialState
    from sqlalchemy import func, select

    from storage.optuna_internals import TrialHeartbeatModel, TrialModel

    query = (select(TrialModel.trial_id, TrialHeartbeatModel.heartbeat)
             .outerjoin(TrialHeartbeatModel, TrialHeartbeatModel.trial_id == TrialModel.trial_id)
             .where(TrialModel.study_id == study_id, TrialModel.state == TrialState.RUNNING))
    with storage.engine.connect() as conn:
        # PostgreSQL's now() is timezone-aware, the stored heartbeat naive (as in Optuna's check).
        now = conn.execute(select(func.now())).scalar_one().replace(tzinfo=None)
        rows = conn.execute(query).all()
    return {tid: None if beat is None else max(0.0, (now - beat).total_seconds()) for tid, beat in rows}


def is_stale(beat_age: float | None, grace_period: float) -> bool:
    """A RUNNING trial past the grace period without a heartbeat: its worker is gone, and the
    reaper retries it. One with no heartbeat row at all (age None) is never reaped, so not stale."""
    return beat_age is not None and beat_age > grace_period


def one_row(engine: Engine, query: Any, conn: Connection | None = None) -> Any:
    """A query's one row, on `conn` when given (the study lock's: a lock holder must not take a
    second pooled connection, see reap_allowed), else on a connection of its own."""
    if conn is not None:
        return conn.execute(query).one()
    with engine.connect() as own:
        return own.execute(query).one()
