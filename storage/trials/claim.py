"""The claim: the next trial of a study, under its lock, exact across workers; the first
heartbeat commits with it; a database outage is waited out.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import Trial

from storage.locks import LockConnection, locked_transaction
from storage.optuna_internals import forget_cached_trials, study_id, study_storage, trial_id
from storage.queries import StudyCounts, study_counts
from storage.rdb import ResilientRDBStorage, heartbeat_of
from storage.trials.alive import signals_deferred
from storage.trials.reap import reap_locked

log = logging.getLogger("sarsweep.trials")


UnderLock = Callable[[LockConnection], None]
Refill = Callable[[StudyCounts], bool]
_last_reap: dict[tuple[int, str], float] = {}


def claim(study: optuna.Study, storage: ResilientRDBStorage, budget: int | None, create_new: bool = True,
          under_lock: UnderLock | None = None, refill: Refill | None = None, tag: str | None = None) -> Trial | None:
    """The next trial to run, or None when the study has nothing left (exact under concurrency).

    Waiting trials (promoted configs, retries) come first. With `create_new`, new trials are then
    created until the study's budget of originals exists: its `budget` user attr, which `sarsweep
    init` updates when the campaign file's changes (so a running worker stops early or goes on),
    else `budget`; without it only waiting trials run. Stale trials are reaped first, at most
    once per heartbeat interval (a pass is several queries, which short trials would pay at every
    claim) and always before saying the study is done.

    `under_lock` runs once there is a trial to claim, still under the lock (its storage calls go
    through the lock's transaction, the PostgreSQL connection of which it is given), so it sees
    every trial claimed before this one; what it raises rolls the claim back. `refill` runs, under
    the lock too, when the study has nothing left to claim (its counts, with trials of user attr
    `tag` counted): it may queue more trials (a stage's seed-noise re-runs) and says whether it did.
    """
    key = (id(storage), study.study_name)
    with locked_transaction(storage, study.study_name) as conn:
        reaped = time.monotonic() - _last_reap.get(key, -math.inf) >= heartbeat_of(storage)[0]
        while True:
            if reaped:
                reap_locked(study, conn)  # a dead peer's trial is failed and its retry queued before we count
                _last_reap[key] = time.monotonic()
            counts = study_counts(storage, study_id(study), conn, tag)
            waiting = counts.waiting
            limit = counts.budget if counts.budget is not None else budget  # the study's, as `init` last set it
            if not waiting and (not create_new or limit is None or counts.originals >= limit):
                if not reaped:
                    reaped = True
                    continue
                if refill is not None and refill(counts):
                    refill = None  # queued: count again, once
                    continue
                return None
            break
        if under_lock is not None:
            under_lock(conn)
        if waiting:  # Optuna pops the oldest WAITING trial (a retry or a promoted config)
            with warnings.catch_warnings():
                # Optuna warns that heartbeats want optimize(); this room beats them itself.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                tid = trial_id(study.ask())
        else:
            # Nothing waits (we counted under the lock), so only the insert needs the lock: ask()
            # would also sync every unfinished trial from the database to look for WAITING ones,
            # which held the lock for ~60 % of a trivial trial and capped 2 workers at 1.5x one.
            tid = study_storage(study).create_new_trial(study_id(study))  # Optuna's cache learns of it
        # The first heartbeat commits with the trial: Optuna never reaps a RUNNING trial that
        # has no heartbeat, so a worker killed (or a reply lost) between claim and first beat
        # would leave it RUNNING forever and its budget slot spent.
        storage.record_heartbeat(tid)
    # The Trial is built after the lock is released (Trial() reads the trial and calls the
    # sampler's before_trial, which may read the whole study), as study.ask() does once it has
    # an id: with the per-trial cache dropped, so samplers see the trials finished since.
    forget_cached_trials(study)
    return Trial(study, tid)


def claim_through_outage(study: optuna.Study, storage: ResilientRDBStorage, budget: int | None,
                         create_new: bool = True, under_lock: UnderLock | None = None, refill: Refill | None = None,
                         tag: str | None = None) -> Trial | None:
    """claim() that waits out a database outage instead of ending the worker.

    The storage's own calls already wait (ResilientRDBStorage); a claim runs them in the study
    lock's transaction, without their retries, so the whole claim is retried the same way (and,
    like them, marks the recovery that holds back reaping)."""
    def attempt(_n: int) -> Trial | None:
        with signals_deferred():
            return claim(study, storage, budget, create_new, under_lock, refill, tag)

    return storage.through_outage("a trial claim", attempt)
