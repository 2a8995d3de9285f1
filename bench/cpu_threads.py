"""Epoch time of CPU workers started side by side: plain `sarsweep worker`s against `launch`'s.

    python bench/cpu_threads.py [--workers 2] [--trials 4] [--epochs 2]
    python bench/cpu_threads.py --smoke

Three ways to run N CPU workers on one study of a small campaign, in one run on this machine:
- launch:     `sarsweep launch --per-gpu N` (sets OMP_NUM_THREADS = cores / N for each worker);
- plain:      N plain `sarsweep worker`s, no OMP_NUM_THREADS: each takes its share of the node's
              cores among the sarsweep processes training on it (training/threads.py);
- all cores:  N plain workers each told `--threads <cores>`, what every plain worker did before
              the share (torch's default: one thread per core in every process).
Prints each way's mean epoch seconds (from the trials' own per-epoch attrs) and threads, and the
ratios to launch's (goal: plain within 1.3x). A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

SARSWEEP = str(Path(sys.executable).parent / "sarsweep")


def campaign(name: str, args: argparse.Namespace) -> dict:
    return {
        "name": name, "variants": ["baseline"],
        "train": {"batch_size": 32, "device": "cpu", "preview_patches": 0, "base_channels": 16,
                  "data": {"patch_size": 32, "synthetic": {"scenes": args.scenes, "size": 96, "seed": 1}}},
        "search": {"lr": {"choices": [0.002]}, "warmup_epochs": {"choices": [0]}, "grad_clip": {"choices": [1.0]},
                   "base_channels": {"choices": [16]}, "optimizer": {"choices": ["adam"]},
                   "weight_decay": {"choices": [0.0]}},
        "quick": {"fraction": 1.0, "epochs": args.epochs, "trials": args.trials, "pruner": "none"},
        "full": {"fraction": 1.0, "epochs": 1, "top_k": 1},
    }


def run(way: str, args: argparse.Namespace, tmp: Path) -> tuple[float, list[int]]:
    name = f"threads-{way.replace(' ', '-')}"
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(campaign(name, args)))
    url = f"sqlite:///{tmp / (name + '.db')}"
    common = ["--campaign", str(path), "--storage", url, "--artifacts", str(tmp / "art")]
    subprocess.run([SARSWEEP, "init", *common[:4]], check=True, capture_output=True, cwd=tmp)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    worker = [SARSWEEP, "worker", *common, "--variant", "baseline", "--stage", "quick"]
    if way == "launch":
        commands = [[SARSWEEP, "launch", "--per-gpu", str(args.workers), "--", *common, "--variant", "baseline",
                     "--stage", "quick"]]
    elif way == "plain":
        commands = [worker] * args.workers
    else:
        commands = [[*worker, "--threads", str(os.cpu_count() or 1)]] * args.workers
    procs = [subprocess.Popen(c, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in commands]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"cpu_threads: {way} exited {p.returncode}: {err.strip()[-400:]}")
    trials = optuna.load_study(study_name=f"{name}.baseline.quick", storage=url).get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    # Every epoch but each trial's first (warm-up of allocators and kernels).
    epochs = [e["seconds"] for t in done for e in t.user_attrs["epochs"][1:]]
    return statistics.mean(epochs), sorted({int(t.user_attrs.get("threads", 0)) for t in done})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=4, help="trials in all (shared by the workers)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--smoke", action="store_true", help="2 trials of 2 epochs on 6 scenes: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.trials, args.epochs, args.scenes = 2, 2, 6
    with tempfile.TemporaryDirectory(prefix="sarsweep-threads-") as name:
        tmp = Path(name)
        os.environ.setdefault("SARSWEEP_CACHE", str(tmp / "cache"))
        print(f"# {platform.node()}, {os.cpu_count()} CPUs, {args.workers} workers, {args.trials} trials x "
              f"{args.epochs} epochs of baseline (base 16, 32 px patches)")
        results = {way: run(way, args, tmp) for way in ("launch", "plain", "all cores")}
    print(f"{'way':<10} {'epoch s':>8} {'threads':>8}")
    for way, (seconds, threads) in results.items():
        print(f"{way:<10} {seconds:>8.3f} {','.join(map(str, threads)):>8}")
    base = results["launch"][0]
    print(f"ratio epoch s / launch's: plain {results['plain'][0] / base:.2f} (goal <= 1.3), all cores "
          f"{results['all cores'][0] / base:.2f}")


if __name__ == "__main__":
    main()
