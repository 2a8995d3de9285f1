"""How a trial ends (storage/trials/end.py): told, failed for its own sake, or failed with a retry queued."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from storage import StorageSettings, open_storage
from storage.trials import RETRIED_KINDS, FailKind, fail, frozen, retry_later, still_running, tell

# These tests ask and tell outside a worker, which Optuna warns of on a storage with heartbeats.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def study_on(url: str) -> optuna.Study:
    storage = open_storage(url, StorageSettings(heartbeat_interval=5, grace_period=20), create_schema=True)
    return optuna.create_study(study_name="s", storage=storage, direction="maximize")


def test_a_trial_failed_for_its_own_sake_is_never_retried(pg_url: str) -> None:
    study = study_on(pg_url)
    trial = study.ask()
    assert still_running(study, trial)
    assert fail(study, trial, "NonFiniteLossError: loss is nan") == TrialState.FAIL
    stored = frozen(study, trial)
    assert stored.state == TrialState.FAIL and stored.user_attrs["fail_kind"] == FailKind.TRIAL.value
    assert stored.user_attrs["fail_reason"] == "NonFiniteLossError: loss is nan"
    assert FailKind.TRIAL not in RETRIED_KINDS and not still_running(study, trial)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]  # no retry queued


def test_retry_later_fails_the_trial_and_queues_its_retry_with_the_lineage(pg_url: str) -> None:
    study = study_on(pg_url)
    trial = study.ask()
    retry_later(study, trial, "worker stopped by SIGTERM", FailKind.SIGNAL)
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs["fail_kind"] == "signal"
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == first.number


def test_telling_a_trial_a_reaper_failed_meanwhile_is_no_crash(pg_url: str) -> None:
    study = study_on(pg_url)
    trial = study.ask()
    other = optuna.load_study(study_name="s", storage=study._storage)
    other.tell(trial.number, state=TrialState.FAIL)  # what a reaper does to a trial it finds stale
    assert tell(study, trial, values=1.0) is False
    assert frozen(study, trial).state == TrialState.FAIL
    with pytest.raises(ValueError):  # any other refusal is still raised
        tell(study, study.ask(), values=float("nan"), state=TrialState.PRUNED)
