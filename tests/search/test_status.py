"""`sarsweep status`: states, best values, running trials and the time left."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import optuna
import pytest
from conftest import run_cli
from optuna.trial import TrialState
from support.campaigns import quick_done, trials_of


def test_status_shows_states_and_best(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, _ = quick_done(pg_url, write_campaign, tmp_path, trials=3)
    run_cli("promote", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    done = run_cli("status", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()[:2]): line.split() for line in done.stdout.splitlines() if line.startswith("baseline")}
    assert rows[("baseline", "quick")][2] == "3" and rows[("baseline", "full")][7] == "2"
    assert rows[("baseline", "quick")][4:6] == ["0", "0"]  # failed, interrupted
    best = max(trials_of(pg_url, "t.baseline.quick"), key=lambda t: t.value)
    assert rows[("baseline", "quick")][8:10] == ["done", f"#{best.number}"]
    assert rows[("baseline", "full")][8:10] == ["no", "worker"]  # 2 promoted configs wait for a worker
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "promotions waiting for full-stage workers: 2"
    assert lines[-1].startswith("t: 5 trials (3 complete, 0 pruned, 0 failed, 0 running, 2 waiting)")
    # The same for scripts, as JSON on stdout.
    as_json = run_cli("status", "--campaign", str(path), "--storage", pg_url, "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    got = json.loads(as_json.stdout)
    assert (got["campaign"], got["promotions_waiting"]) == ("t", 2)
    quick, full = got["stages"]
    assert (quick["stage"], quick["counts"]["COMPLETE"], quick["best"]["trial"]) == ("quick", 3, best.number)
    assert quick["best"]["value"] == best.value and quick["best"]["params"] == best.params
    assert quick["left"] == {"trials": 0, "workers": 0, "seconds": None, "says": "done"} and quick["running"] == []
    assert (full["counts"]["WAITING"], full["best"], full["left"]["trials"], full["left"]["says"]) == (
        2, None, 2, "no worker")


def test_status_lists_unbeaten_then_stalest_running_trials_first() -> None:
    from search.report.status import RunningTrial, StageStatus, render_running

    quick = StageStatus("residual", "quick", True, running=[
        RunningTrial(3, "gpu-a:11", 2, 20, 700.0, 4.0), RunningTrial(5, "gpu-b:12", 0, 20, 130.0, 125.0)])
    full = StageStatus("residual", "full", True, running=[RunningTrial(0, None, 0, None, 6000.0, None)])
    lines = render_running([quick, full], grace_period=120).splitlines()
    assert lines[0].startswith("running trials (stale after 120s without a heartbeat")
    assert [line.split()[:3] for line in lines[3:]] == [["residual", "full", "#0"], ["residual", "quick", "#5"],
                                                       ["residual", "quick", "#3"]]
    assert lines[3].split()[3:6] == ["-", "1h40m", "never"] and "NO HEARTBEAT" in lines[3]
    assert lines[4].split()[3:8] == ["0/20", "2m10s", "2m05s", "ago", "gpu-b:12"] and "STALE" in lines[4]
    assert lines[5].split()[3:] == ["2/20", "11m40s", "4s", "ago", "gpu-a:11"]
    assert render_running([StageStatus("residual", "quick", True)], 120) == ""


def test_status_estimates_the_time_a_stage_has_left_at_the_current_worker_count() -> None:
    """Two finished trials took 100 s and 300 s (a new trial: 200 s). Two run: one at 10 s an epoch
    with 2 of 5 epochs left (20 s), one without an epoch yet 50 s in (150 s). Three more to start
    go to whichever worker frees first: at 20 s, 150 s and 220 s, so the last ends at 420 s."""
    from search.report.status import RunningTrial, StageStatus, render_left, time_left

    def finished(number: int, seconds: float, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
        start = dt.datetime(2026, 11, 29, 1, 0)
        return optuna.trial.FrozenTrial(number, state, 20.0 if state == TrialState.COMPLETE else None, start,
                                        start + dt.timedelta(seconds=seconds), {}, {}, {}, {}, {}, number)

    done = [finished(0, 100.0), finished(1, 300.0, TrialState.PRUNED), finished(2, 5.0, TrialState.FAIL)]
    running = [RunningTrial(3, "a:1", 3, 5, 35.0, 1.0, 10.0), RunningTrial(4, "b:2", 0, 5, 50.0, 1.0)]
    left = time_left(done, running, to_start=3, epochs=5)
    assert (left.trials, left.workers, left.seconds) == (5, 2, 420.0)
    # A trial whose worker died (no heartbeat past the grace period) is no worker: its retry waits.
    dead = RunningTrial(6, "c:3", 1, 5, 900.0, 300.0, 10.0)
    left = time_left(done, [*running, dead], to_start=2, epochs=5, grace_period=120)
    assert (left.trials, left.workers, left.seconds) == (5, 2, 420.0)
    row = StageStatus("residual", "quick", True, {"COMPLETE": 1, "PRUNED": 1, "FAIL": 1, "RUNNING": 2}, left=left)
    assert render_left(row) == "~7m00s"
    # Nothing finished yet: a new trial is the stage's 5 epochs at the running trials' 10 s (50 s),
    # and the one 50 s in without an epoch is taken to end now: the new trial ends in 50 s.
    assert time_left([], running, to_start=1, epochs=5).seconds == 50.0
    # ... nor has any running trial timed an epoch: no estimate.
    unknown = time_left([], running[1:], to_start=1, epochs=5)
    assert unknown.seconds is None and render_left(dataclasses.replace(row, left=unknown)) == "?"
    # Work and no worker; a stage with nothing left; one with nothing yet (a full stage before promote).
    assert render_left(dataclasses.replace(row, left=time_left(done, [], to_start=2, epochs=5))) == "no worker"
    assert render_left(dataclasses.replace(row, left=time_left(done, [], to_start=0, epochs=5))) == "done"
    assert render_left(StageStatus("residual", "full", True, {"COMPLETE": 0}, left=time_left([], [], 0, 30))) == "-"


def test_status_before_init_says_so(write_campaign, tmp_path: Path) -> None:
    """A SQLite path that holds no database (a typo, or the default sqlite:///sarsweep.db run from
    another folder) used to be created, empty, by `status`, which then reported no studies."""
    campaign = str(write_campaign())
    for url in ("sqlite:///e.db", f"sqlite:///{tmp_path / 'e.db'}"):
        done = run_cli("status", "--campaign", campaign, "--storage", url, cwd=tmp_path)
        where = f"{tmp_path / 'e.db'}" if url.endswith(f"{tmp_path}/e.db") else f"e.db (from {tmp_path})"
        assert (done.returncode, done.stdout, done.stderr) == (
            2, "", f"sarsweep: error: no SQLite database at {where}: run `sarsweep init` first, or check the "
                   "storage URL\n")
        assert not (tmp_path / "e.db").exists()
    optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'e.db'}")  # a database with the schema, and no study of ours
    done = run_cli("status", "--campaign", campaign, "--storage", f"sqlite:///{tmp_path / 'e.db'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("(no study yet: run `sarsweep init`)") == 2


def test_an_interrupted_trial_is_counted_apart_from_failures_and_its_resumed_epochs_once() -> None:
    """A trial whose worker was stopped (or lost its heartbeats) and that a later trial resumes is
    INTERRUPTED, not FAIL; its epochs count once (the retry holds the ones it resumed), and only an
    epoch trained again is lost."""
    from search.report.collect import cost_of
    from search.report.status import state_counts

    def trial(number: int, state: TrialState, seconds: list[float], retries: int | None = None,
              **attrs: object) -> optuna.trial.FrozenTrial:
        epochs = [{"epoch": i + 1, "seconds": s, "device": "cpu"} for i, s in enumerate(seconds)]
        made = optuna.trial.create_trial(
            state=state, value=1.0 if state == TrialState.COMPLETE else None, params={}, distributions={},
            user_attrs={"epochs": epochs, **attrs}, system_attrs={} if retries is None else {"failed_trial": retries})
        made.number = number
        return made

    trials = [
        trial(0, TrialState.FAIL, [10, 10], fail_kind="signal"),            # SIGTERM after epoch 2
        trial(1, TrialState.COMPLETE, [10, 10, 12, 12], retries=0),         # resumed epochs 1-2, trained 3-4
        trial(2, TrialState.FAIL, [5], fail_kind="trial"),                  # its config failed: never retried
        trial(3, TrialState.PRUNED, [7]),
        trial(4, TrialState.FAIL, [9, 9]),                                  # heartbeats lost after epoch 2
        trial(5, TrialState.RUNNING, [9, 8.5], retries=4),                  # its checkpoint held epoch 1 only
    ]
    assert state_counts(trials) == {"COMPLETE": 1, "PRUNED": 1, "FAIL": 1, "INTERRUPTED": 2, "RUNNING": 1,
                                    "WAITING": 0}
    cost = cost_of("baseline", "quick", trials)
    assert cost.seconds == 44 + 5 + 7 + 26.5  # each epoch once, the retrained one twice
    assert cost.redone_seconds == 9 and cost.lost_seconds == 5 + 7 + 9


def test_status_names_what_an_idle_worker_waits_for(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """A full-stage worker started before any quick trial ran is alive and waits: status says
    "waiting" (not "no worker") for its stage, names the worker and why; once it leaves, nothing."""
    from conftest import start_cli

    path = write_campaign(quick={"trials": 1})
    assert run_cli("init", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path).returncode == 0
    worker = start_cli("worker", "--campaign", str(path), "--storage", pg_url, "--stage", "full", "--poll", "0.3",
                       "--artifacts", str(tmp_path / "art"), cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    try:
        assert worker.stdout is not None
        said = [worker.stdout.readline() for _ in range(3)]
        assert said[-1].startswith("waiting: t.baseline.full waits for its quick stage to end"), said
        done = run_cli("status", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
        as_json = json.loads(run_cli("status", "--campaign", str(path), "--storage", pg_url, "--json",
                                     cwd=tmp_path).stdout)
    finally:
        worker.terminate()
        worker.communicate(timeout=60)
    assert done.returncode == 0, done.stderr
    name = next(line for line in said if line.startswith("worker ")).split()[1]
    assert f"  {name} (said " in done.stdout and "t.baseline.full waits for its quick stage to end" in done.stdout
    quick = next(line for line in done.stdout.splitlines() if line.startswith("baseline") and " quick " in line)
    assert quick.split()[8:10] == ["no", "worker"]  # it has work, and no worker serves it
    full = next(s for s in as_json["stages"] if s["stage"] == "full")
    quick_json = next(s for s in as_json["stages"] if s["stage"] == "quick")
    assert [w["worker"] for w in full["idle_workers"]] == [name] and quick_json["idle_workers"] == []
    # A stage with work left, nothing running, and an idle worker that serves it (waiting, say, for
    # its seed re-runs to come due) is "waiting", not "no worker".
    from search.report.status import Left, StageStatus, render_left
    from storage.workers import IdleNote

    row = StageStatus("baseline", "quick", True, {"COMPLETE": 3}, left=Left(2, 0, None))
    assert render_left(row) == "no worker"
    assert render_left(dataclasses.replace(row, idle=[IdleNote(name, "why", 1.0)])) == "waiting"
    after = run_cli("status", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    assert "idle workers" not in after.stdout and name not in after.stdout


def test_status_forecasts_what_is_left_from_the_measured_epoch_times(pg_url: str, write_campaign,
                                                                     tmp_path: Path) -> None:
    """After the quick stage: the full stage's top_k runs are left, timed by the quick stage's
    measured epochs scaled to the full stage's data and epochs; with --workers N, the wall time."""
    path = write_campaign(quick={"trials": 3, "epochs": 2, "fraction": 0.5}, full={"top_k": 2, "epochs": 2})
    assert run_cli("init", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path).returncode == 0
    ran = run_cli("worker", "--campaign", str(path), "--storage", pg_url, "--variant", "baseline", "--stage", "quick",
                  "--artifacts", str(tmp_path / "art"), cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert ran.returncode == 0, ran.stderr
    done = run_cli("status", "--campaign", str(path), "--storage", pg_url, "--workers", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = done.stdout.splitlines()
    left = next(line for line in said if line.startswith("left: "))
    # top_k = 2 promoted, up to `most` (4) when more lie within the quick noise band
    assert left.startswith("left: 2-4 trials, ") and "of worker time (from the measured epoch times" in left, said
    assert any(line.startswith("  with 2 worker(s): about ") and " to " in line for line in said), said
    assert any("baseline full: no full run timed yet" in line for line in said), said
    forecast = json.loads(run_cli("status", "--campaign", str(path), "--storage", pg_url, "--workers", "2", "--json",
                                  cwd=tmp_path).stdout)["forecast"]
    quick = [t for t in trials_of(pg_url, "t.baseline.quick")]
    from statistics import fmean, median

    # The median trial's epoch (a worker's first trial pays its warm-up).
    epoch = median(fmean(e["seconds"] for e in t.user_attrs["epochs"]) for t in quick)
    steps = median(fmean(e["train_seconds"] for e in t.user_attrs["epochs"]) for t in quick)
    full = next(s for s in forecast["stages"] if s["stage"] == "full")
    assert full["to_start"] == [2, 4] and full["from"] == "scaled from quick"
    # Twice the training patches and as many epochs: each epoch's steps twice, its validation once
    # (the same set), then a trial's start-up as the quick trials measured it (less than a whole trial).
    scaled = 2 * ((epoch - steps) + 2 * steps)
    wall = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in quick) / len(quick)
    assert scaled <= full["trial_seconds"] < scaled + wall
    assert forecast["trials_left"] == [2, 4] and forecast["workers"] == 2
    assert forecast["worker_hours_left"][1] * 3600 == pytest.approx(4 * full["trial_seconds"], rel=1e-6)
    # The most (4) runs, two at a time on two workers: twice one run; the fewest (2): one run.
    assert forecast["wall_hours"] * 3600 == pytest.approx(2 * full["trial_seconds"], rel=1e-6)
    assert forecast["wall_hours_fewest"] * 3600 == pytest.approx(full["trial_seconds"], rel=1e-6)
    # No worker alive and none asked for: worker-hours, and no wall time.
    bare = run_cli("status", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    assert "no worker is running or waiting" in bare.stdout


def test_what_is_left_is_handed_to_workers_as_they_free_up_full_runs_after_their_quick_stage() -> None:
    from search.simulation.left import StageWork, forecast_left

    quick = StageWork("v", "quick", (2, 2), 5.0, running=[10.0])
    full = StageWork("v", "full", (2, 2), 20.0)
    f = forecast_left([quick, full], workers=2)
    # t=0: a quick trial (ends 5), then the last (ends 10); the quick stage ends at 10 with the
    # running one, and both full runs start then: 30 s, no worker idle.
    assert f.wall_hours * 3600 == pytest.approx(30.0) and f.idle_share == pytest.approx(0.0)
    assert f.hours() == pytest.approx(((10 + 10 + 40) / 3600,) * 2) and f.trials() == (5, 5)
    # A worker for every trial: both quick trials and the running one end at 10, the full runs at 30.
    assert f.critical_hours * 3600 == pytest.approx(30.0)
    assert forecast_left([quick, full], workers=1).wall_hours * 3600 == pytest.approx(10 + 10 + 40)
    # Nothing left to start in the quick stage: the idle worker waits for it to end (10 s of its 30).
    f = forecast_left([StageWork("v", "quick", (0, 0), 5.0, running=[10.0]), StageWork("v", "full", (1, 1), 20.0)], 2)
    assert f.wall_hours * 3600 == pytest.approx(30.0) and f.idle_share == pytest.approx(0.5)
    # A stage with work and no measured time: no worker-hours, no wall time; no worker: no wall time.
    assert forecast_left([StageWork("v", "quick", (3, 3), None)], 2).hours() is None
    assert forecast_left([full], 0).wall_hours is None and forecast_left([full], 0).hours() is not None


def test_a_promoted_config_is_timed_by_the_quick_trials_of_its_width(write_campaign) -> None:
    """The full stage's waiting configs: each by its width's quick trials, scaled to the full stage
    (training steps by the data, validation once, the start-up once), the median trial's."""
    from optuna.distributions import CategoricalDistribution

    from search.campaign.config import load_campaign
    from search.report.status import StageStatus, campaign_forecast, stage_work, timing, timings_by_width

    campaign = load_campaign(write_campaign(quick={"fraction": 0.25, "epochs": 2}, full={"epochs": 4, "top_k": 2}))
    start = dt.datetime(2026, 12, 7, 9, 0, 0)
    dist = {"base_channels": CategoricalDistribution([4, 8])}

    def trial(number: int, state: TrialState, width: int, epoch: float = 0.0, steps: float = 0.0,
              overhead: float = 0.0) -> optuna.trial.FrozenTrial:
        epochs = [{"epoch": i + 1, "seconds": epoch, "train_seconds": steps} for i in range(2)] if epoch else []
        done = start + dt.timedelta(seconds=overhead + 2 * epoch) if state == TrialState.COMPLETE else None
        return optuna.trial.FrozenTrial(number, state, 1.0 if done else None, start if done else None, done,
                                        {"base_channels": width}, dist, {"epochs": epochs}, {}, {}, number)

    quick = [trial(0, TrialState.COMPLETE, 4, 1.0, 0.5, 2.0), trial(1, TrialState.COMPLETE, 8, 3.0, 2.0, 2.0),
             trial(2, TrialState.COMPLETE, 8, 3.0, 2.0, 2.0)]
    assert timing(quick) == timing(quick[1:])  # the median trial: a width-8 one
    assert timings_by_width(quick)[4].epoch == 1.0
    full = [trial(0, TrialState.WAITING, 8), trial(1, TrialState.WAITING, 4)]
    rows = []
    for stage, trials in (("quick", quick), ("full", full)):
        row = StageStatus("baseline", stage, True, {}, timing=timing(trials), by_width=timings_by_width(trials))
        row.work = stage_work(campaign, "baseline", stage, trials, [], 2 if stage == "full" else 0, 120.0,
                              row.timing, row.by_width)
        rows.append(row)
    f = campaign_forecast(rows, campaign, workers=1)
    work = next(s for s in f.stages if s.stage == "full")
    # width 8: 2 s start-up + 4 epochs of (1 s validation + 2 s of steps x 4 as much data) = 38 s;
    # width 4: 2 + 4 x (0.5 + 0.5 x 4) = 12 s. One worker runs them one after the other.
    assert work.queued == [pytest.approx(38.0), pytest.approx(12.0)] and work.to_start == (0, 0)
    assert f.wall_hours * 3600 == pytest.approx(50.0) and f.trials() == (2, 2)
