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
