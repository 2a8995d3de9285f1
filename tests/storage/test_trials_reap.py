"""Reaping (storage/trials/reap.py): lost retries re-queued, a trial's own failure left alone."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from storage import StorageSettings, open_storage
from storage.trials import FailKind, requeue_lost

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def test_a_retry_worthy_fail_without_its_retry_is_requeued_once(pg_url: str) -> None:
    storage = open_storage(pg_url, StorageSettings(heartbeat_interval=5, grace_period=20), create_schema=True)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    stopped, own, stale = study.ask(), study.ask(), study.ask()
    for trial, kind in ((stopped, FailKind.SIGNAL), (own, FailKind.TRIAL)):
        trial.set_user_attr("fail_kind", kind.value)
        trial.set_user_attr("fail_reason", f"{kind.value} reason")
        study.tell(trial, state=TrialState.FAIL)  # the retry was never written: a process died in between
    study.tell(stale, state=TrialState.FAIL)  # Optuna's stale check writes no reason
    assert sorted(requeue_lost(study)) == [stopped.number, stale.number]
    assert requeue_lost(study) == []  # once
    retries = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in retries) == [stopped.number, stale.number]
