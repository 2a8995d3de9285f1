"""A trial's life on the database (storage/trials.py): claim, heartbeat, reap."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import optuna
import pytest
from conftest import REPO
from optuna.trial import TrialState
from support import LOADTEST
from support.campaigns import trials_of

from storage import StorageSettings, open_storage


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # this test asks outside a worker
def test_reaper_thread_fails_a_trial_whose_heartbeat_stopped(pg_url: str) -> None:
    from storage.trials import ReaperThread

    storage = open_storage(pg_url, StorageSettings(heartbeat_interval=1, grace_period=2), create_schema=True)
    study = optuna.create_study(study_name="r", storage=storage, direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(trial._trial_id)  # one beat, then silence: the worker "died"
    with ReaperThread(study, period=0.5):
        deadline = time.monotonic() + 30
        while storage.get_trial(trial._trial_id).state == TrialState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.2)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.get_trials(deepcopy=False)[1].system_attrs["failed_trial"] == 0


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


def test_sigusr1_prints_a_workers_stacks_and_it_goes_on(pg_url: str) -> None:
    base = [sys.executable, str(LOADTEST), "--storage", pg_url, "--study", "u"]
    subprocess.run([*base, "--create"], cwd=REPO, check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen([*base, "--trials", "1", "--sleep", "4"], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [t for t in trials_of(pg_url, "u") if t.state == TrialState.RUNNING]:
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "most recent call first" in stderr and "loadtest.py" in stderr  # the objective's frame
    assert [t.state for t in trials_of(pg_url, "u")] == [TrialState.COMPLETE]
