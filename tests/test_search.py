"""The search service on a real PostgreSQL (a fresh database per test) and on SQLite."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from conftest import REPO, on_a_small_disk, run_cli, start_cli, tiny_campaign_dict
from optuna.trial import TrialState

from models.errors import SarsweepError
from search.campaign import load_campaign
from search.promote import promote
from search.worker import run_worker
from storage import StorageSettings, open_storage


def trials_of(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url)
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def init(campaign: Path, url: str, tmp_path: Path) -> None:
    done = run_cli("init", "--campaign", str(campaign), "--storage", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_init_creates_named_studies_with_stage_attrs(pg_url: str, write_campaign, tmp_path: Path) -> None:
    campaign = write_campaign("sar-t", variants=["baseline", "resnet_lite"])
    init(campaign, pg_url, tmp_path)
    again = run_cli("init", "--campaign", str(campaign), "--storage", pg_url, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("exists ") == 4  # safe to run again
    storage = open_storage(pg_url)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == ["sar-t.baseline.full", "sar-t.baseline.quick", "sar-t.resnet_lite.full", "sar-t.resnet_lite.quick"]
    attrs = optuna.load_study(study_name="sar-t.baseline.quick", storage=storage).user_attrs
    assert attrs["stage"] == "quick" and attrs["variant"] == "baseline" and attrs["fraction"] == 1.0
    assert attrs["epochs"] == 1 and attrs["budget"] == 4 and attrs["fingerprint"] == load_campaign(campaign).fingerprint()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_workers_share_the_budget_exactly(backend: str, pg_url: str, write_campaign, tmp_path: Path) -> None:
    url = pg_url if backend == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    campaign = write_campaign(quick={"trials": 6})
    init(campaign, url, tmp_path)
    args = ("worker", "--campaign", str(campaign), "--variant", "baseline", "--stage", "quick", "--storage", url)
    workers = [start_cli(*args, cwd=tmp_path) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [o[1] for o in outputs]
    trials = trials_of(url, "t.baseline.quick")
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    ran = sum(o[0].count(" complete ") for o in outputs)
    assert ran == 6
    lines = [line for o in outputs for line in o[0].splitlines() if " complete " in line]
    assert all(re.fullmatch(r"trial \d complete value \d+\.\d{4} in \d+\.\d s on cpu", line) for line in lines), lines


def test_trials_record_metrics_per_epoch_and_a_seed(pg_url: str, write_campaign, tmp_path: Path) -> None:
    campaign = load_campaign(write_campaign(quick={"trials": 2, "epochs": 2}))
    storage = open_storage(pg_url, create_schema=True)
    summary = run_worker(storage, campaign, "baseline", "quick", tmp_path / "art", create_study=True, progress=False)
    assert summary.states["COMPLETE"] == 2
    t0, t1 = trials_of(pg_url, "t.baseline.quick")
    for t in (t0, t1):
        assert sorted(t.intermediate_values) == [1, 2]
        assert [e["epoch"] for e in t.user_attrs["epochs"]] == [1, 2]
        assert {"psnr", "ssim", "seconds", "device"} <= set(t.user_attrs["epochs"][0])
        assert t.user_attrs["param_count"] > 0 and t.user_attrs["device"] == "cpu"
        assert Path(t.user_attrs["checkpoint"]).is_file()
        assert t.value == pytest.approx(max(t.intermediate_values.values()))
        assert t.user_attrs["config"]["seed"] == t.user_attrs["seed"]
    assert t0.user_attrs["seed"] != t1.user_attrs["seed"]
    assert Path(t0.user_attrs["checkpoint"]).parent == tmp_path / "art" / "t" / "baseline" / "quick" / "trial_0000"
    # A COMPLETE trial is never resumed: its last.pt (optimizer state, 3x best.pt) is gone, best.pt stays.
    assert [p.name for p in sorted(Path(t0.user_attrs["checkpoint"]).parent.glob("*.pt"))] == ["best.pt"]
    keep = dataclasses.replace(campaign, keep_last_checkpoint=True, quick=dataclasses.replace(campaign.quick, trials=3))
    run_worker(storage, keep, "baseline", "quick", tmp_path / "art", progress=False)  # the same study: no new fingerprint
    t2 = trials_of(pg_url, "t.baseline.quick")[2]
    assert t2.state == TrialState.COMPLETE
    assert [p.name for p in sorted(Path(t2.user_attrs["checkpoint"]).parent.glob("*.pt"))] == ["best.pt", "last.pt"]


def test_worker_refuses_a_changed_campaign(pg_url: str, write_campaign, tmp_path: Path) -> None:
    init(write_campaign(), pg_url, tmp_path)
    changed = write_campaign(filename="changed.yaml", search={"lr": {"low": 1e-4, "high": 1e-3, "log": True}})
    done = run_cli("worker", "--campaign", str(changed), "--variant", "baseline", "--stage", "quick",
                   "--storage", pg_url, cwd=tmp_path)
    assert done.returncode == 2
    assert "study t.baseline.quick was created by a different campaign config" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and trials_of(pg_url, "t.baseline.quick") == []
    bigger_budget = write_campaign(filename="more.yaml", quick={"trials": 1})
    ok = run_cli("worker", "--campaign", str(bigger_budget), "--variant", "baseline", "--stage", "quick",
                 "--storage", pg_url, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr  # a budget change is not a different search
    assert len(trials_of(pg_url, "t.baseline.quick")) == 1


def test_init_with_a_changed_budget_reaches_running_workers(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """Lowering `quick.trials` and running `init` stops the running workers after their current
    trial (a converged search, a GPU needed elsewhere); raising it lets them go on. Workers used
    to keep the budget they started with."""
    path = write_campaign(quick={"trials": 40})
    init(path, pg_url, tmp_path)
    worker = start_cli("worker", "--campaign", str(path), "--variant", "baseline", "--stage", "quick",
                       "--storage", pg_url, "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not any(t.state == TrialState.COMPLETE for t in trials_of(pg_url, "t.baseline.quick")):
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        init(write_campaign(quick={"trials": 2}), pg_url, tmp_path)
        seen = len(trials_of(pg_url, "t.baseline.quick"))
        out, err = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert out.strip().splitlines()[-1].endswith("nothing left to run")
    assert len(trials_of(pg_url, "t.baseline.quick")) <= max(2, seen + 1)  # not 40

    from search.worker import claim_trial

    storage = open_storage(pg_url)
    study = optuna.load_study(study_name="t.baseline.quick", storage=storage)
    ran = len(study.trials)
    assert claim_trial(study, storage, "quick", 40) is None  # the study's budget, not the worker's own
    init(write_campaign(quick={"trials": ran + 1}), pg_url, tmp_path)
    assert claim_trial(study, storage, "quick", 2) is not None  # raised: one more


def test_worker_before_init_is_told_to_init(pg_url: str, write_campaign, tmp_path: Path) -> None:
    done = run_cli("worker", "--campaign", str(write_campaign()), "--variant", "baseline", "--stage", "quick",
                   "--storage", pg_url, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("run `sarsweep init` first")


def test_a_worker_without_the_gpu_it_is_told_to_use_claims_nothing(pg_url: str, write_campaign,
                                                                    tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = write_campaign(train={**tiny_campaign_dict()["train"], "device": "cuda"})
    init(path, pg_url, tmp_path)
    done = run_cli("worker", "--campaign", str(path), "--variant", "baseline", "--stage", "quick",
                   "--storage", pg_url, "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"sarsweep: error: device: cuda asked for, but torch {torch.__version__} is built without CUDA; "
        "use --device cpu or auto")
    assert trials_of(pg_url, "t.baseline.quick") == [] and not (tmp_path / "art").exists()


def _quick_done(pg_url: str, write_campaign, tmp_path: Path, trials: int = 4):  # type: ignore[no-untyped-def]
    path = write_campaign(quick={"trials": trials})
    init(path, pg_url, tmp_path)
    campaign = load_campaign(path)
    run_worker(open_storage(pg_url), campaign, "baseline", "quick", tmp_path / "art", progress=False)
    return path, campaign


def test_promotion_is_idempotent_and_links_back(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, campaign = _quick_done(pg_url, write_campaign, tmp_path)
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
    path, _ = _quick_done(pg_url, write_campaign, tmp_path, trials=2)
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
    path, _ = _quick_done(pg_url, write_campaign, tmp_path, trials=3)
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
    path, _ = _quick_done(pg_url, write_campaign, tmp_path)
    procs = [start_cli("promote", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1] for o in outs]
    full = trials_of(pg_url, "t.baseline.full")
    assert len(full) == 2 and len({t.user_attrs["promoted_from_trial"] for t in full}) == 2
    assert sum(o[0].count(" enqueued in ") for o in outs) == 2


def test_full_workers_run_only_promoted_configs_then_exit(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, campaign = _quick_done(pg_url, write_campaign, tmp_path)
    storage = open_storage(pg_url)
    assert run_worker(storage, campaign, "baseline", "full", tmp_path / "art", progress=False).states == {}
    promote(storage, campaign, "baseline")
    summary = run_worker(storage, campaign, "baseline", "full", tmp_path / "art", progress=False)
    assert summary.states == {"COMPLETE": 2}
    quick = {t.number: t for t in trials_of(pg_url, "t.baseline.quick")}
    for t in trials_of(pg_url, "t.baseline.full"):
        assert t.params == quick[t.user_attrs["promoted_from_trial"]].params


def test_export_then_train_reproduces_the_trial(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, _ = _quick_done(pg_url, write_campaign, tmp_path)
    done = run_cli("export", "--campaign", str(path), "--variant", "baseline", "--storage", pg_url,
                   "-o", str(tmp_path / "best.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "quick" in done.stdout  # the full stage has no result yet: falls back to quick
    text = (tmp_path / "best.yaml").read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "study t.baseline.quick, trial" in header[0] and "optuna 5." in text and "data fraction 1.0" in text
    best = max(trials_of(pg_url, "t.baseline.quick"), key=lambda t: t.value)
    exported = yaml.safe_load(text)
    assert {k: exported[k] for k in best.params} == best.params
    trained = run_cli("train", "--config", str(tmp_path / "best.yaml"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert f"val PSNR {best.user_attrs['val_psnr']:.2f} dB" in trained.stdout.splitlines()[-1]
    blocked = run_cli("export", "--campaign", str(path), "--variant", "baseline", "--storage", pg_url,
                      "-o", str(tmp_path / "best.yaml" / "again.yaml"), cwd=tmp_path)  # a file where a folder goes
    assert blocked.returncode == 2 and blocked.stderr.strip() == (
        f"sarsweep: error: cannot write {tmp_path / 'best.yaml' / 'again.yaml'}: {tmp_path / 'best.yaml'} is a file, "
        "not a folder")


def test_export_without_a_complete_trial_is_a_clear_error(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path = write_campaign()
    init(path, pg_url, tmp_path)
    done = run_cli("export", "--campaign", str(path), "--variant", "baseline", "--storage", pg_url,
                   "-o", str(tmp_path / "x.yaml"), cwd=tmp_path)
    assert done.returncode == 2 and not (tmp_path / "x.yaml").exists()
    assert done.stderr.strip() == "sarsweep: error: no COMPLETE trial to export in the full or quick stage of t.baseline"


def _first_checkpoint(art: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    last = art / "t" / "baseline" / "quick" / "trial_0000" / "last.pt"
    deadline = time.monotonic() + timeout
    while not last.is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def _running_row(campaign: Path, url: str, tmp_path: Path, grace: int, stale: bool = False) -> list[str]:
    """The one running trial's row of `sarsweep status`, split; its STALE mark checked."""
    done = run_cli("status", "--campaign", str(campaign), "--storage", url, "--heartbeat-interval", "1",
                   "--grace-period", str(grace), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("running trials")), None)
    assert at is not None, done.stdout
    assert f"stale after {grace}s" in lines[at] and lines[at + 1].split()[:3] == ["variant", "stage", "trial"]
    rows = [line for line in lines[at + 3:] if line.startswith("baseline")]
    assert len(rows) == 1, done.stdout
    assert ("STALE" in rows[0]) == stale, rows[0]
    return rows[0].split("  STALE")[0].split()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_a_retried_trial_resumes_from_its_checkpoint(how: str, pg_url: str, write_campaign, tmp_path: Path) -> None:
    path = write_campaign(quick={"trials": 1, "epochs": 25})
    init(path, pg_url, tmp_path)
    art = tmp_path / "art"
    args = ("worker", "--campaign", str(path), "--variant", "baseline", "--stage", "quick", "--storage", pg_url,
            "--artifacts", str(art), "--heartbeat-interval", "1", "--grace-period", "2")
    first = start_cli(*args, cwd=tmp_path)
    _first_checkpoint(art, first)
    os.kill(first.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    first_out = first.communicate(timeout=60)
    if how == "sigterm":
        assert first.returncode == 0, first_out
        t0 = trials_of(pg_url, "t.baseline.quick")[0]
        assert t0.state == TrialState.FAIL and t0.user_attrs["fail_reason"] == "worker stopped by SIGTERM"
    else:
        time.sleep(3)  # past the grace period: the next worker finds trial 0 stale
        # ... and before it, `sarsweep status` shows the operator whose trial it is and how far it got
        row = _running_row(path, pg_url, tmp_path, grace=2, stale=True)
        worker = f"{socket.gethostname()}:{first.pid}"
        assert row[:3] == ["baseline", "quick", "#0"] and row[-1] == worker, row
        assert first_out[0].startswith(f"worker {worker} on t.baseline.quick\n"), first_out  # its log says so too
        assert 1 <= int(row[3].split("/")[0]) < 25 and row[3].endswith("/25") and row[6] == "ago", row
    second = run_cli(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    t0, retry = trials_of(pg_url, "t.baseline.quick")
    assert t0.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == t0.params
    assert retry.user_attrs["start_epoch"] > 0  # resumed, not restarted
    assert retry.user_attrs["seed"] == t0.user_attrs["seed"]
    assert sorted(retry.intermediate_values) == list(range(1, 26))


def test_a_worker_that_cannot_write_stops_with_one_line_and_its_trial_is_retried(pg_url: str, write_campaign,
                                                                                 tmp_path: Path) -> None:
    path = write_campaign(quick={"trials": 1})
    init(path, pg_url, tmp_path)
    args = ("worker", "--campaign", str(path), "--variant", "baseline", "--stage", "quick", "--storage", pg_url)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    refused = run_cli(*args, "--artifacts", str(blocker), cwd=tmp_path)  # a wrong mount: found before any claim
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"sarsweep: error: cannot write {blocker}: {blocker} is a file, not a folder"
    assert trials_of(pg_url, "t.baseline.quick") == []
    art = tmp_path / "art"
    (art / "optuna-artifacts").parent.mkdir()
    (art / "optuna-artifacts").write_text("")  # the previews' store cannot be made either
    refused = run_cli(*args, "--artifacts", str(art), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"sarsweep: error: cannot write {art / 'optuna-artifacts'}: {art / 'optuna-artifacts'} is a file, not a folder")
    (art / "optuna-artifacts").unlink()
    assert trials_of(pg_url, "t.baseline.quick") == []
    # The root is fine, but trial 0's folder cannot be made: found when the trial starts.
    trial_dir = art / "t" / "baseline" / "quick" / "trial_0000"
    trial_dir.parent.mkdir(parents=True)
    trial_dir.write_text("")
    stopped = run_cli(*args, "--artifacts", str(art), cwd=tmp_path)
    assert stopped.returncode == 2
    assert stopped.stderr.strip() == (f"sarsweep: error: cannot write {trial_dir}: {trial_dir} is a file, not a folder; "
                                      "trial 0 queued for retry")
    t0, retry = trials_of(pg_url, "t.baseline.quick")
    assert t0.state == TrialState.FAIL and t0.user_attrs["fail_reason"].startswith("worker could not write its output")
    assert retry.state == TrialState.WAITING and retry.params == t0.params
    trial_dir.unlink()  # the disk is fixed: the next worker runs the retry
    fixed = run_cli(*args, "--artifacts", str(art), cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert [t.state for t in trials_of(pg_url, "t.baseline.quick")] == [TrialState.FAIL, TrialState.COMPLETE]


def test_a_worker_on_a_disk_too_small_claims_nothing_however_often_it_restarts(pg_url: str, write_campaign,
                                                                                 tmp_path: Path) -> None:
    """compose restarts a worker that exits 2 (`restart: on-failure`). On a disk too small for a
    trial's checkpoints (a zero-byte probe passes there), each start used to claim a trial, fail it
    at its first checkpoint and queue a retry: two more trials per restart, without end. Now it
    refuses before claiming, with the sizes, and the study is untouched."""
    path = write_campaign(quick={"trials": 1})
    init(path, pg_url, tmp_path)
    disk = tmp_path / "disk"
    script = Path(sys.executable).parent / "sarsweep"
    worker = (f'"{script}" worker --campaign "{path}" --variant baseline --stage quick --storage "{pg_url}" '
              f'--artifacts "{disk}"')
    done = on_a_small_disk(disk, "64k", f'{worker}; echo "rc=$?"; {worker}; echo "rc=$?"', tmp_path)
    assert [line for line in done.stdout.splitlines() if line.startswith("rc=")] == ["rc=2", "rc=2"], done.stderr
    refusal = (rf"sarsweep: error: cannot write {re.escape(str(disk))}: \d+\.\d KiB free, "
               r"baseline trials' checkpoints need up to \d+\.\d (KiB|MiB)")
    assert re.fullmatch(rf"({refusal}\n){{2}}", done.stderr), done.stderr
    assert trials_of(pg_url, "t.baseline.quick") == []  # no trial claimed, none failed, no retry queued


@pytest.mark.parametrize(("peer", "size"), [("baseline", "2m"), ("resnet_lite", "4m")])
def test_the_disk_check_counts_what_running_trials_have_still_to_write(peer: str, size: str, pg_url: str,
                                                                      write_campaign, tmp_path: Path) -> None:
    """Workers started together (launch --per-gpu N, compose --scale) each saw the empty disk and
    claimed. Under the claim lock a worker now also counts the campaign's running trials, its own
    study's and the other variants' (whose workers write to the same artifacts root). One tiny
    baseline trial's checkpoints take up to 1.5 MiB: a 2 MiB disk does not hold those and a
    baseline peer's, a 4 MiB disk not those and a resnet_lite peer's (3.0 MiB; largest sizes, as
    neither trial has its config yet)."""
    from search.worker import claim_trial

    path = write_campaign(variants=["baseline", "resnet_lite"], quick={"trials": 2})
    init(path, pg_url, tmp_path)
    storage = open_storage(pg_url)
    study = optuna.load_study(study_name=f"t.{peer}.quick", storage=storage)
    held = claim_trial(study, storage, "quick", 2)  # a peer's trial, claimed, not yet writing
    assert held is not None
    disk = tmp_path / "disk"
    script = Path(sys.executable).parent / "sarsweep"
    worker = (f'"{script}" worker --campaign "{path}" --variant baseline --stage quick --storage "{pg_url}" '
              f'--artifacts "{disk}"')
    done = on_a_small_disk(disk, size, worker, tmp_path)
    assert done.returncode == 2 and re.fullmatch(
        rf"sarsweep: error: cannot write {re.escape(str(disk))}: \d+\.\d MiB free, checkpoints of this baseline "
        r"trial and of 1 running trial of campaign t need up to (3|4)\.\d MiB\n", done.stderr), done.stderr
    nothing_claimed = [TrialState.RUNNING] if peer == "baseline" else []  # the peer's trial, or none
    assert [t.state for t in trials_of(pg_url, "t.baseline.quick")] == nothing_claimed

    study.tell(held, 0.0)  # the peer finished (without writing here): the same disk takes the next trial
    again = on_a_small_disk(tmp_path / "disk2", size, worker.replace(str(disk), str(tmp_path / "disk2")), tmp_path)
    assert again.returncode == 0, again.stderr
    assert [t.state for t in trials_of(pg_url, "t.baseline.quick")] == [TrialState.COMPLETE] * 2


def test_claims_of_different_variants_take_turns_at_the_disk_check(pg_url: str, write_campaign,
                                                                   tmp_path: Path) -> None:
    """Each study has its own claim lock, so a baseline and a resnet_lite worker could both pass the
    disk check on the same free bytes at the same instant. The check now takes the campaign's disk
    lock in the claim's transaction: while someone holds it, no worker of the campaign claims."""
    import psycopg2

    from storage.locks import lock_key

    path = write_campaign(variants=["baseline", "resnet_lite"], quick={"trials": 1})
    init(path, pg_url, tmp_path)
    holder = psycopg2.connect(pg_url)
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (lock_key("disk:t"),))  # as another variant's claim would
    worker = start_cli("worker", "--campaign", str(path), "--variant", "resnet_lite", "--stage", "quick",
                       "--storage", pg_url, "--artifacts", str(tmp_path / "art"), cwd=tmp_path)
    try:
        time.sleep(4)  # start-up (~2 s here) and then waiting at the lock
        assert worker.poll() is None and trials_of(pg_url, "t.resnet_lite.quick") == []
    finally:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (lock_key("disk:t"),))
        holder.close()
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    assert [t.state for t in trials_of(pg_url, "t.resnet_lite.quick")] == [TrialState.COMPLETE]


def test_a_running_trial_reserves_only_what_its_folder_does_not_hold_yet(write_campaign, tmp_path: Path) -> None:
    from search.worker import still_to_write
    from training.checkpoint import checkpoint_bytes
    from training.config import TrainConfig

    campaign = load_campaign(write_campaign())
    study = optuna.create_study()
    fresh, retry = study.ask(), study.ask()
    config = {**tiny_campaign_dict()["train"], "variant": "baseline", "base_channels": 4}
    retry.set_user_attr("config", config)
    study._storage.set_trial_system_attr(retry._trial_id, "failed_trial", 0)  # writes to trial_0000's folder
    folder = tmp_path / "art" / "t" / "baseline" / "quick" / "trial_0000"
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"x" * 1000)
    (folder / "last.pt").write_bytes(b"x" * 3000)
    largest = 10**9
    frozen = {t.number: study._storage.get_trial(t._trial_id) for t in (fresh, retry)}
    assert still_to_write(frozen[0], tmp_path / "art", campaign, "baseline", "quick", largest) == largest - 4000
    own = checkpoint_bytes("baseline", TrainConfig.from_dict(config).model_kwargs)
    assert still_to_write(frozen[1], tmp_path / "art", campaign, "baseline", "quick", largest) == own - 4000


