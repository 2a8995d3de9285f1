"""`sarsweep demo`: a small campaign end to end on generated data (SQLite, CPU, a few minutes).

    sarsweep demo
"""

from __future__ import annotations

import argparse
from pathlib import Path

from search.commands.common import DEVICE_HELP, Subparsers, at_least_one, open_storage_of, storage_args, whole_number


def add(commands: Subparsers) -> None:
    demo = commands.add_parser("demo", help="run a small campaign end to end on generated data")
    demo.add_argument("-o", "--output", default="best.yaml", help="where the best config goes (default best.yaml)")
    demo.add_argument("--trials", type=at_least_one, help="quick trials per variant (default 6)")
    demo.add_argument("--epochs", type=at_least_one, help="epochs of both stages (default 4 quick, 6 full)")
    demo.add_argument("--device", help=f"{DEVICE_HELP} (default auto)")
    demo.add_argument("--noise-seeds", type=lambda text: whole_number(text, 0), metavar="N",
                      help="extra seeds each stage's best config is re-run with to measure seed noise (default 2; 0 "
                           "skips it: faster, but the report cannot say which differences are noise)")
    storage_args(demo, artifacts=True)
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search.demo import run_demo
    from storage import artifacts_root, redact
    from training.files import ensure_writable

    ensure_writable(Path(args.output).parent)  # best.yaml and the report go there: say so now, not after the demo
    storage = open_storage_of(args, "demo", create_schema=True)
    print(f"sarsweep demo on {redact(storage.url)}; checkpoints under {artifacts_root(args.artifacts)}", flush=True)
    run_demo(storage, artifacts_root(args.artifacts), Path(args.output), args.trials, args.epochs, args.device,
             args.noise_seeds)
    return 0
