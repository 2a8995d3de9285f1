"""A trial's life on the database: claim, heartbeat, tell, retry, reap. One room for all of it.

    claim_through_outage -> Heartbeat -> (the objective runs) -> tell | fail | retry_later
    reap_study (a worker's Reaper thread, `sarsweep reaper`, and the claim itself)

Why not `study.optimize`: it creates a trial before any callback can say the budget is spent,
so N workers overshoot by up to N-1 trials. Here a trial is claimed under the study lock
(storage.locks), which makes the budget exact. `optimize` is also the only place Optuna beats
heartbeats, so this room has its own heartbeat thread, which, unlike Optuna's, logs and goes on
through a transient database error instead of dying.

Stock Optuna fails a stale trial and queues its retry as two separate writes: a process killed
between them leaves a FAILed trial that is never retried. A reap pass here runs under the study
lock (so the two writes are seen together) and re-queues such lost retries (`requeue_lost`). A
pass right after a database outage or restart is skipped (ResilientRDBStorage.reap_allowed):
live trials' heartbeats are old then, and failing them would be wrong.

Why a trial failed is a named kind (`FailKind`, user attr `fail_kind`) beside its reason in words
(`fail_reason`): a trial that failed on its own (non-finite loss, a model too big for the GPU) is never retried;
one stopped by a signal or by its worker's disk is (and its retry resumes from its checkpoint).
"""

from __future__ import annotations

import copy
import logging
import math
import signal
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from storage.lineage import original_number
from storage.locks import LockConnection, locked_transaction
from storage.optuna_internals import forget_cached_trials, rdb_of, study_id, study_storage, trial_id
from storage.optuna_internals import tell as tell_quietly
from storage.queries import StudyCounts, study_counts
from storage.rdb import ResilientRDBStorage, heartbeat_of

log = logging.getLogger("sarsweep.trials")


class FailKind(StrEnum):
    """Why a trial is FAILed, as its `fail_kind` user attr (its `fail_reason` says it in words)."""

    TRIAL = "trial"
    """Its own config failed it (non-finite loss, a model too big for the GPU, an invalid sampled config):
    every retry would fail the same way, so it is never retried."""
    SIGNAL = "signal"
    """Its worker was stopped (SIGTERM, SIGINT): queued for retry."""
    OUTPUT = "output"
    """Its worker could not write its checkpoints (a full or read-only disk): queued for retry on
    a worker that can."""


RETRIED_KINDS = frozenset({FailKind.SIGNAL, FailKind.OUTPUT})


def frozen(study: optuna.Study, trial: Trial | FrozenTrial) -> FrozenTrial:
    """The trial as stored now (a Trial object carries no state, attrs or lineage of its own)."""
    return rdb_of(study).get_trial(trial_id(trial))


# ---- threads -------------------------------------------------------------------------------------

class Periodic:
    """Calls `action` every `period` seconds on a daemon thread while in its `with` block, first
    after one period. A failure is logged as "<what> failed (<error>)" and tried again next period:
    a missed heartbeat or reaper pass is never fatal."""

    def __init__(self, name: str, period: float, action: Callable[[], object], what: str) -> None:
        self.period, self.action, self.what = period, action, what
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.wait(self.period):
            try:
                self.action()
            except Exception as exc:  # noqa: BLE001 - the next period tries again
                log.warning("%s failed (%s); trying again in %gs", self.what, exc.__class__.__name__, self.period)

    def __enter__(self) -> Periodic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def Heartbeat(storage: ResilientRDBStorage, tid: int) -> Periodic:  # noqa: N802 - used as a class
    """A running trial's heartbeat, every heartbeat interval. The claim beat already: the first
    beat here waits one interval, so the thread never needs a second connection while the main
    thread is still busy starting the trial (64 workers x 2 was 99 of 100)."""
    return Periodic(f"heartbeat-{tid}", heartbeat_of(storage)[0], lambda: storage.record_heartbeat(tid),
                    f"heartbeat for trial id {tid}")


def ReaperThread(studies: optuna.Study | Sequence[optuna.Study], period: float) -> Periodic:  # noqa: N802
    """Reaps the studies every `period` seconds in the background (a dead peer's trial is
    retried while this worker trains)."""
    group = [studies] if isinstance(studies, optuna.Study) else list(studies)

    def reap() -> None:
        for study in group:
            for number in reap_study(study):
                log.warning("trial %d of %s was stale: failed and queued for retry", number, study.study_name)

    names = ", ".join(s.study_name for s in group)
    return Periodic("reaper", period, reap, f"reaper pass on {names}")


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT at the OS level (main thread only), so a claimed trial is never
    orphaned mid-claim: they arrive once the claim has committed and returned its trial."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# ---- claim ---------------------------------------------------------------------------------------

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


# ---- the end of a trial --------------------------------------------------------------------------

def tell(study: optuna.Study, trial: Trial, values: float | None = None, state: TrialState | None = None) -> bool:
    """study.tell, except when a reaper already failed the trial (its heartbeats were lost, e.g.
    in a network partition longer than the grace period): then its retry exists or is queued by
    the next reaper pass, and the worker goes on instead of dying as stock Optuna's does. False
    in that case."""
    try:
        tell_quietly(study, trial, values, state)
        return True
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning("trial %d was failed by a reaper while it ran (heartbeats lost); its retry will run", trial.number)
        return False
    except ValueError as exc:
        # Optuna refuses to tell a trial that is no longer RUNNING: ask the storage, not the message.
        if not frozen(study, trial).state.is_finished():
            raise
        log.warning("trial %d was finished elsewhere while it ran (%s)", trial.number, exc)
        return False


def fail(study: optuna.Study, trial: Trial, reason: str) -> TrialState:
    """FAIL a trial for its own config's sake (FailKind.TRIAL, never retried), with the reason."""
    log.warning("trial %d failed: %s", trial.number, reason)
    trial.set_user_attr("fail_reason", reason)
    trial.set_user_attr("fail_kind", FailKind.TRIAL.value)
    tell(study, trial, state=TrialState.FAIL)
    return TrialState.FAIL


def retry_later(study: optuna.Study, trial: Trial, reason: str, kind: FailKind) -> None:
    """FAIL the trial and queue a copy that keeps its params (and so its seed and checkpoint).

    Under the study lock, so a reaper never sees the FAIL without its retry (and re-queues it)."""
    trial.set_user_attr("fail_reason", reason)
    trial.set_user_attr("fail_kind", kind.value)
    with locked_transaction(rdb_of(study), study.study_name), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the callback's, once per call
        done = study.tell(trial, state=TrialState.FAIL)
        RetryHeartbeatStaleTrialCallback()(study, done)


def still_running(study: optuna.Study, trial: Trial) -> bool:
    return frozen(study, trial).state == TrialState.RUNNING


# ---- reaping -------------------------------------------------------------------------------------

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
