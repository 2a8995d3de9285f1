"""A retry's lineage through Optuna's public `RetryHeartbeatStaleTrialCallback.retried_trial_number`.

Read by the claim (storage.trials), the policy (search.policy) and the report alike. It reads only
a trial's `number` and `system_attrs`, so the simulator's records pass as well as FrozenTrials.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback


class HasLineage(Protocol):
    number: int
    system_attrs: dict[str, Any]


def original_number(trial: HasLineage) -> int:
    """The number of the trial this one retries (Optuna's public lineage), else its own number: a
    retry keeps its original's seed and checkpoint folder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)  # type: ignore[arg-type]
    return trial.number if retried is None else int(retried)


def is_retry(trial: HasLineage) -> bool:
    return original_number(trial) != trial.number
