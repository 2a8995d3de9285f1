"""Promotion: best distinct quick configs into the full study, once, after the quick stage."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import sqlalchemy
from conftest import run_cli, start_cli
from optuna.trial import TrialState
from support.campaigns import quick_done, trials_of

from search.campaign.config import load_campaign
from search.running.promote import promote
from search.running.worker import run_worker
from storage import open_storage


def test_promotion_is_idempotent_and_links_back(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, campaign = quick_done(pg_url, write_campaign, tmp_path)
    storage = open_storage(pg_url)
    first = promote(storage, campaign, "baseline")
    second = promote(storage, campaign, "baseline")
    assert [p.enqueued for p in first] == [True, True] and [p.enqueued for p in second] == [False, False]
    quick = {t.number: t for t in trials_of(pg_url, "t.baseline.quick")}
    best = sorted(quick.values(), key=lambda t: -t.value)[:2]
    full = trials_of(pg_url, "t.baseline.full")
    assert [t.state for t in full] == [TrialState.WAITING] * 2
    assert [t.user_attrs["promoted_from_trial"] for t in full] == [t.number for t in best]
    for t in full:
        source = quick[t.user_attrs["promoted_from_trial"]]
        assert t.user_attrs["promoted_from_study"] == "t.baseline.quick"
        assert t.user_attrs["quick_value"] == source.value and t.system_attrs["fixed_params"] == source.params


def test_promote_waits_for_the_quick_stage_to_end(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """Picks from an unfinished quick stage are not its best, and a later promote would add the
    new best beside them: promote skips the variant (exit 1) unless told to wait or take what is done."""
    path, _ = quick_done(pg_url, write_campaign, tmp_path, trials=2)
    campaign = load_campaign(write_campaign(quick={"trials": 4}))  # the budget grows by 2: one is queued, one not started
    storage = open_storage(pg_url)
    study = optuna.load_study(study_name="t.baseline.quick", storage=storage)
    study.enqueue_trial({"lr": 0.002})
    args = ("promote", "--campaign", str(path), "--storage", pg_url)
    early = run_cli(*args, cwd=tmp_path)
    assert early.returncode == 1, early.stderr
    assert early.stdout.strip() == "baseline: quick stage not finished (1 waiting, 1 not started; 2 finished); not promoted"
    assert early.stderr.strip() == ("sarsweep: not promoted while their quick stage runs: baseline; `promote --wait` "
                                    "promotes each when it ends, `--partial` from the trials finished so far")
    assert trials_of(pg_url, "t.baseline.full") == []
    waiter = start_cli(*args, "--wait", "--poll", "0.2", cwd=tmp_path)
    try:
        time.sleep(2)  # it looks at least once before the stage ends, and waits
        assert waiter.poll() is None and trials_of(pg_url, "t.baseline.full") == []
        summary = run_worker(storage, campaign, "baseline", "quick", tmp_path / "art", progress=False)
        assert summary.states == {"COMPLETE": 2}
        out, err = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
    assert waiter.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "baseline: quick stage not finished (1 waiting, 1 not started; 2 finished); waiting for it"
    quick = trials_of(pg_url, "t.baseline.quick")
    best = sorted((t for t in quick if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.number))[:2]
    assert lines[-2:] == [f"baseline: quick trial {t.number} (value {t.value:.4f}) enqueued in t.baseline.full"
                          for t in best]
    assert [t.user_attrs["promoted_from_trial"] for t in trials_of(pg_url, "t.baseline.full")] == [t.number for t in best]


def test_promote_partial_takes_the_trials_finished_so_far(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, _ = quick_done(pg_url, write_campaign, tmp_path, trials=3)
    storage = open_storage(pg_url)
    study = optuna.load_study(study_name="t.baseline.quick", storage=storage)
    running = storage.get_trial(storage.create_new_trial(study._study_id))  # a trial a worker runs now
    early = run_cli("promote", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    assert early.returncode == 1 and "(1 running; 3 finished); not promoted" in early.stdout
    storage.record_heartbeat(running._trial_id)  # ... and whose worker died an hour ago
    with storage.engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 hour'"))
    lost = run_cli("promote", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    assert lost.returncode == 1 and lost.stdout.strip() == (
        "baseline: quick stage not finished (1 running whose worker is gone, for a worker or `sarsweep reaper` "
        "to retry; 3 finished); not promoted")
    done = run_cli("promote", "--campaign", str(path), "--storage", pg_url, "--partial", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(" enqueued in t.baseline.full") == 2
    assert running.number not in [t.user_attrs["promoted_from_trial"] for t in trials_of(pg_url, "t.baseline.full")]
    for extra, expected in ((["--partial", "--wait"], "argument --wait: not allowed with argument --partial"),
                            (["--poll", "5"], "--poll is for --wait")):
        refused = run_cli("promote", "--campaign", str(path), "--storage", pg_url, *extra, cwd=tmp_path)
        assert refused.returncode == 2 and expected in refused.stderr, refused.stderr


def test_concurrent_promoters_enqueue_each_config_once(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, _ = quick_done(pg_url, write_campaign, tmp_path)
    procs = [start_cli("promote", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1] for o in outs]
    full = trials_of(pg_url, "t.baseline.full")
    assert len(full) == 2 and len({t.user_attrs["promoted_from_trial"] for t in full}) == 2
    assert sum(o[0].count(" enqueued in ") for o in outs) == 2


def test_full_workers_run_only_promoted_configs_then_exit(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, campaign = quick_done(pg_url, write_campaign, tmp_path)
    storage = open_storage(pg_url)
    assert run_worker(storage, campaign, "baseline", "full", tmp_path / "art", progress=False).states == {}
    promote(storage, campaign, "baseline")
    summary = run_worker(storage, campaign, "baseline", "full", tmp_path / "art", progress=False)
    assert summary.states == {"COMPLETE": 2}
    quick = {t.number: t for t in trials_of(pg_url, "t.baseline.quick")}
    for t in trials_of(pg_url, "t.baseline.full"):
        assert t.params == quick[t.user_attrs["promoted_from_trial"]].params
