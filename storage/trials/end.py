"""How a trial ends: told COMPLETE or PRUNED, FAILed for its own sake, or FAILed with its retry
queued (FailKind says which), and the trial as stored now.
"""

from __future__ import annotations

import logging
import warnings
from enum import StrEnum

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from storage.locks import locked_transaction
from storage.optuna_internals import rdb_of, trial_id
from storage.optuna_internals import tell as tell_quietly

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
