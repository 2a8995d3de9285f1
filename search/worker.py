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

import logging
import signal
import threading
import types
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import Trial, TrialState

from search.campaign import CampaignConfig
from search.objective import TrialContext, run_trial
from search.reaper import ReaperThread
from search.studies import load_stage_study
from storage import artifact_store, study_lock
from training.data import load_data
from training.errors import CheckpointError, ConfigError, NonFiniteLossError

log = logging.getLogger("sarsweep.worker")

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
        self.interval = storage.get_heartbeat_interval() or 30
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried, never fatal
                log.warning("heartbeat for trial id %s failed (%s); retrying", self.trial_id, exc.__class__.__name__)
            self.stop_event.wait(self.interval)

    def __enter__(self) -> Heartbeat:
        self.storage.record_heartbeat(self.trial_id)  # beat at once: a trial with no beat is never reaped
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


def claim_trial(study: optuna.Study, storage: RDBStorage, stage: str, budget: int | None) -> Trial | None:
    """The next trial to run, or None when the study is done (exact under concurrency).

    Waiting trials (promoted configs, retries) come first. A quick study then creates new
    trials until `budget` originals exist; a full study runs only what is waiting.
    """
    with study_lock(storage, study.study_name):
        trials = study.get_trials(deepcopy=False)
        if not any(t.state == TrialState.WAITING for t in trials):
            originals = sum(1 for t in trials if "failed_trial" not in t.system_attrs)
            if stage == "full" or budget is None or originals >= budget:
                return None
        with warnings.catch_warnings():
            # Optuna warns that heartbeats want optimize(); this module beats them itself.
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            return study.ask()


def fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def retry_later(study: optuna.Study, trial: Trial, reason: str) -> None:
    """FAIL the trial and queue a copy that keeps its params (and so its seed and checkpoint)."""
    trial.set_user_attr("fail_reason", reason)
    frozen = study.tell(trial, state=TrialState.FAIL)
    RetryHeartbeatStaleTrialCallback()(study, frozen)


def run_one(study: optuna.Study, storage: RDBStorage, trial: Trial, ctx: TrialContext) -> TrialState:
    with Heartbeat(storage, trial._trial_id):
        try:
            value = run_trial(trial, ctx)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
        except TRIAL_FAILURES as exc:
            return _fail(study, trial, f"{exc.__class__.__name__}: {exc}")
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower():
                raise
            _free_cuda_memory()
            return _fail(study, trial, f"CUDA out of memory: {str(exc).splitlines()[0]}")
    study.tell(trial, value)
    return TrialState.COMPLETE


def _fail(study: optuna.Study, trial: Trial, reason: str) -> TrialState:
    log.warning("trial %d failed: %s", trial.number, reason)
    trial.set_user_attr("fail_reason", reason)
    study.tell(trial, state=TrialState.FAIL)
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
) -> WorkerSummary:
    """Run trials of (variant, stage) until the study is done or a signal stops the worker."""
    study = load_stage_study(storage, campaign, variant, stage, worker_index, create=create_study)
    summary = WorkerSummary(study.study_name)
    budget = campaign.quick.trials if stage == "quick" else None
    # Prepared once: a DataError stops the worker before it has claimed any trial.
    data = load_data(campaign.train.data, campaign.stage(stage).fraction)
    ctx = TrialContext(campaign, variant, stage, artifacts, data, device, progress, artifact_store(artifacts))
    # Reap the study on a timer too: a dead peer's trial is retried while this worker trains.
    period = float(storage.grace_period or 120)
    with stop_on_signals(), ReaperThread(study, period):
        while True:
            trial = None
            try:
                fail_stale(study)
                with signals_deferred():
                    trial = claim_trial(study, storage, stage, budget)
                if trial is None:
                    break
                state = run_one(study, storage, trial, ctx)
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
