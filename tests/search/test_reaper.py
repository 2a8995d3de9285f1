"""`sarsweep reaper`: a dead worker's trial failed and retried with no other worker."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import optuna
from conftest import run_cli, start_cli
from optuna.trial import TrialState
from support.campaigns import init, running_row, trials_of

from storage import StorageSettings, open_storage


def test_reaper_retries_a_dead_workers_trial_with_no_other_worker(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """`sarsweep reaper --once` fails a trial whose worker died and queues its retry. The worker
    "dies" right after its claim and first suggestion, before any heartbeat thread ran: the
    claim's own first beat is what makes it reapable (Optuna never reaps a RUNNING trial without
    any heartbeat). The worker's death with a checkpoint, and the retry resuming from it, are
    the kill -9 tests."""
    from storage.trials import claim

    path = write_campaign(quick={"trials": 1, "epochs": 25})
    init(path, pg_url, tmp_path)
    beat = ("--heartbeat-interval", "1", "--grace-period", "2")
    storage = open_storage(pg_url, StorageSettings(heartbeat_interval=1, grace_period=2))
    study = optuna.load_study(study_name="t.baseline.quick", storage=storage)
    trial = claim(study, storage, 1)
    assert trial is not None
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)  # ... and no heartbeat after its first
    storage.engine.dispose()
    row = running_row(path, pg_url, tmp_path, grace=60)  # fresh: no STALE mark, no epoch or worker yet
    assert row[:4] == ["baseline", "quick", "#0", "-"] and row[6:] == ["ago", "-"], row
    listed = run_cli("status", "--campaign", str(path), "--storage", pg_url, "--json", "--grace-period", "60",
                     cwd=tmp_path)
    (running,) = json.loads(listed.stdout)["stages"][0]["running"]
    assert (running["trial"], running["worker"], running["epochs_done"], running["stale"]) == (0, None, 0, False)
    assert 0 <= running["heartbeat_age"] < 60 and 0 <= running["seconds"] < 60
    time.sleep(3)  # past the grace period; nothing else touches the study
    reaped = run_cli("reaper", "--campaign", str(path), "--storage", pg_url, "--once", *beat, cwd=tmp_path)
    assert reaped.returncode == 0, reaped.stderr
    assert "t.baseline.quick: stale trial(s) 0 failed and queued for retry" in reaped.stdout
    t0, retry = trials_of(pg_url, "t.baseline.quick")
    assert t0.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == t0.params and "lr" in t0.params


def test_the_reaper_service_dumps_stacks_on_sigusr1_and_stops_cleanly_on_sigterm(pg_url: str, write_campaign,
                                                                                   tmp_path: Path) -> None:
    path = write_campaign(quick={"trials": 1, "epochs": 1})
    init(path, pg_url, tmp_path)
    reaper = start_cli("reaper", "--campaign", str(path), "--storage", pg_url, "--period", "0.2", cwd=tmp_path)
    try:
        assert reaper.stdout.readline().startswith("reaper on campaign t:")
        time.sleep(1)  # some passes
        reaper.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert reaper.poll() is None  # a stack dump, not an exit
        reaper.send_signal(signal.SIGTERM)  # docker stop
        stdout, stderr = reaper.communicate(timeout=60)
    finally:
        reaper.kill()
    assert reaper.returncode == 143, stderr  # 128 + SIGTERM
    assert "most recent call first" in stderr and "search/commands/reaper.py" in stderr  # its passes loop
    assert stdout.strip().endswith("reaper stopped (SIGTERM)")
