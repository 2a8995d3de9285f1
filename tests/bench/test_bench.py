"""The benchmarks run (tiny sizes); they print their ratio line. No timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def bench(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_trainer_overhead_smoke() -> None:
    out = bench("bench/trainer_overhead.py", "--smoke")
    assert re.search(r"^ratio sarsweep/bare = \d+\.\d{3} \(goal >= 0.97\)$", out, re.M)


def test_epoch_time_smoke() -> None:
    out = bench("bench/epoch_time.py", "--base", "4", "--patch", "16", "--patches", "16", "--epochs", "1",
                "--device", "cpu")
    for variant in ("baseline", "resnet_lite", "residual", "attention"):
        assert re.search(rf"^{variant}\s+[\d,]+\s", out, re.M)
    assert out.strip().splitlines()[-1].startswith("ratio vs baseline (epoch s): ")


def test_trial_overhead_smoke() -> None:
    out = bench("bench/trial_overhead.py", "--smoke")
    for component in ("storage", "setup", "training", "validation", "checkpoint", "preview", "glue"):
        assert re.search(rf"^{component}\s+\d+\.\d{{3}}\s", out, re.M)
    assert re.search(r"^ratio not-training share = \d+\.\d\d %, sarsweep overhead .* = \d+\.\d\d % \(goal < 1 %\)$",
                     out, re.M)


def test_gpu_speed_skips_cleanly_without_cuda() -> None:
    import torch

    out = bench("bench/gpu_speed.py", "--smoke")
    if torch.cuda.is_available():
        assert "ratio bf16/fp32 speed-up: " in out
    else:
        assert out.startswith("gpu_speed: skipped, no CUDA device")


def test_gpu_speed_logic_runs_on_the_cpu() -> None:
    out = bench("bench/gpu_speed.py", "--smoke", "--device", "cpu", "--variants", "baseline")
    assert re.search(r"^baseline\s+fp32\s", out, re.M) and re.search(r"^baseline\s+bf16\s", out, re.M)
    assert re.search(r"^variant .* host ms$", out, re.M) and re.search(r"^baseline\s+bf16\s.*\s\d+\.\d\d$", out, re.M)
    assert out.strip().splitlines()[-1].startswith("ratio bf16/fp32 speed-up: baseline ")


def test_storage_scaling_smoke() -> None:
    out = bench("bench/storage_scaling.py", "--smoke")
    assert re.search(r"^postgresql\s+sarsweep\s+2\s+\d+\.\d\s+[\d.]+-[\d.]+\s+6\s+0\s", out, re.M)  # exact, no failure
    assert re.search(r"^sqlite\s+sarsweep\s+2\s+\d+\.\d\s+[\d.]+-[\d.]+\s+6\s+0\s", out, re.M)
    assert re.search(r"^postgresql\s+stock\+hb\s+2\s", out, re.M)
    assert re.search(r"^ratio sarsweep/stock trials/s on PostgreSQL by workers: 2: \d\.\d\d \(goal", out, re.M)


def test_prepare_memory_smoke() -> None:
    out = bench("bench/prepare_memory.py", "--smoke")
    assert re.search(r"^cold\s+\d+\.\d\d\s+\d+\.\d\s+\d+\.\d\d\s+\d+\.\d\d$", out, re.M)
    assert re.search(r"^# .* \| 64 patches, 0\.1 MiB \| largest file", out, re.M)  # 4 scenes of 64 px at 16 px, stride 16
    assert re.search(r"^ratio peak growth / prepared array: cold \d+\.\d\d, warm \d+\.\d\d; / largest file: "
                     r"cold \d+\.\d\d$", out, re.M)
    grd = bench("bench/prepare_memory.py", "--smoke", "--grd", "8000x6000", "--together", "2")  # smoke: 96x64
    assert re.search(r"^# .* 1 file\(s\) from .*/grd \| patch 16, stride 16 \| 24 patches", grd, re.M)
    assert re.search(r"^2 cold at once\s+\d+\.\d\d\s", grd, re.M)
    assert re.search(r"; 2 at once / one cold: summed peak growth \d+\.\d\d, slowest seconds \d+\.\d\d$", grd, re.M)


def test_campaign_idle_smoke() -> None:
    out = bench("bench/campaign_idle.py", "--smoke")
    for mode in ("chained", "campaign"):
        assert re.search(rf"^{mode}\s+\d+\.\d\s+4\s+\d+\.\d\s+\d+\.\d s\s+\d+\.\d %\s+\d+\.\d %$", out, re.M), out
    assert re.search(r"^ratio campaign/chained wall = \d\.\d\d \(goal <= 0\.80\); idle between trials \d+\.\d % of "
                     r"worker-seconds \(goal < 2 %\) against \d+\.\d % chained$", out, re.M), out


def test_cpu_threads_smoke() -> None:
    out = bench("bench/cpu_threads.py", "--smoke")
    for way in ("launch", "all cores"):  # their thread counts are set: OMP_NUM_THREADS, --threads
        assert re.search(rf"^{way}\s+\d+\.\d{{3}}\s+\d+$", out, re.M), out
    # A plain worker's share is taken as each trial starts: one that starts while its peer is still
    # importing torch is alone on the node and takes every core, so this row may list two counts.
    assert re.search(r"^plain\s+\d+\.\d{3}\s+\d+(,\d+)?$", out, re.M), out
    assert re.search(r"^ratio epoch s / launch's: plain \d+\.\d\d \(goal <= 1\.3\), all cores \d+\.\d\d$", out, re.M)


def test_sampler_spread_smoke() -> None:
    out = bench("bench/sampler_spread.py", "--smoke")
    for setting in ("independent", "constant_liar", "liar+multivariate"):
        assert re.search(rf"^{re.escape(setting)}\s+\d+\.\d%\s+\d+\.\d-\d+\.\d\s+\d+\.\d{{3}}\s+\d+\.\d{{3}}\s", out, re.M), out
    assert out.strip().splitlines()[-2].startswith("ratio close share / independent: ")


def test_search_quality_smoke() -> None:
    out = bench("bench/search_quality.py", "--smoke")
    for arm in ("sarsweep", "random", "asha"):
        assert re.search(rf"^baseline\s+{arm}\s+\d+\s+\d+\.\d\s+\d+\.\d\d \(", out, re.M), out
    assert re.search(r"^baseline\s+trivial\s+\d+\.\d\d\s+\d+\.\d\d$", out, re.M), out
    assert re.search(r"^ratio baseline sarsweep - random \(held-out S1\): [+-]\d+\.\d\d dB", out, re.M), out


def test_curve_recorder_and_simulator_smoke() -> None:
    """bench/curves.py records a tiny table on the real Sentinel-1 chips; bench/simulate.py replays
    sarsweep and every peer on it (syne-tune's RandomSearch, ASHA, BOHB; Optuna TPE + Hyperband)."""
    out = bench("bench/simulate.py", "--smoke")
    for arm in ("sarsweep", "random", "asha", "bohb", "tpe-hyperband"):
        assert re.search(rf"^  {arm}\s+-?\d+\.\d{{3}} \[", out, re.M), arm
    assert re.search(r"^  sarsweep - bohb\s+[+-]\d+\.\d{3} dB \[", out, re.M)
    assert re.search(r"^  0\.5x2\s+[\d.]+\s+-?[\d.]+ \[", out, re.M)  # the quick fidelity's rank agreement
    assert re.search(r"^  2 workers: [\d.]+ worker-h, wall [\d.]+ h, idle [\d.]+%", out, re.M)
    # The table in syne-tune's blackbox layout, written and read back by syne-tune itself.
    assert re.search(r"^blackbox f1: 3 configs x 2 seeds x 3 epochs read back by syne-tune, equal to the table$", out, re.M)
