"""A worker: pull trials from one study until its budget is spent across all workers.

    sarsweep worker --campaign configs/campaign.yaml --variant resnet_lite --stage quick

The loop reads like the trial loop inside Optuna's study.optimize: claim (under the study lock,
exact across workers) -> run the objective with a heartbeat -> tell. How a trial is claimed, kept
alive, finished and reaped is storage.trials'; this module decides what happens to the worker.

A trial that fails on its own (non-finite loss, CUDA out of memory, an invalid sampled config)
is FAILed with the reason in its user attrs and the worker goes on. SIGTERM/SIGINT fails the
running trial and queues a retry of it (which resumes from its checkpoint), then exits.
"""

from __future__ import annotations

import logging
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import optuna
from optuna.trial import Trial, TrialState

from models.errors import CheckpointError, ConfigError, NonFiniteLossError, OutputError
from search import noise
from search.campaign import CampaignConfig
from search.room import RoomCheck, check_writable
from search.signals import WorkerStopped, handled, raise_if_stopped, stop_on_signals
from search.studies import load_stage_study
from storage import artifact_store
from storage.artifacts import drop_resume_state
from storage.locks import LockConnection
from storage.optuna_internals import trial_id
from storage.rdb import ResilientRDBStorage, heartbeat_of
from storage.trials import (
    FailKind,
    Heartbeat,
    ReaperThread,
    Refill,
    claim_through_outage,
    fail,
    retry_later,
    still_running,
    tell,
)

if TYPE_CHECKING:
    from training.data import SplitData  # imports torch, which work() does not need
    from training.trainer import EpochResult

log = logging.getLogger("sarsweep.worker")

Objective = Callable[[Trial], float]

# Failures that belong to one trial's config, not to the worker: record and go on.
TRIAL_FAILURES: tuple[type[BaseException], ...] = (NonFiniteLossError, ConfigError, CheckpointError)


@dataclass
class WorkerSummary:
    serves: str
    """The study, or "campaign NAME (N studies)"."""
    states: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None
    """The signal that stopped the worker (SIGTERM, SIGINT), None when it ran out of work."""
    queued: str | None = None
    """The running trial the signal interrupted, queued for retry: "trial 3 of s.baseline.quick"."""

    def line(self) -> str:
        done = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.states.items())) or "no trial"
        why = "nothing left to run"
        if self.stopped:
            why = f"stopped by {self.stopped}" + (f"; {self.queued} queued for retry" if self.queued else "")
        return f"worker on {self.serves}: {done}; {why}"

    @property
    def exit_code(self) -> int:
        """0 when the work ran out; 128 + the signal when one stopped the worker (130, 143)."""
        return 128 + int(signal.Signals[self.stopped]) if self.stopped else 0


@dataclass
class Claimed:
    """A trial claimed by a worker, the study it belongs to, and what runs it."""

    study: optuna.Study
    trial: Trial
    objective: Objective
    on_end: Callable[[Trial, TrialState], None] | None = None


class StudySource:
    """Trials of one study: a quick stage's up to its budget, a full stage's waiting ones."""

    def __init__(self, study: optuna.Study, storage: ResilientRDBStorage, budget: int | None, create_new: bool,
                 objective: Objective, claim_check: Callable[[LockConnection], None] | None = None,
                 refill: Refill | None = None, tag: str | None = None) -> None:
        self.study, self.storage, self.budget, self.create_new = study, storage, budget, create_new
        self.objective, self.claim_check, self.refill, self.tag = objective, claim_check, refill, tag
        self.studies = [study]
        self.serves = study.study_name

    def claim(self) -> Claimed | None:
        trial = claim_through_outage(self.study, self.storage, self.budget, self.create_new, self.claim_check,
                                     self.refill, self.tag)
        return None if trial is None else Claimed(self.study, trial, self.objective)

    def idle(self) -> str | None:
        """Why to wait for more work, or None: nothing left, the worker exits (a single-study
        worker never waits: a retry queued later is run by the next worker that starts)."""
        return None


class Source(Protocol):
    studies: list[optuna.Study]
    serves: str

    def claim(self) -> Claimed | None: ...

    def idle(self) -> str | None: ...


def run_one(study: optuna.Study, storage: ResilientRDBStorage, trial: Trial, objective: Objective) -> TrialState:
    """Run a claimed trial with its heartbeat beating, and tell how it ended."""
    with Heartbeat(storage, trial_id(trial)):
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            return TrialState.PRUNED if tell(study, trial, state=TrialState.PRUNED) else TrialState.FAIL
        except TRIAL_FAILURES as exc:
            return fail(study, trial, f"{exc.__class__.__name__}: {exc}")
        except OutputError as exc:
            # The worker's disk, not the trial: every trial here would fail the same way. The
            # trial is retried (from its last.pt) by a worker that can write; this one stops.
            retry_later(study, trial, f"worker could not write its output: {exc}", FailKind.OUTPUT)
            raise OutputError(exc.path, f"{exc.reason}; trial {trial.number} queued for retry") from None
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower():
                raise
            _free_cuda_memory()
            return fail(study, trial, f"CUDA out of memory: {str(exc).splitlines()[0]}")
    return TrialState.COMPLETE if tell(study, trial, values=value) else TrialState.FAIL


