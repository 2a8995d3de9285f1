"""The `sarsweep` command line.

    sarsweep demo                                   # everything, on generated data, SQLite, CPU
    sarsweep train --config configs/train_synthetic.yaml
    sarsweep init --campaign configs/campaign.yaml  # schema + studies (once, before workers)
    sarsweep worker --campaign configs/campaign.yaml --variant baseline --stage quick
    sarsweep launch --gpus all -- --campaign configs/campaign.yaml --variant baseline --stage quick
    sarsweep promote --campaign configs/campaign.yaml
    sarsweep export --campaign configs/campaign.yaml --variant baseline -o best.yaml
    sarsweep evaluate --checkpoint runs/x/best.pt --data /data/held-out   # PSNR/SSIM on unseen rasters
    sarsweep status --campaign configs/campaign.yaml
    sarsweep cache prune --older-than 30d --max-size 50G   # bound the node's prepared-data cache

Each command's work is in search/commands.py; this module is the parser and the exit codes.

The storage URL comes from --storage, else $SARSWEEP_STORAGE, else sqlite:///sarsweep.db.

Every user-facing failure is a `SarsweepError`: shown as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from models.errors import SarsweepError
from search.commands import (
    cmd_cache_list,
    cmd_cache_prune,
    cmd_dashboard,
    cmd_demo,
    cmd_evaluate,
    cmd_export,
    cmd_init,
    cmd_launch,
    cmd_promote,
    cmd_reaper,
    cmd_report,
    cmd_status,
    cmd_train,
    cmd_worker,
    sarsweep_version,
)
from search.process import setup_process

EXIT_USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (argparse prints its usage block first); the
    help is one --help away, which the line says when the command line's shape was wrong."""

    def error(self, message: str) -> NoReturn:
        shape = ("the following arguments are required", "unrecognized arguments", "invalid choice",
                 "expected one argument", "expected at least one argument", "not allowed with argument")
        hint = f" (see {self.prog} --help)" if any(s in message for s in shape) else ""
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}{hint}\n")


