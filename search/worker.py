"""A worker: pull trials from one study until its budget is spent across all workers.

    sarsweep worker --campaign configs/campaign.yaml --variant resnet_lite --stage quick

Why ask/tell and not `study.optimize`: `optimize` creates a trial before any callback can say
the budget is spent, so N workers overshoot by up to N-1 trials. Here a trial is claimed under
the study lock (storage/locks.py), which makes the budget exact. `optimize` is also the only
place Optuna beats heartbeats, so this module runs its own heartbeat thread, which, unlike
Optuna's, logs and carries on through a transient database error instead of dying.

A trial that fails on its own (non-finite loss, CUDA out of memory, an invalid sampled config)
is FAILed with the reason in its user attrs and the worker goes on. SIGTERM/SIGINT fails the
running trial and queues a retry of it (which resumes from its checkpoint), then exits.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import threading
import time
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState
from sqlalchemy import text
from sqlalchemy.engine import Connection

from search.campaign import STAGES, CampaignConfig
from search.reaper import ReaperThread, reap_locked
from search.studies import load_stage_study
from storage import artifact_store, trial_dir
from storage.artifacts import artifact_dir
from storage.locks import lock_key, locked_transaction, rdb_of
from storage.queries import claim_counts
from storage.rdb import heartbeat_of
from training.config import TrainConfig
from training.errors import CheckpointError, ConfigError, NonFiniteLossError, OutputError
from training.files import ensure_free, ensure_writable

if TYPE_CHECKING:
    from training.data import SplitData  # imports torch, which work() does not need

log = logging.getLogger("sarsweep.worker")

Objective = Callable[[Trial], float]

# Failures that belong to one trial's config, not to the worker: record and go on.
TRIAL_FAILURES: tuple[type[BaseException], ...] = (NonFiniteLossError, ConfigError, CheckpointError)


class WorkerStopped(BaseException):
    """SIGTERM/SIGINT arrived. A BaseException so no library's `except Exception` swallows it."""


@dataclass
class WorkerSummary:
    study: str
    states: Counter[str] = field(default_factory=Counter)
    stopped: bool = False

    def line(self) -> str:
        done = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.states.items())) or "no trial"
        why = "stopped by signal" if self.stopped else "nothing left to run"
        return f"worker on {self.study}: {done}; {why}"


