"""`sarsweep plan`'s forecast against a real campaign run on this machine.

    python bench/plan_accuracy.py [--campaign configs/campaign_sentinel1.yaml] [--workers 1]

Runs `sarsweep plan --json`, then the campaign for real (`init`, then `--workers` campaign workers
at once, SQLite in a temporary folder), and prints the forecast beside what the workers spent:
worker-seconds (the sum of every trial's seconds) and wall time (first trial start to last trial
end), with the ratio forecast / measured (goal: within 25 %). Pruning is not assumed by the
forecast, so a campaign whose pruner stops trials spends less than forecast.

Midway (`--status-after` seconds after the workers start; default half the planned wall time) it
also takes `sarsweep status --json --workers N`'s forecast of what is left, and prints it beside
what the rest of the run then took: wall time from that moment to the last trial's end, and
worker-seconds (trials started later in full, trials running then for their part after it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sarsweep(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "sarsweep"
    done = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sarsweep {args[0]} failed: {done.stderr[-2000:]}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--campaign", default=str(REPO / "configs" / "campaign_sentinel1.yaml"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--status-after", type=float,
                        help="seconds after the workers start to take status's forecast (default: half the "
                             "plan's wall time)")
    args = parser.parse_args()
    import optuna

    campaign = str(Path(args.campaign).resolve())
    with tempfile.TemporaryDirectory(prefix="sarsweep-plan-") as name:
        tmp = Path(name)
        started = time.perf_counter()
        plan = json.loads(sarsweep("plan", "--campaign", campaign, "--workers", str(args.workers), "--json",
                                   cwd=REPO).stdout)
        plan_seconds = time.perf_counter() - started
        db = f"sqlite:///{tmp / 'sarsweep.db'}"
        sarsweep("init", "--campaign", campaign, "--storage", db, cwd=REPO)
        exe = Path(sys.executable).parent / "sarsweep"
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        procs = [subprocess.Popen([str(exe), "worker", "--campaign", campaign, "--storage", db, "--artifacts",
                                   str(tmp / "art"), "--worker-index", str(i)], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(args.workers)]
        after = args.status_after if args.status_after is not None else plan["wall_hours"] * 3600 / 2
        time.sleep(after)
        snapshot_at = dt.datetime.now()  # status reads the trials a moment after
        snapshot = json.loads(sarsweep("status", "--campaign", campaign, "--storage", db, "--workers",
                                       str(args.workers), "--json", cwd=REPO).stdout)["forecast"]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                sys.exit(f"worker failed: {err[-2000:]}")
        storage = optuna.storages.RDBStorage(db)
        trials = [t for s in optuna.get_all_study_summaries(storage)
                  for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)]
    spent = sum(t.user_attrs.get("seconds", 0.0) for t in trials)
    wall = (max(t.datetime_complete for t in trials if t.datetime_complete)
            - min(t.datetime_start for t in trials if t.datetime_start)).total_seconds()
    pruned = sum(t.state.name == "PRUNED" for t in trials)
    lo, hi = plan["worker_hours"]
    print(f"campaign {plan['campaign']} on {plan['device']}, {args.workers} worker(s); plan took {plan_seconds:.0f} s")
    print(f"{'':<16} {'forecast':>12} {'measured':>12} {'ratio':>7}")
    print(f"{'worker-seconds':<16} {plan['simulated_worker_hours'] * 3600:>12.0f} {spent:>12.0f} "
          f"{plan['simulated_worker_hours'] * 3600 / spent:>7.2f}   (range {lo * 3600:.0f}-{hi * 3600:.0f})")
    forecast_wall = plan["wall_hours"] * 3600
    print(f"{'wall seconds':<16} {forecast_wall:>12.0f} {wall:>12.0f} {forecast_wall / wall:>7.2f}")
    print(f"trials {len(trials)} ({pruned} pruned: the forecast assumes none)")
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    rest_wall = (end - snapshot_at).total_seconds()
    rest_spent = 0.0
    for t in trials:
        if t.datetime_start is None or t.datetime_complete is None:
            continue
        span = (t.datetime_complete - t.datetime_start).total_seconds() or 1.0
        share = min(1.0, max(0.0, (t.datetime_complete - snapshot_at).total_seconds() / span))
        rest_spent += share * t.user_attrs.get("seconds", 0.0)
    lo, hi = snapshot["worker_hours_left"] or (float("nan"), float("nan"))
    left = snapshot["trials_left"]
    print(f"status --workers {args.workers} {after:.0f} s in: {left[0]}-{left[1]} trials left")
    print(f"{'worker-seconds':<16} {hi * 3600:>12.0f} {rest_spent:>12.0f} {hi * 3600 / rest_spent:>7.2f}   "
          f"(range {lo * 3600:.0f}-{hi * 3600:.0f}; the most trials taken)")
    wall_left = (snapshot["wall_hours"] or float("nan")) * 3600
    fewest = (snapshot["wall_hours_fewest"] or float("nan")) * 3600
    print(f"{'wall seconds':<16} {wall_left:>12.0f} {rest_wall:>12.0f} {wall_left / rest_wall:>7.2f}   "
          f"(range {fewest:.0f}-{wall_left:.0f})")
    print(f"{'fewest trials':<16} {lo * 3600:>12.0f} {rest_spent:>12.0f} {lo * 3600 / rest_spent:>7.2f}   "
          f"worker-seconds; wall {fewest:.0f} s, {fewest / rest_wall:.2f}")


if __name__ == "__main__":
    main()
