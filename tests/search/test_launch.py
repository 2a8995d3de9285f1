"""`sarsweep launch`: one worker per GPU (or CPU workers), each with its share."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from support.campaigns import init, trials_of

from errors import SarsweepError


def test_launch_runs_cpu_workers_that_share_the_budget(pg_url: str, write_campaign, tmp_path: Path) -> None:
    path = write_campaign(quick={"trials": 4})
    init(path, pg_url, tmp_path)
    done = run_cli("launch", "--gpus", "all", "--per-gpu", "2", "--", "--campaign", str(path), "--variant",
                   "baseline", "--stage", "quick", "--storage", pg_url, cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr
    assert "launching 2 worker(s) on the CPU" in done.stdout
    assert sorted(t.number for t in trials_of(pg_url, "t.baseline.quick")) == [0, 1, 2, 3]


def test_launch_hands_each_worker_a_gpu_of_its_own_allocation() -> None:
    """Inside an allocation that set CUDA_VISIBLE_DEVICES (Slurm: '4,5,6,7'), index 1 is the
    allocation's second GPU; a child told CUDA_VISIBLE_DEVICES=1 trained on physical GPU 1, outside
    it. A GPU it does not see, or one listed twice, used to start a CPU worker or two workers on one
    GPU without a word."""
    from search.running.launch import parse_gpus

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
    from search.running.launch import worker_commands

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("search.running.launch.node_cores", lambda: 16)  # the cores this process may use
    cpu = worker_commands([], 4, ["--campaign", "c.yaml"])
    assert [env["OMP_NUM_THREADS"] for _, env in cpu] == ["4"] * 4
    assert [cmd[-1] for cmd, _ in cpu] == ["0", "1", "2", "3"]
    gpu = worker_commands(["0", "1"], 1, [])
    assert all("OMP_NUM_THREADS" not in env for _, env in gpu)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's choice wins
    assert {env["OMP_NUM_THREADS"] for _, env in worker_commands([], 2, [])} == {"1"}