class Heartbeat:
    """Records a trial's heartbeat every interval until stopped; survives database hiccups."""

    def __init__(self, storage: RDBStorage, trial_id: int) -> None:
        self.storage, self.trial_id = storage, trial_id
        self.interval = heartbeat_of(storage)[0]
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        # The claim beat already (claim_trial): wait first, so the thread never needs a second
        # connection while the main thread is still busy starting the trial (64 workers x 2 was
        # 99 of 100).
        while not self.stop_event.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried, never fatal
                log.warning("heartbeat for trial id %s failed (%s); retrying", self.trial_id, exc.__class__.__name__)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGINT into WorkerStopped in the main thread (a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: types.FrameType | None) -> None:
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
        raise WorkerStopped(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT at the OS level, so a claimed trial is never orphaned mid-claim."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_last_reap: dict[tuple[int, str], float] = {}


def claim_trial(study: optuna.Study, storage: RDBStorage, stage: str, budget: int | None,
                under_lock: Callable[[Connection | None], None] | None = None) -> Trial | None:
    """The next trial to run, or None when the study is done (exact under concurrency).

    `under_lock` runs once there is a trial to claim, still under the lock (its storage calls
    go through the lock's transaction, the PostgreSQL connection of which it is given), so it
    sees every trial claimed before this one; what it raises rolls the claim back.

    Waiting trials (promoted configs, retries) come first. A quick study then creates new
    trials until its budget of originals exists: the study's `budget` attr, which `sarsweep
    init` updates when the campaign file's changes (so a running worker stops early or goes on),
    else `budget`. A full study runs only what is waiting. Stale trials
    are reaped first, at most once per heartbeat interval (a pass is several queries, which
    short trials would pay at every claim) and always before saying the study is done.
    """
    key = (id(storage), study.study_name)
    with locked_transaction(storage, study.study_name) as conn:
        reaped = time.monotonic() - _last_reap.get(key, -math.inf) >= heartbeat_of(storage)[0]
        while True:
            if reaped:
                reap_locked(study, conn)  # a dead peer's trial is failed and its retry queued before we count
                _last_reap[key] = time.monotonic()
            waiting, originals, current = claim_counts(rdb_of(storage), study._study_id, conn)
            limit = current if current is not None else budget  # the study's, as `init` last set it
            if not waiting and (stage == "full" or limit is None or originals >= limit):
                if not reaped:
                    reaped = True
                    continue
                return None
            break
        if under_lock is not None:
            under_lock(conn)
        if waiting:  # Optuna pops the oldest WAITING trial (a retry or a promoted config)
            with warnings.catch_warnings():
                # Optuna warns that heartbeats want optimize(); this module beats them itself.
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial_id = study.ask()._trial_id
        else:
            # Nothing waits (we counted under the lock), so only the insert needs the lock: ask()
            # would also sync every unfinished trial from the database to look for WAITING ones,
            # which held the lock for ~60 % of a trivial trial and capped 2 workers at 1.5x one.
            trial_id = study._storage.create_new_trial(study._study_id)
        # The first heartbeat commits with the trial: Optuna never reaps a RUNNING trial that
        # has no heartbeat, so a worker killed (or a reply lost) between claim and first beat
        # would leave it RUNNING forever and its budget slot spent.
        rdb_of(storage).record_heartbeat(trial_id)
    return _trial_object(study, trial_id)


def _trial_object(study: optuna.Study, trial_id: int) -> Trial:
    """The Trial for a claimed trial id, built after the lock is released (Trial() reads the
    trial and calls the sampler's before_trial, which may read the whole study).

    Does what study.ask() does after it has a trial id: drop the thread's per-trial cache of
    all trials (a private attr of Optuna 5.0's Study; study.tell drops it too), so samplers
    see the trials finished since, then Trial(study, trial_id).
    """
    local = getattr(study, "_thread_local", None)
    if local is not None:
        local.cached_all_trials = None
    return Trial(study, trial_id)


def retry_later(study: optuna.Study, trial: Trial, reason: str) -> None:
    """FAIL the trial and queue a copy that keeps its params (and so its seed and checkpoint).

    Under the study lock, so a reaper never sees the FAIL without its retry (and re-queues it).
    """
    trial.set_user_attr("fail_reason", reason)
    with locked_transaction(study._storage, study.study_name), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the callback's, once per call
        frozen = study.tell(trial, state=TrialState.FAIL)
        RetryHeartbeatStaleTrialCallback()(study, frozen)


def _tell(study: optuna.Study, trial: Trial, values: float | None = None, state: TrialState | None = None) -> bool:
    """study.tell, except when a reaper already failed the trial (its heartbeats were lost, e.g.
    in a network partition longer than the grace period): then its retry exists or is queued by
    the next reaper pass, and this worker goes on instead of dying as stock Optuna's does.

    Calls the function behind `study.tell` (the one `optimize` uses): `study.tell` also reloads
    the finished trial to return a copy of it, six queries per trial that nobody here reads.
    """
    from optuna.study._tell import _tell_with_warning

    try:
        _tell_with_warning(study, trial, value_or_values=values, state=state)
        return True
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning("trial %d was failed by a reaper while it ran (heartbeats lost); its retry will run", trial.number)
        return False
    except ValueError as exc:
        if "finished" not in str(exc).lower() and "fail" not in str(exc).lower():
            raise
        log.warning("trial %d was finished elsewhere while it ran (%s)", trial.number, exc)
        return False


def run_one(study: optuna.Study, storage: RDBStorage, trial: Trial, objective: Objective) -> TrialState:
    with Heartbeat(storage, trial._trial_id):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return TrialState.PRUNED if _tell(study, trial, state=TrialState.PRUNED) else TrialState.FAIL
        except TRIAL_FAILURES as exc:
            return _fail(study, trial, f"{exc.__class__.__name__}: {exc}")
        except OutputError as exc:
            # The worker's disk, not the trial: every trial here would fail the same way. The
            # trial is retried (from its last.pt) by a worker that can write; this one stops.
            retry_later(study, trial, f"worker could not write its output: {exc}")
            raise OutputError(exc.path, f"{exc.reason}; trial {trial.number} queued for retry") from None
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower():
                raise
            _free_cuda_memory()
            return _fail(study, trial, f"CUDA out of memory: {str(exc).splitlines()[0]}")
    return TrialState.COMPLETE if _tell(study, trial, values=value) else TrialState.FAIL


def _fail(study: optuna.Study, trial: Trial, reason: str) -> TrialState:
    log.warning("trial %d failed: %s", trial.number, reason)
    trial.set_user_attr("fail_reason", reason)
    _tell(study, trial, state=TrialState.FAIL)
    return TrialState.FAIL


def _free_cuda_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_worker(
    storage: RDBStorage, campaign: CampaignConfig, variant: str, stage: str, artifacts: Path,
    device: str | None = None, worker_index: int | None = None, progress: bool | None = None,
    create_study: bool = False, on_trial: Callable[[Trial, TrialState], None] | None = None,
    on_data: Callable[[SplitData], None] | None = None,
) -> WorkerSummary:
    """Run trials of (variant, stage) until the study is done or a signal stops the worker.
    `on_data` is shown the stage's data once it is prepared."""
    # Deferred: the training stack (torch) is not needed by work() itself (search/loadtest.py).
    from search.objective import TrialContext, run_trial
    from training.data import load_data
    from training.inference import resolve_device

    resolve_device(device or campaign.train.device)  # no GPU here: one line, exit 2, no trial claimed
    study = load_stage_study(storage, campaign, variant, stage, worker_index, create=create_study)
    budget = campaign.quick.trials if stage == "quick" else None
    # Prepared once: a DataError stops the worker before it has claimed any trial.
    data = load_data(campaign.train.data, campaign.stage(stage).fraction)
    if on_data is not None:
        on_data(data)
    need = largest_of(campaign, variant)

    def check_disk() -> None:
        """Before every claim: the artifacts folders can be written (a cheap probe, no lock)."""
        for folder in (artifacts, artifact_dir(artifacts)):
            ensure_writable(folder)

    def check_room(conn: Connection | None) -> None:
        """Under the claim lock: room for the largest trial's checkpoints plus what the campaign's
        running trials have still to write (seen from this worker's artifacts root, the shared
        disk they all write to). Else the worker stops with no trial claimed, and a restart loop
        (compose's on-failure) only probes: no trial is failed, nor its retry spent, at its first
        checkpoint. Counting the running trials covers workers started together (launch
        --per-gpu N, compose --scale), each of which used to see the empty disk and claim, and
        those of the other variants and stage, whose workers write to the same root. Those hold
        other study locks, so on PostgreSQL the check also takes the campaign's disk lock in the
        claim's transaction (after the study lock, always in that order): two workers of different
        variants no longer both pass on the same free bytes. SQLite's lock is one for all studies."""
        if conn is not None:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(f"disk:{campaign.name}")})
        running = running_trials(storage, campaign)
        if not running:
            ensure_free(artifacts, need, f"{variant} trials' checkpoints")
            return
        pending = sum(still_to_write(t, artifacts, campaign, v, s, largest_of(campaign, v)) for v, s, t in running)
        n = len(running)
        ensure_free(artifacts, need + pending, f"checkpoints of this {variant} trial and of {n} running "
                                               f"trial{'s' if n > 1 else ''} of campaign {campaign.name}")

    def finished(trial: Trial, state: TrialState) -> None:
        if state in (TrialState.COMPLETE, TrialState.PRUNED) and not campaign.keep_last_checkpoint:
            drop_resume_state(trial)
        if on_trial is not None:
            on_trial(trial, state)

    check_disk()  # before the artifact store is made
    ctx = TrialContext(campaign, variant, stage, artifacts, data, device, progress, artifact_store(artifacts))
    return work(study, storage, stage, budget, lambda trial: run_trial(trial, ctx), finished, check_disk,
                check_room)


