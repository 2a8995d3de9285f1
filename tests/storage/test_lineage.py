"""storage/lineage.py: a retry's original, through Optuna's public retried_trial_number."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.policy.records import Record
from storage.lineage import is_retry, original_number


def test_a_retry_names_its_original_and_an_original_itself() -> None:
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={"failed_trial": 0}))
    first, retry = study.get_trials()
    assert (original_number(first), is_retry(first)) == (0, False)
    assert (original_number(retry), is_retry(retry)) == (0, True)


def test_the_simulator_s_records_pass_as_trials() -> None:
    assert is_retry(Record(5, TrialState.WAITING, system_attrs={"failed_trial": 2}))
    assert original_number(Record(3, TrialState.COMPLETE, 1.0)) == 3
