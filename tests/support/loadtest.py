"""Trivial-objective trials against a storage: sarsweep's worker loop, or stock `study.optimize`.

    python tests/support/loadtest.py --storage URL --study NAME --create          # once: schema + study
    python tests/support/loadtest.py --storage URL --study NAME --trials 100 [--sleep 0] [--stock N]

Measures the storage path alone, with no training and no torch import: each trial samples one
float and returns it after --sleep seconds. The sarsweep mode runs sarsweep's worker loop, `search.running.worker.serve` (claim
under the study lock, heartbeat thread, reaper thread, exact budget of --trials shared by all
processes on the study); --stock N runs `study.optimize(n_trials=N)` on an RDBStorage made with
Optuna's defaults (SQLAlchemy's default pool, no pool_pre_ping), the baseline a user starts
from. Prints one JSON line: mode, trials this process ran, seconds, exit status. Used by
bench/storage_scaling.py and tests/reliability/ (test support: no package ships it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.storages import RDBStorage

from errors import SarsweepError
from search.cli import setup_process
from search.running.source import Claimed
from search.running.worker import WorkerSummary, serve
from storage import StorageSettings, open_storage
from storage.rdb import ResilientRDBStorage
from storage.urls import parse, resolve_url


class StudySource:
    """Trials of one study for the load-test workers: up to `budget` new ones, and what waits."""

    def __init__(self, study: optuna.Study, storage: ResilientRDBStorage, budget: int | None,
                 objective: Callable[[optuna.trial.Trial], float]) -> None:
        self.study, self.storage, self.budget, self.objective = study, storage, budget, objective
        self.studies = [study]
        self.serves = study.study_name

    def claim(self) -> Claimed | None:
        from storage.trials import claim_through_outage

        trial = claim_through_outage(self.study, self.storage, self.budget)
        return None if trial is None else Claimed(self.study, "quick", trial, self.objective)

    def idle(self) -> str | None:
        return None

    def finished(self, trial: optuna.trial.Trial, state: optuna.trial.TrialState) -> None:
        pass


def work(study: optuna.Study, storage: ResilientRDBStorage, budget: int | None,
         objective: Callable[[optuna.trial.Trial], float]) -> WorkerSummary:
    """sarsweep's worker loop (search.running.worker.serve) over one study and any objective: the
    storage path alone, with no training and no torch import."""
    return serve(StudySource(study, storage, budget, objective), storage)


def objective(sleep: float):  # type: ignore[no-untyped-def]
    def run(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if sleep:
            time.sleep(sleep)
        return x

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--storage")
    where.add_argument("--storage-file", help="a file holding the URL (keeps a password off the command line)")
    parser.add_argument("--study", required=True)
    parser.add_argument("--trials", type=int, default=100, help="study budget (sarsweep mode)")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds per trial")
    parser.add_argument("--stock", type=int, metavar="N", help="stock study.optimize(n_trials=N) instead")
    parser.add_argument("--stock-heartbeat", action="store_true",
                        help="with --stock: turn Optuna's own heartbeat on (--heartbeat, --grace)")
    parser.add_argument("--create", action="store_true", help="create the schema and the study, then exit")
    parser.add_argument("--heartbeat", type=int, default=30)
    parser.add_argument("--grace", type=int, default=120)
    parser.add_argument("--pool-size", type=int, default=StorageSettings.pool_size,
                        help="connections kept open (default: the worker's)")
    args = parser.parse_args(argv)
    args.storage = resolve_url(args.storage, args.storage_file)
    setup_process("loadtest", logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    sampler = optuna.samplers.RandomSampler()  # sampling cost out of the picture
    try:
        if args.stock is not None:
            url = parse(args.storage).render_as_string(hide_password=False)
            heartbeat = {"heartbeat_interval": args.heartbeat, "grace_period": args.grace}
            if not args.stock_heartbeat:
                heartbeat = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                stock = RDBStorage(url, **heartbeat)  # type: ignore[arg-type]
            study = optuna.load_study(study_name=args.study, storage=stock, sampler=sampler)
            study.optimize(objective(args.sleep), n_trials=args.stock)
            ran = args.stock
        else:
            settings = StorageSettings(role="loadtest", claims_trials=True, heartbeat_interval=args.heartbeat,
                                       grace_period=args.grace, pool_size=args.pool_size)
            storage = open_storage(args.storage, settings, create_schema=args.create)
            if args.create:
                optuna.create_study(study_name=args.study, storage=storage, direction="maximize",
                                    load_if_exists=True)
                return 0
            study = optuna.load_study(study_name=args.study, storage=storage, sampler=sampler)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                summary = work(study, storage, args.trials, objective(args.sleep))
            ran = sum(summary.states.values())
    except SarsweepError as exc:
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return 2
    mode = "sarsweep" if args.stock is None else "stock+heartbeat" if args.stock_heartbeat else "stock"
    print(json.dumps({"mode": mode, "trials": ran,
                      "seconds": round(time.perf_counter() - started, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