def test_reaper_retries_a_dead_workers_trial_with_no_other_worker(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """`sarsweep reaper --once` fails a trial whose worker died and queues its retry. The worker
    "dies" right after its claim and first suggestion, before any heartbeat thread ran: the
    claim's own first beat is what makes it reapable (Optuna never reaps a RUNNING trial without
    any heartbeat). The worker's death with a checkpoint, and the retry resuming from it, are
    the kill -9 tests."""
    from search.worker import claim_trial

    path = write_campaign(quick={"trials": 1, "epochs": 25})
    init(path, pg_url, tmp_path)
    beat = ("--heartbeat-interval", "1", "--grace-period", "2")
    storage = open_storage(pg_url, StorageSettings(heartbeat_interval=1, grace_period=2))
    study = optuna.load_study(study_name="t.baseline.quick", storage=storage)
    trial = claim_trial(study, storage, "quick", 1)
    assert trial is not None
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)  # ... and no heartbeat after its first
    storage.engine.dispose()
    row = _running_row(path, pg_url, tmp_path, grace=60)  # fresh: no STALE mark, no epoch or worker yet
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
    assert reaper.returncode == 0, stderr
    assert "most recent call first" in stderr and "cmd_reaper" in stderr
    assert stdout.strip().endswith("reaper stopped (SIGTERM)")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # this test asks outside a worker
