"""deploy/slurm/*.sbatch submitted to a real Slurm: a throwaway single-node cluster (tests/support/slurm.py).

The sbatch files go in as a user submits them (`sbatch --array=0-3 --export=...`), with the
cluster's sizes overriding theirs on the command line as a small site would (1 CPU and 1 GB a
task: this node has 2 cores). PostgreSQL is a test database on the shared server, or a server of
the campaign's own started by db.sbatch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli, tiny_campaign_dict
from optuna.trial import TrialState
from support.campaigns import trials_of
from support.slurm import SlurmCluster

pytestmark = pytest.mark.slow
WORKER = REPO / "deploy" / "slurm" / "worker.sbatch"
DB = REPO / "deploy" / "slurm" / "db.sbatch"
SMALL = ["--cpus-per-task=1", "--mem=1G"]


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    if os.geteuid() != 0:
        pytest.skip("the throwaway Slurm cluster runs its daemons as root (CI does)")
    with SlurmCluster() as cluster:
        yield cluster


def exports(tmp_path: Path, campaign: Path, storage_file: Path, **more: str) -> str:
    """--export=ALL plus what the sbatch files read; the URL only ever in a file."""
    env = {"CAMPAIGN": str(campaign), "SARSWEEP_STORAGE_FILE": str(storage_file),
           "SARSWEEP_ARTIFACTS": str(tmp_path / "art"), "SARSWEEP_VENV": str(Path(sys.executable).parents[1]),
           "OMP_NUM_THREADS": "1", **more}
    return "--export=ALL," + ",".join(f"{k}={v}" for k, v in env.items())


def campaign_file(tmp_path: Path, **overrides: object) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(tiny_campaign_dict(**overrides)))
    return path


def test_a_worker_array_runs_the_whole_campaign(slurm: SlurmCluster, pg_url: str, tmp_path: Path) -> None:
    """sbatch --array=0-3 of the campaign worker: every task exits 0, every budget is exact, and
    the stages chain inside the one array (the workers promote), with no --dependency."""
    campaign = campaign_file(tmp_path, variants=["baseline", "resnet_lite"], quick={"trials": 3},
                             full={"top_k": 2})
    url_file = tmp_path / "storage-url"
    url_file.write_text(pg_url + "\n")
    assert run_cli("init", "--campaign", str(campaign), "--storage-file", str(url_file), cwd=tmp_path).returncode == 0
    started = time.monotonic()
    job = slurm.sbatch(["--array=0-3", *SMALL, exports(tmp_path, campaign, url_file), str(WORKER)], tmp_path)
    slurm.wait(job)
    tasks = slurm.tasks(job)
    logs = {p.name: p.read_text()[-1500:] for p in tmp_path.glob("sarsweep-*.out")}
    assert sorted(tasks) == [0, 1, 2, 3], logs
    assert {t["JobState"] for t in tasks.values()} == {"COMPLETED"} and {t["ExitCode"] for t in tasks.values()} == {
        "0:0"}, (tasks, logs)
    for variant in ("baseline", "resnet_lite"):
        assert sorted(t.number for t in trials_of(pg_url, f"t.{variant}.quick")) == [0, 1, 2]
        full = trials_of(pg_url, f"t.{variant}.full")
        assert [t.state for t in full] == [TrialState.COMPLETE] * 2
        assert len({t.user_attrs["promoted_from_trial"] for t in full}) == 2
    print(f"slurm array of 4 campaign workers: {time.monotonic() - started:.1f} s")


def task_of(pid: int) -> str:
    """The Slurm array task (JOB_TASK) a worker process runs in, from its environment."""
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return f"{environ['SLURM_ARRAY_JOB_ID']}_{environ['SLURM_ARRAY_TASK_ID']}"


@pytest.mark.parametrize("how", ["requeue", "term-to-the-batch-shell"])
def test_a_preempted_task_s_trial_is_resumed_epoch_after_epoch(how: str, slurm: SlurmCluster, pg_url: str,
                                                               tmp_path: Path) -> None:
    """`scontrol requeue` (preemption) or `scancel --batch --signal=TERM` (what the sbatch's
    --signal=B:TERM@120 does before the time limit: TERM to the batch shell, which passes it on)
    of the task running a trial: the worker queues the trial for retry, the task is requeued (by
    Slurm, or by itself after a TERM), and whoever claims next resumes the trial from its
    last.pt: the epoch after the last one it wrote, not epoch 1. (A plain `scancel --signal=TERM`
    signals job steps only, and a batch job's worker is in none.)"""
    campaign = campaign_file(tmp_path, quick={"trials": 1, "epochs": 200})
    url_file = tmp_path / "storage-url"
    url_file.write_text(pg_url + "\n")
    assert run_cli("init", "--campaign", str(campaign), "--storage-file", str(url_file), cwd=tmp_path).returncode == 0
    job = slurm.sbatch(["--array=0-1", *SMALL, exports(tmp_path, campaign, url_file), str(WORKER)], tmp_path)
    deadline = time.monotonic() + 180
    while True:
        running = [t for t in trials_of(pg_url, "t.baseline.quick") if t.state == TrialState.RUNNING
                   and len(t.intermediate_values) >= 3]
        if running:
            break
        assert time.monotonic() < deadline and slurm.queued(job), slurm.tasks(job)
        time.sleep(0.2)
    (victim,) = running
    task = task_of(int(victim.user_attrs["worker"].split(":")[1]))
    if how == "requeue":
        slurm.run("scontrol", "requeue", task)
    else:
        slurm.run("scancel", "--batch", "--signal=TERM", task)
    slurm.wait(job)
    tasks = slurm.tasks(job)
    logs = {p.name: p.read_text()[-1500:] for p in tmp_path.glob("sarsweep-*.out")}
    requeued = tasks[int(task.split("_")[1])]
    assert int(requeued["Restarts"]) >= 1, (tasks, logs)  # it was requeued and ran again
    assert {t["ExitCode"] for t in tasks.values()} == {"0:0"} and {t["JobState"] for t in tasks.values()} == {
        "COMPLETED"}, (tasks, logs)
    first, retry = trials_of(pg_url, "t.baseline.quick")
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "worker stopped by SIGTERM"
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["failed_trial"] == 0
    stopped_at = len(first.intermediate_values)
    # Resumed: the retry's first trained epoch is the one after the last its original wrote. last.pt
    # holds every epoch the original reported, and one more when the signal came between the
    # epoch's checkpoint and its report.
    assert stopped_at <= retry.user_attrs["start_epoch"] <= stopped_at + 1 and stopped_at >= 3
    assert sorted(retry.intermediate_values) == list(range(1, 201))
    assert retry.user_attrs["epochs"][retry.user_attrs["start_epoch"]]["epoch"] == retry.user_attrs["start_epoch"] + 1


def test_db_sbatch_serves_a_campaign_for_its_lifetime(slurm: SlurmCluster, tmp_path: Path) -> None:
    """db.sbatch makes and starts a server of the campaign's own, creates the studies and then
    writes the URL file; the worker array (--dependency=after: the db job) waits for the file and
    runs the campaign; scancel stops the server cleanly."""
    parent = Path(tempfile.mkdtemp(prefix="sarsweep-slurmdb-"))
    parent.chmod(0o755)  # the server runs as postgres (as root: initdb refuses root)
    try:
        campaign = campaign_file(tmp_path, quick={"trials": 2}, full={"top_k": 1})
        url_file = tmp_path / "urls" / "storage-url"
        url_file.parent.mkdir()
        env = exports(tmp_path, campaign, url_file, SARSWEEP_DB_DIR=str(parent / "db"),
                      SARSWEEP_DB_ALLOW="127.0.0.1/32", SARSWEEP_DB_HOST="127.0.0.1", SARSWEEP_DB_WORKERS="4")
        db = slurm.sbatch([*SMALL, env, str(DB)], tmp_path)
        workers = slurm.sbatch(["--array=0-1", *SMALL, f"--dependency=after:{db}", env, str(WORKER)], tmp_path)
        slurm.wait(workers, timeout=400)
        tasks = slurm.tasks(workers)
        logs = {p.name: p.read_text()[-1500:] for p in tmp_path.glob("sarsweep-*.out")}
        assert {t["ExitCode"] for t in tasks.values()} == {"0:0"}, (tasks, logs)
        url = url_file.read_text().strip()
        assert url.startswith("postgresql://sarsweep:") and url.endswith("/sarsweep")
        assert (url_file.stat().st_mode & 0o777) == 0o600
        quick = trials_of(url, "t.baseline.quick")
        full = trials_of(url, "t.baseline.full")
        assert sorted(t.number for t in quick) == [0, 1] and [t.state for t in full] == [TrialState.COMPLETE]
        assert url.split(":")[2].split("@")[0] not in "".join(logs.values())  # the password in no log
        slurm.run("scancel", db)
        slurm.wait(db)
        status = subprocess.run([str(Path(sys.executable).parent / "sarsweep"), "db", "status", "--dir",
                                 str(parent / "db")], capture_output=True, text=True, timeout=60)
        assert status.returncode == 3, (status.stdout, logs)  # stopped with the job
        assert not url_file.exists()  # and its URL file gone: no worker starts on a stopped server
    finally:
        subprocess.run([str(Path(sys.executable).parent / "sarsweep"), "db", "stop", "--dir", str(parent / "db")],
                       capture_output=True, timeout=120)
        shutil.rmtree(parent, ignore_errors=True)