def whole_number(text: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
    return value


def port(text: str) -> int:
    """argparse type of a TCP port to listen on (a number past 65535 was a traceback from bind)."""
    return whole_number(text, 1, 65535)


def at_least_one(text: str) -> int:
    """argparse type of a count: `--top-k 0` would otherwise mean "the default" or do nothing."""
    return whole_number(text, 1)


def index(text: str) -> int:
    """argparse type of a 0-based index (a worker's number among its peers)."""
    return whole_number(text, 0)


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _scaled(text: str, number: str, unit: str, units: dict[str, int], examples: str) -> float:
    """float(number) * units[unit], never negative, or argparse's one-line error with `examples`."""
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {examples}, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def age(text: str) -> float:
    """argparse type of an age: '30d', '12h', '90m', '45s', '2w' -> seconds."""
    return _scaled(text, text[:-1], text[-1:].lower(), AGE_UNITS, "an age like 30d, 12h or 90m")


def byte_size(text: str) -> int:
    """argparse type of a size: '50G', '500M', '1.5GiB', '0' -> bytes (powers of 1024, as sizes are shown)."""
    lowered = text.strip().lower().removesuffix("b").removesuffix("i")
    number, unit = (lowered[:-1], lowered[-1]) if lowered[-1:].isalpha() else (lowered, "")
    return int(_scaled(text, number, unit, SIZE_UNITS, "a size like 50G, 500M or 0"))


def _heartbeat_args(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """--heartbeat-interval and --grace-period: a worker's own; a reaper's or status's must match the workers'."""
    # Whole seconds from 1: 0 fell back to the default unsaid, a negative interval was Optuna's traceback.
    parser.add_argument("--heartbeat-interval", type=at_least_one,
                        help=f"{whose}seconds between heartbeats (default 30)")
    parser.add_argument("--grace-period", type=at_least_one,
                        help=f"{whose}seconds without a heartbeat before a running trial is stale and retried "
                             "(default 120)")


def _add_storage(p: argparse.ArgumentParser, artifacts: bool = False) -> None:
    p.add_argument("--storage", help="storage URL (default: $SARSWEEP_STORAGE, else sqlite:///sarsweep.db)")
    p.add_argument("--storage-file", help="file holding the storage URL (keeps a password off the command line)")
    if artifacts:
        p.add_argument("--artifacts", help="checkpoint root (default: $SARSWEEP_ARTIFACTS, else ./sarsweep-artifacts)")


def _campaign_command(commands: argparse._SubParsersAction, name: str, help: str,
                      artifacts: bool = False) -> argparse.ArgumentParser:
    p = commands.add_parser(name, help=help)
    p.add_argument("--campaign", required=True, help="campaign YAML")
    _add_storage(p, artifacts)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sarsweep", description="Hyperparameter search for SAR autoencoders.")
    parser.add_argument("--version", action="version", version=f"sarsweep {sarsweep_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one config (a YAML in the train config schema)")
    train.add_argument("--config", required=True, help="train config YAML")
    fresh = train.add_mutually_exclusive_group()
    fresh.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if it exists")
    fresh.add_argument("--overwrite", action="store_true",
                       help="start over in an OUT_DIR that holds an earlier run (refused without this)")
    train.add_argument("--out-dir", help="override out_dir (where best.pt and last.pt go)")
    train.add_argument("--device", help="override device: auto, cpu, cuda, cuda:N")
    train.add_argument("--epochs", type=int, help="override epochs")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config key, dotted for sections (fraction=1.0, data.root=/mnt/sar, "
                            "lr=1e-3); the value is read as YAML; repeatable")
    train.set_defaults(func=cmd_train)

    init = _campaign_command(commands, "init", "create the schema and the campaign's studies (run once)")
    init.add_argument("--readonly-role", help="also create this SELECT-only PostgreSQL role for the dashboard "
                                              "(default: $SARSWEEP_READONLY_ROLE)")
    init.add_argument("--readonly-password-file",
                      help="file holding that role's password (default: $SARSWEEP_READONLY_PASSWORD)")
    init.set_defaults(func=cmd_init)

    worker = _campaign_command(commands, "worker", "run trials of one study until its budget is spent",
                               artifacts=True)
    worker.add_argument("--variant", required=True, help="which variant's study")
    worker.add_argument("--stage", required=True, choices=["quick", "full"])
    worker.add_argument("--device", help="override the campaign's device: cpu, cuda, cuda:N")
    worker.add_argument("--worker-index", type=index, help="makes this worker's sampler seed reproducible")
    _heartbeat_args(worker)
    worker.set_defaults(func=cmd_worker)

    launch = commands.add_parser("launch", help="start one worker per GPU (worker options after --)")
    launch.add_argument("--gpus", default="all", help="'all' or GPU indices like 0,1,3 (default all)")
    launch.add_argument("--per-gpu", type=at_least_one, default=1,
                        help="workers per GPU (CPU workers when there is none)")
    launch.add_argument("worker_args", nargs=argparse.REMAINDER, help="-- then `sarsweep worker` options")
    launch.set_defaults(func=cmd_launch)

    promote = _campaign_command(commands, "promote", "enqueue the best quick configs as full runs (idempotent)")
    promote.add_argument("--variant", help="only this variant (default: all)")
    promote.add_argument("--top-k", type=at_least_one, help="configs per variant (default: the campaign's full.top_k)")
    when = promote.add_mutually_exclusive_group()
    when.add_argument("--wait", action="store_true",
                      help="wait for each variant's quick stage to end, then promote it (default: skip a variant "
                           "whose quick trials still run, wait or are not started, and exit 1)")
    when.add_argument("--partial", action="store_true",
                      help="promote from the quick trials finished so far, even while the stage runs")
    promote.add_argument("--poll", type=positive_seconds,
                         help="with --wait: seconds between looks (default 30)")
    promote.set_defaults(func=cmd_promote)

    export = _campaign_command(commands, "export", "write a trial as a train config YAML")
    export.add_argument("--variant", required=True)
    export.add_argument("--stage", choices=["quick", "full"], help="default: full if it has a result, else quick")
    export.add_argument("--trial", type=int, help="trial number (default: the best)")
    export.add_argument("-o", "--output", required=True, help="YAML file to write")
    export.set_defaults(func=cmd_export)

    evaluate = commands.add_parser("evaluate", help="PSNR/SSIM of a checkpoint on held-out rasters or its val split")
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a best.pt (from `sarsweep train` or a trial)")
    which.add_argument("--campaign", help="campaign YAML: evaluate a trial of it (with --variant)")
    evaluate.add_argument("--variant", help="with --campaign: whose trial")
    evaluate.add_argument("--stage", choices=["quick", "full"], help="with --campaign: default full if it has a result")
    evaluate.add_argument("--trial", type=int, help="with --campaign: trial number (default: the best)")
    _add_storage(evaluate, artifacts=True)
    evaluate.add_argument("--data", help="folder of rasters to score, all of them (default: the checkpoint's "
                                         "own validation split)")
    evaluate.add_argument("--include", nargs="+", metavar="GLOB", help="files under --data (default: the config's)")
    evaluate.add_argument("--patch-size", type=int, help="default: the checkpoint's (a multiple of 8)")
    evaluate.add_argument("--stride", type=int, help="default: the checkpoint's")
    evaluate.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    evaluate.add_argument("--per-file", action="store_true", help="print a line per file")
    evaluate.add_argument("--json", help="write every figure, per file too, to this JSON file")
    evaluate.add_argument("--preview", help="write input | reconstruction | error of 8 patches to this PNG")
    evaluate.set_defaults(func=cmd_evaluate)

    status = _campaign_command(commands, "status", "trials by state and the best value per variant and stage")
    _heartbeat_args(status, "the workers' ")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables (for scripts)")
    status.set_defaults(func=cmd_status)

    reaper = _campaign_command(commands, "reaper", "fail and retry stale trials even when no worker starts one")
    reaper.add_argument("--period", type=positive_seconds, help="seconds between passes (default: the grace period)")
    reaper.add_argument("--once", action="store_true", help="one pass, then exit")
    _heartbeat_args(reaper, "the workers' ")
    reaper.set_defaults(func=cmd_reaper)

    report = _campaign_command(commands, "report", "comparison table, quick->full fidelity and cost per stage",
                               artifacts=True)
    report.add_argument("-o", "--output", default="report.md", help="Markdown report (default report.md)")
    report.add_argument("--html", help="also write a self-contained HTML report with the plots")
    report.add_argument("--held-out", metavar="DIR", help="also score each variant's chosen config on the rasters "
                                                          "in DIR (data no trial saw), as `sarsweep evaluate` does")
    report.add_argument("--held-out-include", nargs="+", metavar="GLOB",
                        help="files under --held-out (default: the campaign's data.include)")
    report.set_defaults(func=cmd_report)

    dashboard = commands.add_parser("dashboard", help="optuna-dashboard on the storage, with trial previews")
    dashboard.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=port, default=8080, help="port (default 8080)")
    _add_storage(dashboard, artifacts=True)
    dashboard.set_defaults(func=cmd_dashboard)

    cache = commands.add_parser("cache", help="list or prune this node's prepared-data cache ($SARSWEEP_CACHE)")
    cache_actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    listed = cache_actions.add_parser("list", help="every entry: its data, size and when it was last used")
    listed.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listed.set_defaults(func=cmd_cache_list)
    prune = cache_actions.add_parser("prune", help="remove unused entries (and leftovers of killed preparations)")
    prune.add_argument("--older-than", type=age, metavar="AGE", help="remove entries unused for longer: 30d, 12h, 90m")
    prune.add_argument("--max-size", type=byte_size, metavar="SIZE",
                       help="then remove the least recently used until the rest fit: 50G, 500M, 0 for all")
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    prune.set_defaults(func=cmd_cache_prune)

    demo = commands.add_parser("demo", help="run a small campaign end to end on generated data")
    demo.add_argument("-o", "--output", default="best.yaml", help="where the best config goes (default best.yaml)")
    demo.add_argument("--trials", type=at_least_one, help="quick trials per variant (default 6)")
    demo.add_argument("--epochs", type=at_least_one, help="epochs of both stages (default 4 quick, 6 full)")
    demo.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA when available)")
    _add_storage(demo, artifacts=True)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_process("sarsweep", logging.DEBUG if args.verbose else logging.INFO)
    # tifffile logs its own warning about a corrupt TIFF before raising; our error names the file.
    logging.getLogger("tifffile").setLevel(logging.ERROR)
    if args.command != "train":  # Optuna's per-study INFO lines drown our own; -v brings them back
        import optuna

        optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    try:
        return int(args.func(args))
    except SarsweepError as exc:
        print(f"sarsweep: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sarsweep: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sarsweep status | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own recipe
        return 141  # 128 + SIGPIPE, what a shell reports for a killed writer


if __name__ == "__main__":
    sys.exit(main())
