"""`sarsweep launch`: start one `sarsweep worker` per GPU (or CPU workers sharing the cores).

    sarsweep launch --gpus all -- --campaign configs/campaign.yaml
    sarsweep launch --gpus 0,1 --per-gpu 2 -- --campaign configs/campaign.yaml --stage quick
"""

from __future__ import annotations

import argparse

from search.commands.common import Subparsers, at_least_one


def add(commands: Subparsers) -> None:
    launch = commands.add_parser("launch", help="start one worker per GPU (worker options after --)")
    launch.add_argument("--gpus", default="all", help="'all' or GPU indices like 0,1,3 (default all)")
    launch.add_argument("--per-gpu", type=at_least_one, default=1,
                        help="workers per GPU (CPU workers when there is none)")
    launch.add_argument("worker_args", nargs=argparse.REMAINDER, help="-- then `sarsweep worker` options")
    launch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search.running.launch import launch, parse_gpus

    worker_args = [a for a in args.worker_args if a != "--"]
    return launch(parse_gpus(args.gpus), args.per_gpu, worker_args)