@functools.lru_cache(maxsize=64)
def _peak(variant: str, model_kwargs: tuple[tuple[str, int], ...]) -> int:
    """checkpoint_bytes, once per model size: it runs under the claim lock, for every running trial."""
    from training.checkpoint import checkpoint_bytes

    return checkpoint_bytes(variant, dict(model_kwargs))


def running_trials(storage: RDBStorage, campaign: CampaignConfig) -> list[tuple[str, str, FrozenTrial]]:
    """(variant, stage, trial) for every running trial of the campaign: all its variants' studies,
    both stages. A study not made yet has none. (Listing the studies, not looking each up by
    name: a missing name raises inside Optuna's session, which rolls back the claim lock's
    transaction on SQLite.)"""
    ids = {study.study_name: study._study_id for study in storage.get_all_studies()}
    found = []
    for variant in campaign.variants:
        for stage in STAGES:
            study_id = ids.get(campaign.study_name(variant, stage))
            if study_id is not None:
                running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                found += [(variant, stage, trial) for trial in running]
    return found


def largest_of(campaign: CampaignConfig, variant: str) -> int:
    """checkpoint_bytes of the variant's largest trial in this campaign."""
    return _peak(variant, tuple(campaign.largest_model(variant).items()))


def still_to_write(trial: FrozenTrial, artifacts: Path, campaign: CampaignConfig, variant: str, stage: str,
                   largest: int) -> int:
    """Bytes a running trial may still add to the disk: its checkpoints' peak (checkpoint_bytes,
    for its own model size once it has recorded its config, else the largest's) less what its
    folder already holds."""
    from training.checkpoint import held_bytes

    config = trial.user_attrs.get("config")
    peak = largest if config is None else _peak(variant, tuple(TrainConfig.from_dict(config).model_kwargs.items()))
    number = int(trial.system_attrs.get("failed_trial", trial.number))  # a retry writes to its original's folder
    return max(0, peak - held_bytes(trial_dir(artifacts, campaign.name, variant, stage, number)))


