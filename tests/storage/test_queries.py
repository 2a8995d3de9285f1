"""storage/queries.py: the counts a claim reads under the lock, and heartbeat ages, on both backends."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storage import StorageSettings, open_storage
from storage.optuna_internals import study_id
from storage.queries import heartbeat_ages, is_stale, study_counts

# These tests ask and tell outside a worker, which Optuna warns of on a storage with heartbeats.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'q.db'}"
    return request.getfixturevalue("pg_url")


def test_study_counts_counts_waiting_running_originals_tagged_and_the_budget(url: str) -> None:
    storage = open_storage(url, StorageSettings(heartbeat_interval=5, grace_period=20), create_schema=True)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    assert study_counts(storage, study_id(study)) == study_counts(storage, study_id(study), tag="x")
    empty = study_counts(storage, study_id(study))
    assert (empty.waiting, empty.running, empty.originals, empty.budget, empty.tagged) == (0, 0, 0, None, 0)
    study.set_user_attr("budget", 7)
    study.tell(study.ask(), 1.0)
    study.ask()  # running
    study.enqueue_trial({}, user_attrs={"x": 1})
    study.enqueue_trial({})
    counts = study_counts(storage, study_id(study), tag="x")
    assert (counts.waiting, counts.running, counts.originals, counts.budget, counts.tagged) == (2, 1, 4, 7, 1)
    assert study_counts(storage, study_id(study)).tagged == 0  # no tag asked: none counted
    study.set_user_attr("budget", True)  # not a whole number: no budget
    assert study_counts(storage, study_id(study)).budget is None


def test_a_retry_is_no_original(url: str) -> None:
    storage = open_storage(url, StorageSettings(heartbeat_interval=5, grace_period=20), create_schema=True)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    first = study.ask()
    study.tell(first, state=TrialState.FAIL)
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={"failed_trial": 0}))
    counts = study_counts(storage, study_id(study))
    assert (counts.originals, counts.waiting) == (1, 1)


def test_heartbeat_ages_are_read_on_the_database_clock(pg_url: str) -> None:
    storage = open_storage(pg_url, StorageSettings(heartbeat_interval=5, grace_period=20), create_schema=True)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    silent = study.ask()  # running, no heartbeat row
    beating = study.ask()
    storage.record_heartbeat(beating._trial_id)
    ages = heartbeat_ages(storage, study_id(study))
    assert ages[silent._trial_id] is None
    age = ages[beating._trial_id]
    assert age is not None and 0 <= age < 5
    study.tell(beating, 1.0)
    assert beating._trial_id not in heartbeat_ages(storage, study_id(study))  # only RUNNING trials


@pytest.mark.parametrize(("age", "grace", "stale"), [(None, 10, False), (5.0, 10, False), (10.0, 10, False),
                                                     (10.5, 10, True)])
def test_is_stale_only_past_the_grace_period(age: float | None, grace: float, stale: bool) -> None:
    assert is_stale(age, grace) is stale


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_best_trial_passes_over_measurements_when_asked(url: str, direction: str) -> None:
    """A seed re-run that scored best is never Optuna's best trial through a storage that names its
    attr in `not_best` (study.best_trial, the dashboard's Best Trial); a plain storage still picks it."""
    marked = open_storage(url, StorageSettings(heartbeat_interval=5, grace_period=20, not_best=("noise_of",)),
                          create_schema=True)
    study = optuna.create_study(study_name="s", storage=marked, direction=direction)
    sign = 1 if direction == "maximize" else -1
    study.add_trial(optuna.trial.create_trial(value=sign * 16.6, params={}, distributions={}))
    study.add_trial(optuna.trial.create_trial(value=sign * 15.0, params={}, distributions={}))
    study.add_trial(optuna.trial.create_trial(value=sign * 17.2, params={}, distributions={},
                                              user_attrs={"noise_of": 0}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={}, distributions={}))
    assert study.best_trial.number == 0
    assert marked.get_best_trial(study_id(study)).number == 0
    plain = open_storage(url, StorageSettings(heartbeat_interval=5, grace_period=20))
    assert optuna.load_study(study_name="s", storage=plain).best_trial.number == 2
    lone = optuna.create_study(study_name="lone", storage=marked, direction=direction)
    lone.add_trial(optuna.trial.create_trial(value=1.0, params={}, distributions={}, user_attrs={"noise_of": 0}))
    with pytest.raises(ValueError):  # what Optuna raises with nothing completed; its callers expect it
        _ = lone.best_trial
