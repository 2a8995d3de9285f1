"""Reaping: stale trials FAILed and their retries queued under the study lock, and lost retries
re-queued (a FAIL whose retry was never written).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage.lineage import original_number
from storage.locks import LockConnection, locked_transaction
from storage.optuna_internals import rdb_of, study_id, trial_id
from storage.queries import study_counts
from storage.rdb import ResilientRDBStorage
from storage.trials.end import RETRIED_KINDS

log = logging.getLogger("sarsweep.trials")


def reap_study(study: optuna.Study) -> list[int]:
    """One pass under the study lock: fail stale trials (queueing their retries) and re-queue
    retries lost earlier. Returns the numbers of the trials it failed."""
    with locked_transaction(rdb_of(study), study.study_name) as conn:
        return reap_locked(study, conn)


def reap_locked(study: optuna.Study, conn: LockConnection = None) -> list[int]:
    """reap_study's work, for a caller that already holds the study lock (in locked_transaction;
    `conn` is the lock's connection)."""
    storage: ResilientRDBStorage = rdb_of(study)  # type: ignore[assignment]
    if not storage.reap_allowed(conn):
        return []
    running = {trial_id(t): t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if running:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    failed = sorted(n for tid, n in running.items() if storage.get_trial(tid).state == TrialState.FAIL)
    requeue_lost(study, conn)
    return failed


def _lost_retry(last: FrozenTrial) -> bool:
    """A FAILed trial that was meant to be retried: by its worker (RETRIED_KINDS) or for staleness
    (Optuna's stale check records no reason). A trial that failed on its own (FailKind.TRIAL) is not."""
    if last.state != TrialState.FAIL:
        return False
    kind, reason = last.user_attrs.get("fail_kind"), last.user_attrs.get("fail_reason")
    if kind is not None:
        return kind in RETRIED_KINDS
    # No kind and no reason: Optuna's stale check failed it. (sarsweep 0.1.0 wrote a reason and no
    # kind; its campaigns' fingerprints predate the current space, so none of them is served now.)
    return reason is None


def requeue_lost(study: optuna.Study, conn: LockConnection = None) -> list[int]:
    """Queue the retry of every retry-worthy FAILed trial that has none (within max_retry).

    Trials are grouped by the original they retry; only a chain whose newest member is such a
    FAIL has lost its retry. Call under the study lock (`conn`: its connection). Returns the
    original numbers re-queued.
    """
    storage = rdb_of(study)
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is None:
        return []
    chains: dict[int, list[FrozenTrial]] = defaultdict(list)
    for t in study.get_trials(deepcopy=False):
        chains[original_number(t)].append(t)
    queued = []
    for original, chain in sorted(chains.items()):
        last = max(chain, key=lambda t: t.number)
        if _lost_retry(last):
            before = study_counts(storage, study_id(study), conn).waiting
            callback(study, copy.deepcopy(last))  # honours max_retry through retry_history
            if study_counts(storage, study_id(study), conn).waiting > before:  # one query
                log.warning("trial %d of %s had lost its retry: re-queued", last.number, study.study_name)
                queued.append(original)
    return queued


def reap_studies(storage: ResilientRDBStorage, names: Sequence[str]) -> dict[str, list[int]]:
    """One pass over each existing study of `names`: {study name: trial numbers failed}."""
    failed = {}
    existing = {s.study_name for s in storage.get_all_studies()}
    for name in names:
        if name not in existing:
            continue
        numbers = reap_study(optuna.load_study(study_name=name, storage=storage))
        if numbers:
            failed[name] = numbers
    return failed
