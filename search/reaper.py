"""The reaper: fail (and so retry) stale trials even when no worker starts a new trial.

    sarsweep reaper --campaign configs/campaign.yaml [--period 60] [--once]

Stock Optuna checks for stale trials only when a worker starts a trial, so with one worker, or
with every worker deep in a long GPU trial, a killed worker's trial can sit RUNNING for hours.
The reaper runs `fail_stale_trials` on every study of the campaign each period; the storage's
RetryHeartbeatStaleTrialCallback then queues the retry, which resumes from the checkpoint. A
stale trial is failed within grace period + reaper period. Workers also run one on a timer for
their own study (ReaperThread), and one pass before each trial claim.

Stock Optuna fails the trial and queues its retry as two separate writes: a process killed
between them leaves a FAILed trial that is never retried. Each pass here runs under the study
lock (so the two writes are seen together) and re-queues such lost retries (`requeue_lost`).
A pass right after a database outage or restart is skipped (storage.reap_allowed): live
trials' heartbeats are old then, and failing them would be wrong.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
from collections import defaultdict

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import Connection

from search.campaign import STAGES, CampaignConfig
from storage.locks import locked_transaction, rdb_of
from storage.queries import claim_counts

log = logging.getLogger("sarsweep.reaper")


def reap_allowed(storage: RDBStorage, conn: Connection | None = None) -> bool:
    check = getattr(storage, "reap_allowed", None)
    return True if check is None else bool(check(conn))


def reap_study(study: optuna.Study) -> list[int]:
    """One pass under the study lock: fail stale trials (queueing their retries) and re-queue
    retries lost earlier. Returns the numbers of the trials it failed."""
    with locked_transaction(study._storage, study.study_name) as conn:
        return reap_locked(study, conn)


def reap_locked(study: optuna.Study, conn: Connection | None = None) -> list[int]:
    """reap_study's work, for a caller that already holds the study lock (in locked_transaction;
    `conn` is the lock's connection)."""
    storage = rdb_of(study._storage)
    if not reap_allowed(storage, conn):
        return []
    running = {t._trial_id: t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if running:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    failed = sorted(n for tid, n in running.items() if storage.get_trial(tid).state == TrialState.FAIL)
    requeue_lost(study, conn)
    return failed


def _lost_retry(last: FrozenTrial) -> bool:
    """A FAILed trial that was meant to be retried: failed for staleness (no reason of its own)
    or stopped by a signal. A trial that failed on its own (non-finite loss, OOM) is not."""
    if last.state != TrialState.FAIL:
        return False
    reason = last.user_attrs.get("fail_reason")
    return reason is None or str(reason).startswith("worker stopped")


def requeue_lost(study: optuna.Study, conn: Connection | None = None) -> list[int]:
    """Queue the retry of every retry-worthy FAILed trial that has none (within max_retry).

    Trials are grouped by the original they retry (Optuna's `failed_trial` system attr); only
    a chain whose newest member is such a FAIL has lost its retry. Call under the study lock
    (`conn`: its connection). Returns the original numbers re-queued.
    """
    storage = rdb_of(study._storage)
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is None:
        return []
    chains: dict[int, list[FrozenTrial]] = defaultdict(list)
    for t in study.get_trials(deepcopy=False):
        chains[int(t.system_attrs.get("failed_trial", t.number))].append(t)
    queued = []
    for original, chain in sorted(chains.items()):
        last = max(chain, key=lambda t: t.number)
        if _lost_retry(last):
            before = claim_counts(storage, study._study_id, conn)[0]
            callback(study, copy.deepcopy(last))  # honours max_retry through retry_history
            if claim_counts(storage, study._study_id, conn)[0] > before:  # WAITING trials, one COUNT
                log.warning("trial %d of %s had lost its retry: re-queued", last.number, study.study_name)
                queued.append(original)
    return queued


def reap_campaign(storage: RDBStorage, campaign: CampaignConfig) -> dict[str, list[int]]:
    """One pass over every existing study of the campaign: {study name: trial numbers failed}."""
    failed = {}
    for variant in campaign.variants:
        for stage in STAGES:
            name = campaign.study_name(variant, stage)
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                continue
            numbers = reap_study(study)
            if numbers:
                failed[name] = numbers
    return failed


class ReaperThread:
    """Reaps one study every `period` seconds in the background; a DB error is logged, not fatal."""

    def __init__(self, study: optuna.Study, period: float) -> None:
        self.study, self.period = study, period
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reaper", daemon=True)

    def _run(self) -> None:
        while not self.stop_event.wait(self.period):
            try:
                for number in reap_study(self.study):
                    log.warning("trial %d of %s was stale: failed and queued for retry", number, self.study.study_name)
            except Exception as exc:  # noqa: BLE001 - the next period tries again
                log.warning("reaper pass on %s failed (%s)", self.study.study_name, exc.__class__.__name__)

    def __enter__(self) -> ReaperThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