def _free_cuda_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def work(
    study: optuna.Study, storage: ResilientRDBStorage, stage: str, budget: int | None, objective: Objective,
    on_trial: Callable[[Trial, TrialState], None] | None = None, before_claim: Callable[[], None] | None = None,
    claim_check: Callable[[LockConnection], None] | None = None, refill: Refill | None = None,
    tag: str | None = None,
) -> WorkerSummary:
    """The worker loop over one study and any objective (serve() with a StudySource).

    A quick stage creates trials up to its budget; a full stage runs only what waits.
    `before_claim` runs before each claim, `claim_check` inside it under the study lock when
    there is a trial to claim; what either raises ends the loop with no trial claimed. `refill`
    may queue more when the study runs dry (storage.trials.claim)."""
    source = StudySource(study, storage, budget, stage == "quick", objective, claim_check, refill, tag)
    return serve(source, storage, on_trial, before_claim)


def serve(source: Source, storage: ResilientRDBStorage, on_trial: Callable[[Trial, TrialState], None] | None = None,
          before_claim: Callable[[], None] | None = None, on_wait: Callable[[str], None] | None = None,
          poll: float = 10.0) -> WorkerSummary:
    """claim -> run with heartbeats -> tell, until the source has nothing left or a signal stops
    the worker (its running trial is then queued for retry). While the source has nothing to
    claim now but says why more will come, wait `poll` seconds and look again."""
    summary = WorkerSummary(source.serves)
    # Reap the studies on a timer too: a dead peer's trial is retried while this worker trains.
    with stop_on_signals(), ReaperThread(source.studies, heartbeat_of(storage)[1]):
        while True:
            claimed = None
            try:
                raise_if_stopped()
                if before_claim is not None:
                    before_claim()
                claimed = source.claim()
                if claimed is None:
                    why = source.idle()
                    if why is None:
                        break
                    if on_wait is not None:
                        on_wait(why)
                    time.sleep(poll)
                    continue
                state = run_one(claimed.study, storage, claimed.trial, claimed.objective)
            except WorkerStopped as stop:
                handled()
                summary.stopped = stop.signal_name
                if claimed is not None and still_running(claimed.study, claimed.trial):
                    summary.queued = f"trial {claimed.trial.number} of {claimed.study.study_name}"
                    retry_later(claimed.study, claimed.trial, f"worker stopped by {stop}", FailKind.SIGNAL)
                    log.warning("stopped by %s: %s queued for retry", stop, summary.queued)
                break
            summary.states[state.name] += 1
            for hook in (claimed.on_end, on_trial):
                if hook is not None:
                    hook(claimed.trial, state)
    return summary


def run_worker(
    storage: ResilientRDBStorage, campaign: CampaignConfig, variant: str, stage: str, artifacts: Path,
    device: str | None = None, worker_index: int | None = None, progress: bool | None = None,
    create_study: bool = False, on_trial: Callable[[Trial, TrialState], None] | None = None,
    on_data: Callable[[SplitData], None] | None = None, threads: int | None = None,
    on_epoch: Callable[[Trial, EpochResult], None] | None = None,
) -> WorkerSummary:
    """Run trials of (variant, stage) until the study is done or a signal stops the worker.
    `on_data` is shown the stage's data once it is prepared."""
    # Deferred: the training stack (torch) is not needed by work() itself (tests/support/loadtest.py).
    from search.objective import TrialContext, run_trial
    from training.data import load_data
    from training.inference import resolve_device
    from training.threads import register

    if resolve_device(device or campaign.train.device).type == "cpu":  # no GPU here: one line, exit 2
        register()  # counted among this node's trainers from now, before its first trial takes its share
    study = load_stage_study(storage, campaign, variant, stage, worker_index, create=create_study)
    budget = campaign.quick_budget() if stage == "quick" else None
    # Prepared once: a DataError stops the worker before it has claimed any trial.
    data = load_data(campaign.train.data, campaign.stage(stage).fraction)
    if on_data is not None:
        on_data(data)

    def finished(trial: Trial, state: TrialState) -> None:
        if state in (TrialState.COMPLETE, TrialState.PRUNED) and not campaign.keep_last_checkpoint:
            drop_resume_state(trial.user_attrs.get("checkpoint"))
        if on_trial is not None:
            on_trial(trial, state)

    check_writable(artifacts)  # before the artifact store is made
    ctx = TrialContext(campaign, variant, stage, artifacts, data, device, progress, artifact_store(artifacts),
                       threads, on_epoch)
    return work(study, storage, stage, budget, lambda trial: run_trial(trial, ctx), finished,
                lambda: check_writable(artifacts), RoomCheck(storage, campaign, variant, artifacts),
                noise.refill(study, campaign, stage), noise.NOISE_ATTR)