def test_reaper_thread_fails_a_trial_whose_heartbeat_stopped(pg_url: str) -> None:
    from search.reaper import ReaperThread

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


def test_failing_trials_are_recorded_and_the_worker_goes_on(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path = write_campaign(quick={"trials": 2, "epochs": 3}, search={
        "lr": {"low": 1e30, "high": 1e32, "log": True}, "grad_clip": {"choices": [0.0]},
        "optimizer": {"choices": ["adam"]}, "warmup_epochs": {"low": 0, "high": 1}})
    init(path, pg_url, tmp_path)
    done = run_cli("worker", "--campaign", str(path), "--variant", "baseline", "--stage", "quick",
                   "--storage", pg_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    trials = trials_of(pg_url, "t.baseline.quick")
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]  # no retry storm either
    assert all("NonFiniteLossError: non-finite training loss" in t.user_attrs["fail_reason"] for t in trials)


def test_storage_errors_are_one_line_without_the_password(write_campaign, tmp_path: Path) -> None:
    path = str(write_campaign())
    cases = {
        "postgresql://postgres:s3cret@127.0.0.1:1/nodb": "(host 127.0.0.1, port 1, database nodb): connection to server",
        "postgresql://postgres:s3cret@127.0.0.1:5432/sarsweep_absent_db": 'database "sarsweep_absent_db" does not exist',
        "postgresql://postgres:s3cret@:::/x": "malformed storage URL",
        "mysql://u:s3cret@127.0.0.1/x": "unsupported storage URL mysql://u:***@127.0.0.1/x",
    }
    for url, expected in cases.items():
        for how in ("flag", "env"):
            args = ["status", "--campaign", path] + (["--storage", url] if how == "flag" else [])
            done = run_cli(*args, cwd=tmp_path, env={"SARSWEEP_STORAGE": url} if how == "env" else None)
            assert done.returncode == 2, (url, done.stdout)
            assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr
            assert "s3cret" not in done.stderr + done.stdout


def test_plain_optuna_cli_reads_our_studies(pg_url: str, write_campaign, tmp_path: Path) -> None:
    import sys

    _quick_done(pg_url, write_campaign, tmp_path, trials=2)
    optuna_cli = str(Path(sys.executable).parent / "optuna")
    url = pg_url.replace("postgresql://", "postgresql+psycopg2://")
    studies = subprocess.run([optuna_cli, "studies", "--storage", url], capture_output=True, text=True, timeout=60)
    assert studies.returncode == 0, studies.stderr
    assert "t.baseline.quick" in studies.stdout and "t.baseline.full" in studies.stdout
    best = subprocess.run([optuna_cli, "best-trial", "--study-name", "t.baseline.quick", "--storage", url, "-f", "yaml"],
                          capture_output=True, text=True, timeout=60)
    assert best.returncode == 0, best.stderr
    top = max(trials_of(pg_url, "t.baseline.quick"), key=lambda t: t.value)
    assert yaml.safe_load(best.stdout)["number"] == top.number


def test_status_shows_states_and_best(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path, _ = _quick_done(pg_url, write_campaign, tmp_path, trials=3)
    run_cli("promote", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    done = run_cli("status", "--campaign", str(path), "--storage", pg_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()[:2]): line.split() for line in done.stdout.splitlines() if line.startswith("baseline")}
    assert rows[("baseline", "quick")][2] == "3" and rows[("baseline", "full")][6] == "2"
    best = max(trials_of(pg_url, "t.baseline.quick"), key=lambda t: t.value)
    assert rows[("baseline", "quick")][7:9] == ["done", f"#{best.number}"]
    assert rows[("baseline", "full")][7:9] == ["no", "worker"]  # 2 promoted configs wait for a worker
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
    from search.status import RunningTrial, StageStatus, render_running

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
    from search.status import RunningTrial, StageStatus, render_left, time_left

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


def test_launch_runs_cpu_workers_that_share_the_budget(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path = write_campaign(quick={"trials": 4})
    init(path, pg_url, tmp_path)
    done = run_cli("launch", "--gpus", "all", "--per-gpu", "2", "--", "--campaign", str(path), "--variant",
                   "baseline", "--stage", "quick", "--storage", pg_url, cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    assert "launching 2 worker(s) on the CPU" in done.stdout
    assert sorted(t.number for t in trials_of(pg_url, "t.baseline.quick")) == [0, 1, 2, 3]


def test_demo_runs_end_to_end_on_sqlite(tmp_path: Path) -> None:
    # One quick trial a variant (promotion and pruning have tests of their own): ~20 s of CI less.
    done = run_cli("demo", "--trials", "1", "--epochs", "1", "-o", "best.yaml", cwd=tmp_path,
                   env={"SARSWEEP_STORAGE": "", "SARSWEEP_ARTIFACTS": ""}, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sarsweep.db").is_file() and (tmp_path / "best.yaml").is_file()
    for variant in ("baseline", "resnet_lite", "residual", "attention"):
        assert f"quick search: demo.{variant}.quick" in done.stdout
    assert "best config written to best.yaml" in done.stdout
    # Each variant's chosen config scored on generated scenes of another seed, in the report too.
    assert re.search(r"^Held out: .*synthetic.*, \d[\d,]* patches of 32x32 from 12 file\(s\)", done.stdout, re.M)
    assert len(re.findall(r"^  \w+: held-out PSNR \d+\.\d\d dB", done.stdout, re.M)) == 4
    assert "| held-out PSNR / SSIM |" in (tmp_path / "report.md").read_text()
    retrain = run_cli("train", "--config", "best.yaml", "--epochs", "1", cwd=tmp_path)
    assert retrain.returncode == 0, retrain.stderr


def test_demo_and_launch_refuse_bad_options_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "best.yaml").write_text("a file where the output folder should be")
    demo = run_cli("demo", "--storage", f"sqlite:///{tmp_path / 'd.db'}", "--artifacts", str(tmp_path / "art"),
                   "-o", str(tmp_path / "best.yaml" / "best.yaml"), cwd=tmp_path)
    assert demo.returncode == 2 and demo.stderr == (
        f"sarsweep: error: cannot write {tmp_path / 'best.yaml'}: {tmp_path / 'best.yaml'} is a file, not a folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml"]  # no database, no trial, no checkpoint
    for option, value, *args in (["--per-gpu", "0", "launch", "--", "--campaign", "c.yaml"],
                                 ["--top-k", "0", "promote", "--campaign", "c.yaml"], ["--epochs", "0", "demo"],
                                 ["--period", "-1", "reaper", "--campaign", "c.yaml"],
                                 ["--worker-index", "-3", "worker", "--campaign", "c.yaml", "--variant", "baseline",
                                  "--stage", "quick"],
                                 ["--heartbeat-interval", "-5", "status", "--campaign", "c.yaml"],  # a traceback
                                 ["--grace-period", "0", "reaper", "--campaign", "c.yaml"],  # the default, unsaid
                                 ["--port", "70000", "dashboard"]):  # past 65535 was a traceback from bind()
        done = run_cli(args[0], option, value, *args[1:], cwd=tmp_path)  # one line, without argparse's usage block
        assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and done.stderr.startswith(
            f"sarsweep {args[0]}: error: argument {option}: must be "), done.stderr
        assert done.stderr.rstrip().endswith(f", got {value}")
    # A command line of the wrong shape says where the options are listed.
    done = run_cli("export", "--campaign", "c.yaml", "--variant", "baseline", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == ("sarsweep export: error: the following arguments are required: "
                                                    "-o/--output (see sarsweep export --help)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml"]


def test_heartbeat_settings_must_leave_room(pg_url: str) -> None:
    from storage import StorageError

    with pytest.raises(StorageError, match="grace period"):
        StorageSettings(heartbeat_interval=10, grace_period=10)


def test_init_refuses_a_readonly_role_before_it_creates_anything(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """The role was checked after the schema and studies were made: a refused role (SQLite, a bad
    name) still left a new database file, or tables and studies, behind an exit code of 2."""
    import psycopg2

    path = write_campaign()
    db = tmp_path / "new.db"
    for storage, role, message in (
            (f"sqlite:///{db}", "sarsweep_ro", "--readonly-role needs PostgreSQL storage (SQLite has no roles)"),
            (pg_url, "Dash-RO", "--readonly-role: 'Dash-RO' is not a plain role name (lower-case letters, digits, _)"),
            (pg_url, "postgres", "--readonly-role: 'postgres' is the role sarsweep itself connects as")):
        done = run_cli("init", "--campaign", str(path), "--storage", storage, "--readonly-role", role, cwd=tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", f"sarsweep: error: {message}\n")
    assert not db.exists()
    with contextlib.closing(psycopg2.connect(pg_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cur.fetchone() == (0,)  # no schema, so no study


def test_launch_hands_each_worker_a_gpu_of_its_own_allocation() -> None:
    """Inside an allocation that set CUDA_VISIBLE_DEVICES (Slurm: '4,5,6,7'), index 1 is the
    allocation's second GPU; a child told CUDA_VISIBLE_DEVICES=1 trained on physical GPU 1, outside
    it. A GPU it does not see, or one listed twice, used to start a CPU worker or two workers on one
    GPU without a word."""
    from search.launch import parse_gpus

    assert parse_gpus("all", 4, "4,5,6,7") == ["4", "5", "6", "7"]
    assert parse_gpus("1,3", 4, "4,5,6,7") == ["5", "7"]
    assert parse_gpus("all", 2, "GPU-8a1f,GPU-77c2") == ["GPU-8a1f", "GPU-77c2"]  # UUIDs, as containers set
    assert parse_gpus("0, 2", 3, None) == ["0", "2"]  # no allocation: the indices themselves
    assert parse_gpus("all", 0, "") == []  # no GPU: CPU workers
    for spec, count, visible, message in (
            ("0,0", 4, None, "--gpus 0,0: GPU 0 is listed twice; --per-gpu N runs N workers on each GPU"),
            ("2,7", 4, "4,5,6,7", "--gpus 2,7: GPU 7 is not visible here (this process sees 4 GPU(s), 0-3, "
                                  "CUDA_VISIBLE_DEVICES='4,5,6,7')"),
            ("0", 0, None, "--gpus 0: GPU 0 is not visible here (this process sees no GPU)"),
            ("gpu0", 1, None, "--gpus: expected 'all' or a comma-separated list of GPU indices, got 'gpu0'")):
        with pytest.raises(SarsweepError) as err:
            parse_gpus(spec, count, visible)
        assert str(err.value) == message


def test_launch_on_a_gpu_this_machine_lacks_starts_no_worker(write_campaign, tmp_path: Path) -> None:
    done = run_cli("launch", "--gpus", "0", "--", "--campaign", str(write_campaign()), "--variant", "baseline",
                   "--stage", "quick", "--storage", f"sqlite:///{tmp_path / 'l.db'}", cwd=tmp_path,
                   env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert done.stderr == ("sarsweep: error: --gpus 0: GPU 0 is not visible here (this process sees no GPU, "
                           "CUDA_VISIBLE_DEVICES='')\n")
    assert not (tmp_path / "l.db").exists()


def test_launch_gives_cpu_workers_an_equal_share_of_the_cores(monkeypatch) -> None:
    from search.launch import worker_commands

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    cpu = worker_commands([], 4, ["--campaign", "c.yaml"])
    assert [env["OMP_NUM_THREADS"] for _, env in cpu] == ["4"] * 4
    assert [cmd[-1] for cmd, _ in cpu] == ["0", "1", "2", "3"]
    gpu = worker_commands(["0", "1"], 1, [])
    assert all("OMP_NUM_THREADS" not in env for _, env in gpu)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's choice wins
    assert {env["OMP_NUM_THREADS"] for _, env in worker_commands([], 2, [])} == {"1"}


def test_the_sampler_of_a_claimed_trial_sees_every_trial_finished_before_it(pg_url: str) -> None:
    """The claim builds the Trial itself, past study.ask(): samplers (TPE reads the study through
    Optuna's per-trial cache) must still see every trial finished before the claim, and a
    queued trial (a retry, a promoted config) must still be popped first with its params."""
    from search.worker import work

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
    work(study, storage, "quick", 4, lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1))
    assert seen == [(1, 1), (1, 1), (2, 2), (2, 2), (3, 3), (3, 3)]  # trial 0 was the queued one
    ts = study.get_trials(deepcopy=False)
    assert [t.state for t in ts] == [TrialState.COMPLETE] * 4 and ts[0].params == {"x": 0.25, "y": 0.5}


def test_a_signal_inside_a_locked_transaction_stops_the_process_and_is_no_lost_connection(pg_url: str) -> None:
    """SIGTERM landing inside a SQL call of a lock holder (a reaper pass, a claim) must come out as
    WorkerStopped. SQLAlchemy invalidates the connection for such an "exit exception" and calls
    it a disconnect; taken for a dropped connection (TransactionLost, transient), it was retried
    instead of stopping, and `sarsweep reaper` exited 1 on docker stop about one time in eight."""
    from sqlalchemy import event, text

    from search.worker import WorkerStopped
    from storage.locks import locked_transaction

    storage = open_storage(pg_url, create_schema=True)

    def signal_arrives(*_: object) -> None:
        event.remove(storage.engine, "before_cursor_execute", signal_arrives)
        raise WorkerStopped("SIGTERM")

    with pytest.raises(WorkerStopped), locked_transaction(storage, "s") as conn:
        assert conn is not None
        event.listen(storage.engine, "before_cursor_execute", signal_arrives)
        conn.execute(text("SELECT 1"))
    with locked_transaction(storage, "s") as conn:  # the pool hands out a working connection again
        assert conn is not None and conn.execute(text("SELECT 1")).scalar() == 1


def test_sigusr1_prints_a_workers_stacks_and_it_goes_on(pg_url: str) -> None:
    base = [sys.executable, "-m", "search.loadtest", "--storage", pg_url, "--study", "u"]
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
