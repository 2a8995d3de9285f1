"""A whole campaign run the chained way and by campaign workers: wall time and idle worker-seconds.

    python bench/campaign_idle.py [--workers 2] [--trials 6] [--top-k 2] [--epochs 4] [--storage URL]
    python bench/campaign_idle.py --smoke      # seconds; what CI runs

The same tiny campaign (all four variants, or --variants; both stages; CPU; small models), twice,
on fresh studies:
- chained: what an operator types today, for each variant in turn: N `sarsweep worker --variant V
  --stage quick`, `sarsweep promote --variant V --wait`, N `sarsweep worker --variant V --stage full`
  (eight launches and four promotes, each started when the one before it ended);
- campaign: N `sarsweep worker --campaign F` at once.
N slots (GPUs; here CPU processes with cores / N threads each). Each mode's wall time runs from its
first process start to its last exit. Busy seconds are the trials' own spans in the database
(claim to tell). "Idle between trials" sums, per slot, the gaps from the end of one of its trials
to the start of its next one (process start-up, data loading, waiting for a stage's last trial,
promotion): the time a GPU stands still between stages. "Idle in all" is N x wall - busy (it also
counts each mode's first start-up and the tail, when the last trial runs alone).
Prints both modes and the ratio line. A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
ALL = ["baseline", "resnet_lite", "residual", "attention"]
VARIANTS = list(ALL)
SARSWEEP = str(Path(sys.executable).parent / "sarsweep")


def campaign(name: str, args: argparse.Namespace) -> dict:
    return {
        "name": name, "variants": VARIANTS,
        # Seed-noise re-runs off by default: they are trials like any other, and the first figures
        # in docs/benchmarks.md were measured on this trial count. --noise-seeds 2 is the product's default.
        "noise_seeds": args.noise_seeds, "noise_rule": args.noise_rule,
        "train": {"batch_size": 16, "device": "cpu", "preview_patches": 0,
                  "data": {"patch_size": 16, "synthetic": {"scenes": args.scenes, "size": 64, "seed": 1}}},
        "search": {"lr": {"low": 1e-3, "high": 5e-3, "log": True}, "warmup_epochs": {"low": 0, "high": 1},
                   "grad_clip": {"choices": [0.0, 1.0]}, "base_channels": {"choices": [4, 8]},
                   "optimizer": {"choices": ["adam", "adamw"]},
                   "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True}},
        "quick": {"fraction": 0.5, "epochs": args.epochs, "trials": args.trials, "pruner": "none"},
        "full": {"fraction": 1.0, "epochs": args.epochs + 1, "top_k": args.top_k,
                 **({"stop_margin": args.stop_margin} if args.stop_margin else {})},
    }


class Slots:
    """Starts `sarsweep` processes on N numbered slots and remembers which pid ran on which."""

    def __init__(self, n: int, common: list[str], cwd: Path) -> None:
        self.n, self.common, self.cwd = n, common, cwd
        threads = str(max(1, (os.cpu_count() or 1) // n))
        self.env = {**os.environ, "OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""}
        self.slot_of: dict[int, int] = {}

    def run(self, *extra: str) -> None:
        procs = []
        for slot in range(self.n):
            proc = subprocess.Popen([SARSWEEP, "worker", *self.common, *extra, "--worker-index", str(slot)],
                                    cwd=self.cwd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
            self.slot_of[proc.pid] = slot
            procs.append(proc)
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"campaign_idle: a worker exited {proc.returncode}: {err.strip()[-400:]}")


def run_mode(mode: str, args: argparse.Namespace, tmp: Path, url: str) -> dict[str, float]:
    name = f"idle-{mode}"
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(campaign(name, args)))
    common = ["--campaign", str(path), "--storage", url, "--artifacts", str(tmp / "art")]
    subprocess.run([SARSWEEP, "init", *common[:4]], check=True, capture_output=True, cwd=tmp)
    slots = Slots(args.workers, common, tmp)
    started = time.perf_counter()
    if mode == "campaign":
        slots.run()
    else:
        for variant in VARIANTS:
            slots.run("--variant", variant, "--stage", "quick")
            subprocess.run([SARSWEEP, "promote", *common[:4], "--variant", variant, "--wait", "--poll", "1"],
                           check=True, capture_output=True, cwd=tmp)
            slots.run("--variant", variant, "--stage", "full")
    wall = time.perf_counter() - started
    trials = [t for v in VARIANTS for s in ("quick", "full")
              for t in optuna.load_study(study_name=f"{name}.{v}.{s}", storage=url).get_trials(deepcopy=False)]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    by_slot: dict[int, list[optuna.trial.FrozenTrial]] = defaultdict(list)
    for t in done:
        by_slot[slots.slot_of[int(t.user_attrs["worker"].split(":")[1])]].append(t)
    gaps = 0.0
    for ts in by_slot.values():
        ts.sort(key=lambda t: t.datetime_start)
        gaps += sum(max(0.0, (b.datetime_start - a.datetime_complete).total_seconds())
                    for a, b in itertools.pairwise(ts))
    slot_seconds = args.workers * wall
    return {"wall": wall, "trials": len(done), "busy": busy, "between": gaps, "all": slot_seconds - busy,
            "slot_seconds": slot_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="slots (GPUs); CPU processes here")
    parser.add_argument("--trials", type=int, default=6, help="quick trials per variant")
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="quick epochs (full: one more)")
    parser.add_argument("--scenes", type=int, default=64, help="generated 64 px scenes")
    parser.add_argument("--storage", help="a PostgreSQL URL (default: SQLite in a temp folder)")
    parser.add_argument("--variants", nargs="+", choices=ALL, default=ALL, help="default: all four")
    parser.add_argument("--noise-seeds", type=int, default=0, help="seed re-runs per stage (the product's default: 2)")
    parser.add_argument("--noise-rule", choices=["fixed", "race"], default="fixed")
    parser.add_argument("--stop-margin", type=float, help="full.stop_margin (default: none)")
    parser.add_argument("--modes", nargs="+", choices=["chained", "campaign"], default=["chained", "campaign"])
    parser.add_argument("--smoke", action="store_true",
                        help="2 variants, 1 slot, 1 quick trial, 1 epoch, top 1: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.workers, args.trials, args.top_k, args.epochs, args.scenes = 1, 1, 1, 1, 6
        args.variants = ALL[:2]
    VARIANTS[:] = args.variants
    with tempfile.TemporaryDirectory(prefix="sarsweep-idle-") as name:
        tmp = Path(name)
        os.environ.setdefault("SARSWEEP_CACHE", str(tmp / "cache"))
        url = args.storage or f"sqlite:///{tmp / 'idle.db'}"
        print(f"# {platform.node()}, {os.cpu_count()} CPUs, {args.workers} slots, {args.trials} quick trials x "
              f"{args.epochs} epochs and top {args.top_k} x {args.epochs + 1} full epochs per variant, "
              f"{'PostgreSQL' if args.storage else 'SQLite'}; noise_seeds {args.noise_seeds} ({args.noise_rule})"
              + (f", full.stop_margin {args.stop_margin:g}" if args.stop_margin else ""))
        results = {mode: run_mode(mode, args, tmp, url) for mode in args.modes}
    print(f"{'mode':<9} {'wall s':>7} {'trials':>6} {'busy s':>7} {'idle between trials':>20} {'idle in all':>12}")
    for mode, r in results.items():
        print(f"{mode:<9} {r['wall']:>7.1f} {r['trials']:>6} {r['busy']:>7.1f} "
              f"{r['between']:>9.1f} s {100 * r['between'] / r['slot_seconds']:>5.1f} % "
              f"{100 * r['all'] / r['slot_seconds']:>10.1f} %")
    if set(results) != {"chained", "campaign"}:
        return
    chained, ours = results["chained"], results["campaign"]
    print(f"ratio campaign/chained wall = {ours['wall'] / chained['wall']:.2f} (goal <= 0.80); idle between trials "
          f"{100 * ours['between'] / ours['slot_seconds']:.1f} % of worker-seconds (goal < 2 %) against "
          f"{100 * chained['between'] / chained['slot_seconds']:.1f} % chained")


if __name__ == "__main__":
    main()
