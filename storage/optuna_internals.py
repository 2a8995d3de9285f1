"""The one door to Optuna's internals: every private Optuna name sarsweep uses is named here only.

Optuna's public API has no call for some things a worker needs: the id of a study or trial
(storage calls take ids), the storage under a Study's cache, a tell that does not reload the
trial it finished, the ORM models a one-query count is written with, and a session bound to the
study lock's connection. Each is wrapped here in a function with a plain name; everything else in
sarsweep calls those. `missing()` lists what an Optuna upgrade moved, and
tests/storage/test_optuna_internals.py fails on it with one message naming each, so an upgrade
breaks in one place instead of silently in ten.

Where a public call costs nothing measurable it is used instead (lineage goes through
`RetryHeartbeatStaleTrialCallback.retried_trial_number`, see storage.trials).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models as _models
from optuna.study._frozen import FrozenStudy
from optuna.study._tell import _tell_with_warning
from optuna.trial import FrozenTrial, Trial, TrialState

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore as ArtifactStore  # re-exported for type hints
    from sqlalchemy.engine import Connection

# Optuna's ORM models (optuna/storages/_rdb/models.py): the tables its RDB schema has.
TrialModel = _models.TrialModel
TrialSystemAttributeModel = _models.TrialSystemAttributeModel
StudyUserAttributeModel = _models.StudyUserAttributeModel
TrialUserAttributeModel = _models.TrialUserAttributeModel
TrialHeartbeatModel = _models.TrialHeartbeatModel
TrialValueModel = _models.TrialValueModel

RETRY_ATTR = "failed_trial"
"""The system attr RetryHeartbeatStaleTrialCallback gives a retry (the original's number); read
through its public `retried_trial_number`, except in SQL (storage.queries), which needs the key."""

PRIVATE_STORAGE_METHODS = ("_set_trial_param", "_get_trials", "_get_best_trial_id", "_get_stale_trial_ids")
"""RDBStorage's private methods that talk to the database and that Optuna's _CachedStorage (the
wrapper every Study uses) calls directly in Optuna 5: storage.rdb retries them through outages."""


def study_id(study: optuna.Study | FrozenStudy) -> int:
    """The study's id in its storage (what every storage call takes)."""
    return int(study._study_id)


def trial_id(trial: Trial | FrozenTrial) -> int:
    """The trial's id in its storage (unique across studies; its `number` is per study)."""
    return int(trial._trial_id)


def study_storage(study: optuna.Study) -> Any:
    """The storage a Study talks to (Optuna's _CachedStorage around an RDBStorage)."""
    return study._storage


def rdb_of(storage: Any) -> RDBStorage:
    """The RDBStorage under a Study's storage (or the storage itself when it is no cache)."""
    if isinstance(storage, optuna.Study):
        storage = storage._storage
    return storage._backend if isinstance(storage, _CachedStorage) else storage  # type: ignore[no-any-return]


def forget_cached_trials(study: optuna.Study) -> None:
    """Drop the thread's per-trial cache of all trials, as study.ask() does once it has a trial
    (study.tell drops it too), so a sampler sees the trials finished since."""
    study._thread_local.cached_all_trials = None


def tell(study: optuna.Study, trial: Trial, values: float | None = None, state: TrialState | None = None) -> None:
    """What study.tell does, without reloading the finished trial to return a copy of it (six
    queries per trial nobody reads): the function study.tell and study.optimize call."""
    _tell_with_warning(study, trial, value_or_values=values, state=state)


@contextlib.contextmanager
def sessions_on(storage: RDBStorage, conn: Connection) -> Iterator[None]:
    """Run this thread's Optuna storage calls on `conn`, inside its open transaction.

    Optuna makes a session per call from `storage.scoped_session` (thread-local); binding that
    registry's session to `conn` with join_transaction_mode="rollback_only" makes every call join
    the transaction (Optuna's per-call commit does not end it)."""
    from sqlalchemy.orm import Session

    registry = storage.scoped_session
    registry.remove()
    registry.registry.set(Session(bind=conn, join_transaction_mode="rollback_only"))
    try:
        yield
    finally:
        registry.remove()


# ---- the pin: what an Optuna upgrade may have moved -----------------------------------------------

def _params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def missing() -> list[str]:
    """Each private Optuna name this module relies on that is gone or changed shape, in words
    ([] when all is as in Optuna 5). Checked on a throwaway in-memory study."""
    problems = []
    expected_tell = ["study", "trial", "value_or_values", "state"]
    if _params(_tell_with_warning)[:4] != expected_tell:
        problems.append(f"optuna.study._tell._tell_with_warning takes {_params(_tell_with_warning)}, "
                        f"expected {expected_tell} first")
    for name in PRIVATE_STORAGE_METHODS + ("_create_new_trial",):
        if not callable(getattr(RDBStorage, name, None)):
            problems.append(f"RDBStorage.{name} is gone")
    if _params(getattr(RDBStorage, "_get_stale_trial_ids", lambda self, study_id: None)) != ["self", "study_id"]:
        problems.append("RDBStorage._get_stale_trial_ids no longer takes (study_id)")
    if _params(getattr(RDBStorage, "_get_best_trial_id", lambda self, study_id, direction: None)) != [
            "self", "study_id", "direction"]:
        problems.append("RDBStorage._get_best_trial_id no longer takes (study_id, direction): storage.rdb's "
                        "best trial, which passes over seed re-runs, overrides it")
    columns = {TrialModel: ("trial_id", "study_id", "state", "number"),
               TrialSystemAttributeModel: ("trial_id", "key", "value_json"),
               StudyUserAttributeModel: ("study_id", "key", "value_json"),
               TrialUserAttributeModel: ("trial_id", "key", "value_json"),
               TrialHeartbeatModel: ("trial_id", "heartbeat"),
               TrialValueModel: ("trial_id", "objective", "value", "value_type")}
    for model, names in columns.items():
        problems += [f"optuna.storages._rdb.models.{model.__name__}.{c} is gone" for c in names
                     if not hasattr(model, c)]
    try:
        from optuna.artifacts._protocol import ArtifactStore  # noqa: F401 - only its presence matters
    except ImportError:
        problems.append("optuna.artifacts._protocol.ArtifactStore is gone")
    try:
        problems += _missing_on_a_study()
    except Exception as exc:  # noqa: BLE001 - what moved may be what makes a study
        problems.append(f"a throwaway in-memory study could not be made ({exc.__class__.__name__}: {exc})")
    return problems


def _missing_on_a_study() -> list[str]:
    import warnings

    problems = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = RDBStorage("sqlite:///:memory:")
        study = optuna.create_study(storage=storage)
        trial = study.ask()
    for obj, attr, what in ((study, "_study_id", "Study._study_id"), (study, "_storage", "Study._storage"),
                            (trial, "_trial_id", "Trial._trial_id"),
                            (study, "_thread_local", "Study._thread_local")):
        if not hasattr(obj, attr):
            problems.append(f"{what} is gone")
    if hasattr(study, "_thread_local") and not hasattr(study._thread_local, "cached_all_trials"):
        problems.append("Study._thread_local.cached_all_trials is gone")
    if not isinstance(getattr(study, "_storage", None), _CachedStorage) or \
            getattr(study._storage, "_backend", None) is not storage:
        problems.append("Study._storage is no longer a _CachedStorage whose _backend is the RDBStorage")
    if not hasattr(storage.scoped_session, "registry"):
        problems.append("RDBStorage.scoped_session has no registry to bind a session to")
    frozen = study.trials[0] if study.trials else None
    if frozen is None or not hasattr(frozen, "_trial_id"):
        problems.append("FrozenTrial._trial_id is gone")
    storage.engine.dispose()
    return problems
