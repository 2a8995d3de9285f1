"""Trivial-objective trials/s against worker count: sarsweep's worker loop vs stock study.optimize.

    python bench/storage_scaling.py [--workers 1 2 4 8 16 32 64] [--per-worker 8] [--repeats 3] [--sleep-check]
    python bench/storage_scaling.py --smoke      # seconds; what CI runs

Starts its own throwaway PostgreSQL cluster (max_connections=100; tests/support/cluster.py), and
for each worker count N runs N processes of tests/support/loadtest.py on a fresh database: the
sarsweep mode (exact shared budget, study lock, heartbeat and reaper threads, one pooled
connection) and the stock mode (`study.optimize(n_trials=per_worker)` on `RDBStorage(url)`), and
stock+hb: the same with Optuna's own heartbeat on (interval 30 s, grace 120 s), the liveness
feature sarsweep always has.
Throughput is trials / (last completion - first start) from the database, so process start-up
is left out; peak connections are sampled from pg_stat_activity every 50 ms. SQLite runs for
1-4 workers. --sleep-check times 1 and 8 workers with a 1 s objective, 8 trials per worker
(goal: 8 workers >= 7.5x).
Each PostgreSQL mode runs --repeats times per worker count (modes alternating, each first in
turn) and the table gives the median with min-max: single runs of ~100 trivial trials varied by
up to 1.5x back to back on the 2-core dev machine.
Ends with the ratio line sarsweep/stock at equal worker counts (goal >= 0.9). A benchmark, not a
test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the throwaway cluster and the load test are test support

from support import LOADTEST  # noqa: E402
from support.cluster import Cluster, PeakConnections  # noqa: E402


def run_mode(url: str, mode: str, workers: int, per_worker: int, sleep: float) -> tuple[float, int, int]:
    """(trials/s, completed, processes that failed)."""
    base = [sys.executable, str(LOADTEST), "--storage", url, "--study", "s"]
    subprocess.run([*base, "--create"], cwd=REPO, check=True, capture_output=True)
    extra = {"stock": ["--stock", str(per_worker)],
             "stock+hb": ["--stock", str(per_worker), "--stock-heartbeat"],
             "sarsweep": ["--trials", str(per_worker * workers)]}[mode]
    # The span is first start to last completion: a few trials per worker would mostly measure
    # the staggered process start-up, so small worker counts get more trials each (see main).
    procs = [subprocess.Popen([*base, *extra, "--sleep", str(sleep)], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    failed = sum(p.wait() != 0 for p in procs)
    for p in procs:
        p.stderr.close()  # type: ignore[union-attr]
    storage_url = url.replace("postgresql://", "postgresql+psycopg2://")
    trials = optuna.load_study(study_name="s", storage=storage_url).get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        return 0.0, 0, failed
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return len(done) / max(span, 1e-6), len(done), failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--per-worker", type=int, default=8, help="trials per worker (at least)")
    parser.add_argument("--min-trials", type=int, default=96, help="trials per run (at least)")
    parser.add_argument("--sleep-check", action="store_true", help="also 1 vs 8 workers with a 1 s objective")
    parser.add_argument("--repeats", type=int, default=3,
                        help="PostgreSQL runs per mode and worker count; the table gives the median (default 3)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; the CI check")
    args = parser.parse_args()
    if args.smoke:
        args.workers, args.per_worker, args.min_trials, args.repeats = [2], 3, 0, 1  # 2: the shared-study path

    rows = []
    modes = ("stock", "stock+hb", "sarsweep")
    with Cluster(max_connections=100) as pg:
        for n in args.workers:
            runs: dict[str, list[tuple[float, int, int, int]]] = {m: [] for m in modes}
            for r in range(args.repeats):
                for mode in modes[r % 3:] + modes[:r % 3]:  # each mode first in turn: no order bias
                    name = f"{mode.replace('+', '_')}_{n}_{r}"
                    url = pg.create_database(name)
                    with PeakConnections(pg, name) as peak:
                        rate, done, failed = run_mode(url, mode, n, max(args.per_worker, -(-args.min_trials // n)),
                                                      0.0)
                    pg.sql(f'DROP DATABASE "{name}" WITH (FORCE)')
                    runs[mode].append((rate, done, failed, peak.peak))
                    print(f"  postgresql {mode} {n} #{r + 1}: {rate:.1f} trials/s, {failed} failed processes",
                          flush=True)
            for mode in modes:
                rates = [x[0] for x in runs[mode]]
                rows.append(("postgresql", mode, n, statistics.median(rates), sum(x[1] for x in runs[mode]),
                             sum(x[2] for x in runs[mode]), max(x[3] for x in runs[mode]), min(rates), max(rates)))
        sleep_rows = []
        if args.sleep_check:
            for n in (1, 8):
                url = pg.create_database(f"sleep_{n}")
                sleep_rows.append((n, *run_mode(url, "sarsweep", n, 8, 1.0)))
    with tempfile.TemporaryDirectory() as tmp:
        for n in [w for w in args.workers if w <= 4]:
            for mode in ("stock", "sarsweep"):
                url = f"sqlite:///{tmp}/{mode}_{n}.db"
                rate, done, failed = run_mode(url, mode, n, max(args.per_worker, -(-args.min_trials // n)), 0.0)
                rows.append(("sqlite", mode, n, rate, done, failed, 0, rate, rate))

    print(f"# {platform.node()} | {len(__import__('os').sched_getaffinity(0))} cores | optuna {optuna.__version__} | "
          f"PostgreSQL throwaway cluster, max_connections=100 | trivial trials: {args.per_worker} per worker, "
          f"at least {args.min_trials} per run | PostgreSQL: median of {args.repeats} runs (min-max), "
          "modes alternating")
    print(f"{'backend':<11} {'mode':<9} {'workers':>7} {'trials/s':>9} {'min-max':>13} {'done':>5} "
          f"{'failed procs':>12} {'peak conns':>10}")
    for backend, mode, n, rate, done, failed, peak, low, high in rows:
        spread = f"{low:.1f}-{high:.1f}"
        print(f"{backend:<11} {mode:<9} {n:>7} {rate:>9.1f} {spread:>13} {done:>5} {failed:>12} {peak:>10}")
    if sleep_rows:
        (n1, r1, *_), (n8, r8, *_) = sleep_rows
        print(f"1 s objective: 1 worker {r1:.2f} trials/s, 8 workers {r8:.2f} trials/s = {r8 / r1:.2f}x (goal >= 7.5x)")
    by = {(b, m, n): r for b, m, n, r, *_ in rows}
    parts = [f"{n}: {by[('postgresql', 'sarsweep', n)] / by[('postgresql', 'stock+hb', n)]:.2f}"
             for n in args.workers if by[("postgresql", "stock+hb", n)] > 0]
    print("sarsweep / stock with Optuna's heartbeat on (the same liveness feature): " + ", ".join(parts))
    parts = [f"{n}: {by[('postgresql', 'sarsweep', n)] / by[('postgresql', 'stock', n)]:.2f}"
             for n in args.workers if by[("postgresql", "stock", n)] > 0]
    print("ratio sarsweep/stock trials/s on PostgreSQL by workers: " + ", ".join(parts) + " (goal >= 0.9)")


if __name__ == "__main__":
    main()
