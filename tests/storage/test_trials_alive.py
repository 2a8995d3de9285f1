"""Keeping trials alive (storage/trials/alive.py): the reaper thread, a worker's stacks on SIGUSR1."""

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
    from storage.trials import reaper_thread

    storage = open_storage(pg_url, StorageSettings(heartbeat_interval=1, grace_period=2), create_schema=True)
    study = optuna.create_study(study_name="r", storage=storage, direction="maximize")
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(trial._trial_id)  # one beat, then silence: the worker "died"
    with reaper_thread(study, period=0.5):
        deadline = time.monotonic() + 30
        while storage.get_trial(trial._trial_id).state == TrialState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.2)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert study.get_trials(deepcopy=False)[1].system_attrs["failed_trial"] == 0


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
