"""`sarsweep worker` (trials of one study until its budget is spent) and `sarsweep launch` (one
worker per GPU)."""

from __future__ import annotations

import argparse

from search.commands.common import (
    Subparsers,
    at_least_one,
    campaign_command,
    heartbeat_args,
    index,
    load_campaign_of,
    open_storage_of,
    variants_of,
)


def add(commands: Subparsers) -> None:
    worker = campaign_command(commands, "worker", "run trials of one study until its budget is spent",
                              artifacts=True)
    worker.add_argument("--variant", required=True, help="which variant's study")
    worker.add_argument("--stage", required=True, choices=["quick", "full"])
    worker.add_argument("--device", help="override the campaign's device: cpu, cuda, cuda:N")
    worker.add_argument("--worker-index", type=index, help="makes this worker's sampler seed reproducible")
    heartbeat_args(worker)
    worker.set_defaults(func=run)

    launch = commands.add_parser("launch", help="start one worker per GPU (worker options after --)")
    launch.add_argument("--gpus", default="all", help="'all' or GPU indices like 0,1,3 (default all)")
    launch.add_argument("--per-gpu", type=at_least_one, default=1,
                        help="workers per GPU (CPU workers when there is none)")
    launch.add_argument("worker_args", nargs=argparse.REMAINDER, help="-- then `sarsweep worker` options")
    launch.set_defaults(func=run_launch)


def run(args: argparse.Namespace) -> int:
    from optuna.trial import Trial, TrialState

    from search.objective import worker_name
    from search.worker import run_worker
    from storage import artifacts_root
    from storage.trials import frozen
    from training.data import SplitData, describe_split

    campaign = load_campaign_of(args)
    variants_of(campaign, args.variant)
    storage = open_storage_of(args, f"worker-{args.stage}")

    def report(trial: Trial, state: TrialState) -> None:
        done = frozen(trial.study, trial)
        attrs = done.user_attrs
        if done.value is not None:
            value = f"value {done.value:.4f}"
            if "seconds" in attrs:
                value += f" in {attrs['seconds']:.1f} s on {attrs.get('device', '?')}"
        else:
            value = attrs.get("fail_reason", "")
        print(f"trial {trial.number} {state.name.lower()} {value}", flush=True)

    # The name `sarsweep status` shows beside this worker's running trials.
    print(f"worker {worker_name()} on {campaign.study_name(args.variant, args.stage)}", flush=True)

    def data_line(data: SplitData) -> None:
        print(describe_split(data, campaign.train.data, campaign.stage(args.stage).fraction), flush=True)

    summary = run_worker(storage, campaign, args.variant, args.stage, artifacts_root(args.artifacts),
                         device=args.device, worker_index=args.worker_index, on_trial=report, on_data=data_line)
    print(summary.line(), flush=True)
    return 0


def run_launch(args: argparse.Namespace) -> int:
    from search.launch import launch, parse_gpus

    worker_args = [a for a in args.worker_args if a != "--"]
    return launch(parse_gpus(args.gpus), args.per_gpu, worker_args)
