"""The campaign worker (search/running/source.py, search/running/worker.py): one command per GPU runs the whole campaign."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import run_cli, start_cli
from optuna.trial import TrialState
from support.campaigns import init, trials_of

from search.campaign.config import load_campaign
from storage import open_storage

FOUR = ["baseline", "resnet_lite", "residual", "attention"]


def _lines(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    return out, err


@pytest.mark.parametrize(("backend", "workers"), [("postgresql", 3), ("sqlite", 2)])
def test_campaign_workers_finish_a_four_variant_campaign(backend: str, workers: int, pg_url: str, write_campaign,
                                                         tmp_path: Path) -> None:
    """N campaign workers (and, on PostgreSQL, an operator's `promote --wait` at the same time)
    finish every study: each quick stage its budget, each full stage exactly top_k promoted
    configs, each promoted once; every process exits 0."""
    url = pg_url if backend == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    path = write_campaign(variants=FOUR, quick={"trials": 2}, full={"top_k": 2})
    init(path, url, tmp_path)
    common = ("--campaign", str(path), "--storage", url, "--artifacts", str(tmp_path / "art"))
    env = {"OMP_NUM_THREADS": "1"}
    procs = [start_cli("worker", *common, "--poll", "0.3", "--worker-index", str(i), cwd=tmp_path, env=env)
             for i in range(workers)]
    if backend == "postgresql":
        procs.append(start_cli("promote", "--campaign", str(path), "--storage", url, "--wait", "--poll", "0.2",
                               cwd=tmp_path))
    outs = [_lines(p, 300) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [o[1][-2000:] for o in outs]
    for variant in FOUR:
        quick = trials_of(url, f"t.{variant}.quick")
        full = trials_of(url, f"t.{variant}.full")
        assert sorted(t.number for t in quick) == [0, 1] and {t.state for t in quick} == {TrialState.COMPLETE}
        assert [t.state for t in full] == [TrialState.COMPLETE] * 2, variant
        best = sorted(quick, key=lambda t: (-t.value, t.number))
        assert sorted(t.user_attrs["promoted_from_trial"] for t in full) == sorted(t.number for t in best)
        assert all(t.user_attrs["promoted_from_study"] == f"t.{variant}.quick" for t in full)
    said = "".join(o[0] for o in outs)
    for variant in FOUR:  # promoted once, by whoever came first (a worker, or the operator); the others found it done
        by_workers = said.count(f"{variant}: quick stage ended; promoted quick trial(s)")
        by_operator = f"enqueued in t.{variant}.full" in said
        assert by_workers + by_operator == 1, said
    assert all(o[0].strip().splitlines()[-1].endswith("nothing left to run") for o in outs[:workers])
    status = run_cli("status", "--campaign", str(path), "--storage", url, "--json", cwd=tmp_path)
    assert [s["left"]["trials"] for s in json.loads(status.stdout)["stages"]] == [0] * 8


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # this test asks outside a worker
def test_claims_follow_the_documented_priority(pg_url: str, write_campaign, tmp_path: Path) -> None:
    """Promoted full runs first; then the quick study with a retry waiting; then the one with the
    most trials unclaimed; then studies where only others' trials run."""
    from search.running.source import CampaignSource

    path = write_campaign(variants=FOUR, quick={"trials": 3})
    init(path, pg_url, tmp_path)
    campaign = load_campaign(path)
    storage = open_storage(pg_url)

    def study(variant: str, stage: str) -> optuna.Study:
        return optuna.load_study(study_name=f"t.{variant}.{stage}", storage=storage)

    for _ in range(2):  # baseline quick: 2 of 3 claimed, one unclaimed
        study("baseline", "quick").tell(study("baseline", "quick").ask(), 1.0)
    resnet = study("resnet_lite", "quick")
    for _ in range(3):  # resnet_lite quick: all 3 claimed; one failed, its retry waiting
        resnet.tell(resnet.ask(), 1.0)
    resnet.enqueue_trial({"lr": 0.002})
    study("attention", "quick").ask()  # attention quick: one running elsewhere, 2 unclaimed
    study("residual", "full").enqueue_trial({"lr": 0.002})  # residual full: a promoted config waits
    study("attention", "full").ask()  # attention full: one running on another worker
    served = [(v, s) for v in FOUR for s in ("quick", "full")]
    source = CampaignSource(storage, campaign, served, tmp_path / "art")
    # ... and the rest, in the campaign's order: a claim there reaps, or queues seed-noise re-runs
    assert source.order() == [("residual", "full"), ("resnet_lite", "quick"), ("residual", "quick"),
                              ("attention", "quick"), ("baseline", "quick"), ("baseline", "full"),
                              ("resnet_lite", "full"), ("attention", "full")]


def test_a_killed_campaign_worker_s_full_run_is_resumed_by_another(pg_url: str, write_campaign,
                                                                   tmp_path: Path) -> None:
    """A full-stage worker started first waits, saying why, until a campaign worker has run the
    quick stage; one of them promotes it. The one running the full trial is killed (kill -9): the
    other reaps it and resumes it from its last.pt, epoch k+1 after k."""
    path = write_campaign(quick={"trials": 1}, full={"top_k": 1, "epochs": 80})
    init(path, pg_url, tmp_path)
    art = tmp_path / "art"
    common = ("--campaign", str(path), "--storage", pg_url, "--artifacts", str(art), "--heartbeat-interval", "1",
              "--grace-period", "2", "--poll", "0.3")
    env = {"OMP_NUM_THREADS": "1"}
    full_only = start_cli("worker", *common, "--stage", "full", cwd=tmp_path, env=env)
    assert full_only.stdout is not None
    seen = [full_only.stdout.readline() for _ in range(3)]  # its name, the data line, then why it waits
    assert seen[-1].strip() == "waiting: t.baseline.full waits for its quick stage to end; looking again every 0.3s"
    everything = start_cli("worker", *common, cwd=tmp_path, env=env)
    workers = {p.pid: p for p in (full_only, everything)}
    try:
        deadline = time.monotonic() + 120
        while True:
            full = trials_of(pg_url, "t.baseline.full")
            running = [t for t in full if t.state == TrialState.RUNNING and len(t.intermediate_values) >= 2]
            if running:
                break
            assert time.monotonic() < deadline and all(p.poll() is None for p in workers.values()), full
            time.sleep(0.05)
        (victim,) = running
        pid = int(victim.user_attrs["worker"].split(":")[1])
        os.kill(pid, signal.SIGKILL)
        killed_at = len(victim.intermediate_values)
        survivor = next(p for q, p in workers.items() if q != pid)
        out, err = survivor.communicate(timeout=180)
        workers[pid].communicate(timeout=30)
    finally:
        for p in workers.values():
            p.kill()
    assert survivor.returncode == 0, err[-2000:]
    first, retry = trials_of(pg_url, "t.baseline.full")
    assert (first.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == first.params
    assert retry.user_attrs["start_epoch"] >= killed_at - 1 > 0  # resumed from its last.pt, not restarted
    assert sorted(retry.intermediate_values) == list(range(1, 81))
    # The worker that resumes it says so, in one line: which trial, from which epoch, and why.
    said = f"t.baseline.full trial {retry.number} resumes trial {first.number} from epoch " \
           f"{retry.user_attrs['start_epoch'] + 1} of 80: its worker stopped sending heartbeats (failed as stale after 2 s)"
    assert said in out, out[-3000:]


def test_worker_and_launch_exit_130_on_sigint_naming_the_trial_they_queued(pg_url: str, write_campaign,
                                                                            tmp_path: Path) -> None:
    """`sarsweep worker && sarsweep promote` must not go on after Ctrl-C: 130, after the running
    trial was queued for retry, and the last line says which."""
    path = write_campaign(quick={"trials": 3, "epochs": 400})
    init(path, pg_url, tmp_path)
    common = ("--campaign", str(path), "--storage", pg_url, "--artifacts", str(tmp_path / "art"))

    def running_trials() -> list[optuna.trial.FrozenTrial]:
        return [t for t in trials_of(pg_url, "t.baseline.quick") if t.state == TrialState.RUNNING and
                t.intermediate_values]

    for command in (["worker", *common], ["launch", "--per-gpu", "1", "--", *common]):
        proc = start_cli(*command, cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
        try:
            deadline = time.monotonic() + 120
            while not running_trials():
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.1)
            (trial,) = running_trials()
            proc.send_signal(signal.SIGINT)  # to this process only (a terminal's Ctrl-C reaches the group)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 130, (command[0], out, err)
        assert f"stopped by SIG{'INT' if command[0] == 'worker' else 'TERM'}; trial {trial.number} of " \
               "t.baseline.quick queued for retry" in out, (out, err)
        if command[0] == "launch":
            assert out.strip().splitlines()[-1] == "all workers exited (0 ok, 1 stopped by SIGINT, 0 with errors)"
        failed = next(t for t in trials_of(pg_url, "t.baseline.quick") if t.number == trial.number)
        assert failed.state == TrialState.FAIL and failed.user_attrs["fail_kind"] == "signal"
    # Trial 0 stopped by the worker, its retry (1) stopped under launch: 1 retry of it waits, none lost.
    states = [(t.number, t.state) for t in trials_of(pg_url, "t.baseline.quick")]
    assert states == [(0, TrialState.FAIL), (1, TrialState.FAIL), (2, TrialState.WAITING)]


def test_a_campaign_worker_refuses_a_changed_campaign_with_one_line(pg_url: str, write_campaign,
                                                                    tmp_path: Path) -> None:
    init(write_campaign(variants=["baseline", "resnet_lite"]), pg_url, tmp_path)
    changed = write_campaign(filename="changed.yaml", variants=["baseline", "resnet_lite"],
                             search={"lr": {"low": 1e-4, "high": 1e-3, "log": True}})
    done = run_cli("worker", "--campaign", str(changed), "--storage", pg_url, cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "study t.baseline.quick was created by a different campaign config" in done.stderr
    assert trials_of(pg_url, "t.baseline.quick") == []


def test_cpu_workers_take_a_share_of_the_cores_and_an_export_retrains_with_it(pg_url: str, write_campaign,
                                                                                tmp_path: Path) -> None:
    """A plain worker counts the sarsweep processes training on its node (here one more: this
    test holds a registration) and takes its share of the cores; the count is recorded, exported
    and used by `sarsweep train`, which then repeats the trial's value."""
    from training import threads

    path = write_campaign(quick={"trials": 1})
    init(path, pg_url, tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    share = max(1, threads.node_cores() // 2)
    with threads.registered():
        assert threads.running() >= 1
        done = subprocess.run([str(Path(sys.executable).parent / "sarsweep"), "worker", "--campaign", str(path),
                               "--storage", pg_url, "--variant", "baseline", "--stage", "quick", "--artifacts",
                               str(tmp_path / "art")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env=env)
    assert done.returncode == 0, done.stderr
    (trial,) = trials_of(pg_url, "t.baseline.quick")
    assert trial.user_attrs["threads"] == share and trial.user_attrs["config"]["threads"] == share
    exported = run_cli("export", "--campaign", str(path), "--storage", pg_url, "--variant", "baseline",
                       "-o", str(tmp_path / "best.yaml"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    text = (tmp_path / "best.yaml").read_text()
    assert yaml.safe_load(text)["threads"] == share and f", {share} CPU thread(s)" in text
    retrained = subprocess.run([str(Path(sys.executable).parent / "sarsweep"), "train", "--config",
                                str(tmp_path / "best.yaml")], cwd=tmp_path, capture_output=True, text=True,
                               timeout=300, env=env)
    assert retrained.returncode == 0, retrained.stderr
    assert f", {share} CPU thread(s) (as configured)" in retrained.stdout.splitlines()[0]
    assert f"val PSNR {trial.user_attrs['val_psnr']:.2f} dB" in retrained.stdout.splitlines()[-1]


def test_a_killed_process_s_registration_is_not_counted(tmp_path: Path) -> None:
    from training import threads

    code = "from training import threads; import time; threads.register(); print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        with threads.registered():
            assert threads.running() == 2  # this process and the other one
            proc.kill()
            proc.wait(10)
            assert threads.running() == 1  # its lock died with it; the file is removed
    finally:
        proc.kill()
