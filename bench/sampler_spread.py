"""How close N parallel workers' proposals land to each other, by TPE setting.

    python bench/sampler_spread.py [--workers 8] [--trials 64] [--repeats 3] [--sleep 0.4]
    python bench/sampler_spread.py --smoke

N worker processes share one study (SQLite, sarsweep's claim under the study lock, tests/support's
loop) over the research group's default search space (search.campaign.config.default_space: lr and
weight decay log-uniform, warmup 0-5, grad clip, base channels, optimizer), each with its own TPE
sampler seeded as sarsweep seeds them (sampler seed, variant, worker index). The objective is a
smooth, cheap stand-in for a trial's PSNR (a peak in the space) that sleeps --sleep seconds, so
trials overlap as on GPUs. Two trials are concurrent when their claim-to-tell spans overlap. The
distance of two trials is the largest gap over the numeric parameters (lr, weight decay, warmup),
each as a share of its range (log scale for log ranges); a trial whose nearest concurrent
neighbour is within 0.05 ("within 5 % of each range") was proposed next to a point whose result
nobody knew yet. Prints, per setting, the share of such trials (after TPE's 10 random start-up
trials), the median nearest-concurrent distance, and the best value reached (mean over repeats,
with min-max): a setting that spreads proposals but finds worse points is no better. A
benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # its workers run sarsweep's loop through tests/support/loadtest.py's source

SETTINGS = {
    "independent": {},
    "constant_liar": {"constant_liar": True},
    "liar+multivariate": {"constant_liar": True, "multivariate": True, "group": True},
}


def objective(trial: optuna.Trial, sleep: float) -> float:
    from search.campaign.config import default_space
    from search.campaign.studies import sample_params

    p = sample_params(trial, default_space())
    time.sleep(sleep)
    score = -(math.log10(p["lr"]) + 3.0) ** 2 - 0.05 * (p["warmup_epochs"] - 2) ** 2
    score -= 0.3 * abs(p["grad_clip"] - 1.0) + 0.002 * abs(p["base_channels"] - 48)
    score -= 0.1 * (math.log10(p["weight_decay"]) + 4) ** 2 / 4 + (0.0 if p["optimizer"] == "adamw" else 0.05)
    return 20.0 + score


def worker(args: argparse.Namespace) -> None:
    from search.campaign.studies import derived_seed
    from storage import StorageSettings, open_storage
    from tests.support.loadtest import work

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(args.url, StorageSettings(role="bench", heartbeat_interval=5, grace_period=60))
    sampler = optuna.samplers.TPESampler(seed=derived_seed(args.repeat, "baseline", args.worker),
                                         **SETTINGS[args.setting])
    study = optuna.load_study(study_name="s", storage=storage, sampler=sampler)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        work(study, storage, args.trials, lambda t: objective(t, args.sleep))


def distance(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> float:
    """Largest gap over the numeric parameters, as a share of each range (log scale where log)."""
    gaps = []
    for name, dist in a.distributions.items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            continue
        x, y, low, high = float(a.params[name]), float(b.params[name]), float(dist.low), float(dist.high)
        if dist.log:
            x, y, low, high = math.log(x), math.log(y), math.log(low), math.log(high)
        gaps.append(abs(x - y) / (high - low))
    return max(gaps)


def measure(url: str, startup: int = 10) -> tuple[float, float, float, int]:
    """(share with a concurrent neighbour within 0.05, median nearest-concurrent distance, best value, trials)."""
    trials = [t for t in optuna.load_study(study_name="s", storage=url).get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE]
    trials.sort(key=lambda t: t.number)
    nearest = []
    for t in trials[startup:]:
        peers = [o for o in trials if o.number != t.number and o.datetime_start < t.datetime_complete
                 and t.datetime_start < o.datetime_complete]
        if peers:
            nearest.append(min(distance(t, o) for o in peers))
    best = max(t.value for t in trials)  # type: ignore[type-var]
    close = sum(d <= 0.05 for d in nearest) / max(1, len(nearest))
    return close, statistics.median(nearest) if nearest else math.nan, float(best), len(trials)


def run(setting: str, repeat: int, args: argparse.Namespace, tmp: Path) -> tuple[float, float, float, int]:
    from storage import open_storage

    url = f"sqlite:///{tmp / f'{setting}-{repeat}.db'}"
    open_storage(url, create_schema=True)
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(i), "--url", url, "--setting", setting,
                               "--repeat", str(repeat), "--trials", str(args.trials), "--sleep", str(args.sleep)],
                              stderr=subprocess.PIPE, text=True) for i in range(args.workers)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"sampler_spread: a worker exited {p.returncode}: {err.strip()[-400:]}")
    return measure(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=64, help="the study's budget, shared by the workers")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting, each with other seeds")
    parser.add_argument("--sleep", type=float, default=0.4, help="seconds per trial")
    parser.add_argument("--smoke", action="store_true", help="2 workers, 14 trials, 1 repeat, no sleep")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args)
        return
    if args.smoke:
        args.workers, args.trials, args.repeats, args.sleep = 2, 14, 1, 0.0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"# {os.cpu_count()} CPUs, {args.workers} workers, {args.trials} trials per study, {args.repeats} "
          f"repeat(s), {args.sleep} s per trial, SQLite; close = within 5 % of every range, same choices")
    results = {}
    with tempfile.TemporaryDirectory(prefix="sarsweep-spread-") as name:
        for setting in SETTINGS:
            results[setting] = [run(setting, r, args, Path(name)) for r in range(args.repeats)]
    print(f"{'setting':<18} {'close share':>11} {'(min-max)':>13} {'median dist':>11} {'best value':>10} "
          f"{'(min-max)':>15}")
    for setting, rows in results.items():
        shares, dists, bests = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        share = f"{100 * statistics.mean(shares):>10.1f}% {100 * min(shares):>6.1f}-{100 * max(shares):<5.1f}"
        print(f"{setting:<18} {share} {statistics.mean(dists):>11.3f} {statistics.mean(bests):>10.3f} "
              f"{min(bests):>7.3f}-{max(bests):.3f}")
    base = statistics.mean(r[0] for r in results["independent"])
    print("ratio close share / independent: " + ", ".join(
        f"{s} {statistics.mean(r[0] for r in rows) / base:.2f}" if base else f"{s} -"
        for s, rows in results.items() if s != "independent"))
    print(json.dumps({s: [list(r) for r in rows] for s, rows in results.items()}))


if __name__ == "__main__":
    main()
