"""`sarsweep worker` on a real PostgreSQL (a fresh database per test) and on SQLite."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import time
from pathlib import Path

import optuna
import pytest
from conftest import run_cli, start_cli, tiny_campaign_dict
from optuna.trial import TrialState
from support.campaigns import first_checkpoint, init, running_row, trials_of

from search.campaign.config import load_campaign
from search.running.worker import run_worker
from storage import open_storage


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
    ran = sum(o[0].count(" complete:") for o in outputs)
    assert ran == 6
    lines = [line for o in outputs for line in o[0].splitlines() if re.match(r"trial \d+ complete", line)]
    # A tiny model after one epoch often scores below each patch's mean: the line says so when it does.
    below = r"(?: \(BELOW the trivial reference: \d+\.\d{2} dB against \d+\.\d{2} dB\))?"
    assert all(re.fullmatch(rf"trial \d complete: val PSNR \d+\.\d{{2}} dB in \d+\.\d s on cpu{below}", line)
               for line in lines), lines


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
        # The training steps' share of each epoch (what status scales to another stage's data).
        assert all(0 < e["train_seconds"] <= e["seconds"] for e in t.user_attrs["epochs"])
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

    from storage.trials import claim

    storage = open_storage(pg_url)
    study = optuna.load_study(study_name="t.baseline.quick", storage=storage)
    ran = len(study.trials)
    assert claim(study, storage, 40) is None  # the study's budget, not the worker's own
    init(write_campaign(quick={"trials": ran + 1}), pg_url, tmp_path)
    assert claim(study, storage, 2) is not None  # raised: one more


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


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_a_retried_trial_resumes_from_its_checkpoint(how: str, pg_url: str, write_campaign, tmp_path: Path) -> None:
    path = write_campaign(quick={"trials": 1, "epochs": 25})
    init(path, pg_url, tmp_path)
    art = tmp_path / "art"
    args = ("worker", "--campaign", str(path), "--variant", "baseline", "--stage", "quick", "--storage", pg_url,
            "--artifacts", str(art), "--heartbeat-interval", "1", "--grace-period", "2")
    first = start_cli(*args, cwd=tmp_path)
    first_checkpoint(art, first)
    os.kill(first.pid, signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    first_out = first.communicate(timeout=60)
    if how == "sigterm":
        # 143 (not 0: `worker && promote` must not go on), after the trial was queued, and it says which
        assert first.returncode == 143, first_out
        assert first_out[0].strip().splitlines()[-1] == ("worker on t.baseline.quick: no trial; stopped by SIGTERM; "
                                                         "trial 0 of t.baseline.quick queued for retry")
        t0 = trials_of(pg_url, "t.baseline.quick")[0]
        assert t0.state == TrialState.FAIL and t0.user_attrs["fail_reason"] == "worker stopped by SIGTERM"
    else:
        time.sleep(3)  # past the grace period: the next worker finds trial 0 stale
        # ... and before it, `sarsweep status` shows the operator whose trial it is and how far it got
        row = running_row(path, pg_url, tmp_path, grace=2, stale=True)
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
    # The resuming worker says so before its first epoch line: which trial, from where, and why.
    why = "worker stopped by SIGTERM" if how == "sigterm" else \
        "its worker stopped sending heartbeats (failed as stale after 2 s)"
    lines = second.stdout.splitlines()
    said = f"trial 1 resumes trial 0 from epoch {retry.user_attrs['start_epoch'] + 1} of 25: {why}"
    assert said in lines and lines.index(said) < next(i for i, x in enumerate(lines) if x.startswith("trial 1 epoch ")), lines[:5]


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
