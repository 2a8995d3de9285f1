"""The claim (storage/trials/claim.py): what a claimed trial's sampler sees."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from storage import StorageSettings, open_storage


def test_the_sampler_of_a_claimed_trial_sees_every_trial_finished_before_it(pg_url: str) -> None:
    """The claim builds the Trial itself, past study.ask(): samplers (TPE reads the study through
    Optuna's per-trial cache) must still see every trial finished before the claim, and a
    queued trial (a retry, a promoted config) must still be popped first with its params."""
    from support.loadtest import work

    seen: list[tuple[int, int]] = []

    class Recording(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):  # type: ignore[no-untyped-def]
            done = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
            seen.append((trial.number, len(done)))
            return super().sample_independent(study, trial, name, distribution)

    storage = open_storage(pg_url, StorageSettings(heartbeat_interval=5, grace_period=20), create_schema=True)
    optuna.create_study(study_name="v", storage=storage, direction="maximize")
    study = optuna.load_study(study_name="v", storage=storage, sampler=Recording(seed=0))
    study.enqueue_trial({"x": 0.25, "y": 0.5})
    work(study, storage, 4, lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1))
    assert seen == [(1, 1), (1, 1), (2, 2), (2, 2), (3, 3), (3, 3)]  # trial 0 was the queued one
    ts = study.get_trials(deepcopy=False)
    assert [t.state for t in ts] == [TrialState.COMPLETE] * 4 and ts[0].params == {"x": 0.25, "y": 0.5}
