"""The worker: claim -> run with a heartbeat -> tell, until its studies have nothing left.

    sarsweep worker --campaign configs/campaign.yaml                                  # the whole campaign
    sarsweep worker --campaign configs/campaign.yaml --variant resnet_lite --stage quick   # one study

One path for both: `run_worker` is `run_campaign_worker` narrowed to one study. The loop (`serve`)
reads like the trial loop inside Optuna's study.optimize (`_run_trial`): claim (under the study
lock, exact across workers; what to claim is search.policy.claims') -> run the objective with a
heartbeat -> tell. How a trial is claimed, kept alive, finished and reaped is storage.trials'.

A trial that fails on its own (non-finite loss, CUDA out of memory, an invalid sampled config)
is FAILed with the reason in its user attrs and the worker goes on. SIGTERM/SIGINT fails the
running trial and queues a retry of it (which resumes from its checkpoint), then exits.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import optuna
from optuna.trial import Trial, TrialState

from errors import CheckpointError, ConfigError, NonFiniteLossError, OutputError
from search.campaign.config import STAGES, CampaignConfig
from search.running.disk import check_writable
from search.running.signals import WorkerStopped, handled, raise_if_stopped, stop_on_signals
from search.running.source import CampaignSource, Claimed, Hooks, served_studies
from storage.optuna_internals import study_id, trial_id
from storage.rdb import ResilientRDBStorage, heartbeat_of
from storage.trials import FailKind, fail, heartbeat, reaper_thread, retry_later, still_running, tell
from storage.workers import IdleNotes

if TYPE_CHECKING:
    from search.running.promote import Promotion
    from training.data import SplitData
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


class Source(Protocol):
    """What `serve` pulls trials from (CampaignSource; tests/support/loadtest.py has a trivial one)."""

    studies: list[optuna.Study]
    serves: str

    def claim(self) -> Claimed | None: ...

    def idle(self) -> str | None: ...

    def finished(self, trial: Trial, state: TrialState) -> None: ...


def out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA out-of-memory error, without importing torch where no trial has (load tests)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def run_one(study: optuna.Study, storage: ResilientRDBStorage, trial: Trial, objective: Objective) -> TrialState:
    """Run a claimed trial with its heartbeat beating, and tell how it ended."""
    with heartbeat(storage, trial_id(trial)):
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
        except Exception as exc:
            if not out_of_memory(exc):
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


def serve(source: Source, storage: ResilientRDBStorage, before_claim: Callable[[], None] | None = None,
          on_wait: Callable[[str], None] | None = None, poll: float = 10.0,
          on_busy: Callable[[], None] | None = None) -> WorkerSummary:
    """claim -> run with heartbeats -> tell, until the source has nothing left or a signal stops
    the worker (its running trial is then queued for retry). While the source has nothing to
    claim now but says why more will come, wait `poll` seconds and look again (`on_wait` hears
    why; `on_busy` that a trial was claimed)."""
    summary = WorkerSummary(source.serves)
    # Reap the studies on a timer too: a dead peer's trial is retried while this worker trains.
    with stop_on_signals(), reaper_thread(source.studies, heartbeat_of(storage)[1]):
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
                if on_busy is not None:
                    on_busy()
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
            source.finished(claimed.trial, state)
    return summary


def run_campaign_worker(storage: ResilientRDBStorage, campaign: CampaignConfig, artifacts: Path,
                        variants: list[str] | None = None, stages: list[str] | None = None,
                        device: str | None = None, worker_index: int | None = None, progress: bool | None = None,
                        threads: int | None = None, poll: float = 10.0, hooks: Hooks | None = None,
                        create_study: bool = False, one_study: bool = False) -> WorkerSummary:
    """Serve the campaign's studies (narrowed to `variants` and `stages`) until they are done."""
    from search.running.trial import worker_name
    from training.inference import resolve_device
    from training.threads import register

    if resolve_device(device or campaign.train.device).type == "cpu":  # no GPU here: one line, exit 2
        register()  # counted among this node's trainers from now, before its first trial takes its share
    hooks = hooks or Hooks()
    served = served_studies(campaign, variants or list(campaign.variants), stages or list(STAGES))
    source = CampaignSource(storage, campaign, served, artifacts, device, worker_index, progress, threads, hooks,
                            create_study, one_study)
    # What it waits for, where `sarsweep status` reads it (storage.workers).
    notes = IdleNotes(storage, [study_id(s) for s in source.studies], worker_name())

    def waiting(why: str) -> None:
        notes.say(why)
        if hooks.on_wait is not None:
            hooks.on_wait(why)

    try:
        return serve(source, storage, lambda: check_writable(artifacts), waiting, poll, lambda: notes.say(None))
    finally:
        with contextlib.suppress(Exception):  # leaving: a note it cannot clear ages out of status
            notes.leave()


def run_worker(
    storage: ResilientRDBStorage, campaign: CampaignConfig, variant: str, stage: str, artifacts: Path,
    device: str | None = None, worker_index: int | None = None, progress: bool | None = None,
    create_study: bool = False, on_trial: Callable[[Trial, TrialState], None] | None = None,
    on_data: Callable[[str, SplitData], None] | None = None, threads: int | None = None,
    on_epoch: Callable[[Trial, str, EpochResult], None] | None = None,
    on_promote: Callable[[str, list[Promotion], bool], None] | None = None,
) -> WorkerSummary:
    """The campaign worker narrowed to one study: trials of (variant, stage) until the study has
    nothing left to claim or a signal stops the worker."""
    hooks = Hooks(on_trial=on_trial, on_data=on_data, on_epoch=on_epoch, on_promote=on_promote)
    return run_campaign_worker(storage, campaign, artifacts, [variant], [stage], device, worker_index, progress,
                               threads, hooks=hooks, create_study=create_study, one_study=True)