def drop_resume_state(trial: Trial) -> None:
    """Delete a finished trial's last.pt: weights plus optimizer state, there for a retry to resume
    from, which a COMPLETE or PRUNED trial never gets. best.pt (its `checkpoint`) stays."""
    best = trial.user_attrs.get("checkpoint")
    if best is None:  # the objective failed before recording it
        return
    last = Path(best).with_name("last.pt")
    try:
        last.unlink(missing_ok=True)
    except OSError as exc:  # clean-up only: the trial's result is told already
        log.warning("could not delete %s (%s)", last, exc.strerror or exc)


def claim_paused(study: optuna.Study, storage: RDBStorage, stage: str, budget: int | None,
                 under_lock: Callable[[Connection | None], None] | None = None) -> Trial | None:
    """claim_trial that waits out a database outage instead of ending the worker.

    The storage's own calls already wait (storage.rdb.ResilientRDBStorage); a claim runs them in
    the study lock's transaction, without their retries, so the whole claim is retried the same
    way (and, like them, marks the recovery that holds back reaping). A plain RDBStorage is not.
    """
    def claim(_attempt: int) -> Trial | None:
        with signals_deferred():
            return claim_trial(study, storage, stage, budget, under_lock)

    through = getattr(rdb_of(storage), "through_outage", None)
    return claim(1) if through is None else through("a trial claim", claim)


def work(
    study: optuna.Study, storage: RDBStorage, stage: str, budget: int | None, objective: Objective,
    on_trial: Callable[[Trial, TrialState], None] | None = None, before_claim: Callable[[], None] | None = None,
    claim_check: Callable[[Connection | None], None] | None = None,
) -> WorkerSummary:
    """The worker loop over any objective: reap, claim under the lock, run with heartbeats, tell.

    `before_claim` runs before each claim, `claim_check` inside it under the study lock when
    there is a trial to claim; what either raises ends the loop with no trial claimed."""
    summary = WorkerSummary(study.study_name)
    # Reap the study on a timer too: a dead peer's trial is retried while this worker trains.
    period = heartbeat_of(storage)[1]
    with stop_on_signals(), ReaperThread(study, period):
        while True:
            trial = None
            try:
                if before_claim is not None:
                    before_claim()
                trial = claim_paused(study, storage, stage, budget, claim_check)
                if trial is None:
                    break
                state = run_one(study, storage, trial, objective)
            except WorkerStopped as stop:
                summary.stopped = True
                if trial is not None and storage.get_trial(trial._trial_id).state == TrialState.RUNNING:
                    retry_later(study, trial, f"worker stopped by {stop}")
                    log.warning("stopped by %s: trial %d queued for retry", stop, trial.number)
                break
            summary.states[state.name] += 1
            if on_trial is not None:
                on_trial(trial, state)
    return summary
