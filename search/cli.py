"""The `sarsweep` command line: the commands (search/commands/, one module each) assembled, and
the error policy.

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

The storage URL comes from --storage, else $SARSWEEP_STORAGE, else sqlite:///sarsweep.db.

Every user-facing failure is a `SarsweepError` (errors.py): shown as one line on stderr,
exit code 2. Ctrl-C is 130; a bad option is argparse's one line, exit 2.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from errors import SarsweepError
from search.commands import COMMANDS
from search.commands.common import sarsweep_version

EXIT_USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (argparse prints its usage block first); the
    help is one --help away, which the line says when the command line's shape was wrong."""

    def error(self, message: str) -> NoReturn:
        shape = ("the following arguments are required", "unrecognized arguments", "invalid choice",
                 "expected one argument", "expected at least one argument", "not allowed with argument")
        hint = f" (see {self.prog} --help)" if any(s in message for s in shape) else ""
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}{hint}\n")


def setup_process(prefix: str, level: int) -> None:
    """Log to stderr as "<prefix>: LEVEL: message", and make `kill -USR1 PID` print every
    thread's stack to stderr while the process goes on: what a worker or reaper that seems stuck
    is waiting on, without stopping its trial. (tests/support/loadtest.py's workers call it too.)"""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(level=level, format=f"{prefix}: %(levelname)s: %(message)s")
    # matplotlib says "generated new fontManager" at INFO the first time it builds its font cache.
    logging.getLogger("matplotlib").setLevel(max(level, logging.WARNING))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sarsweep", description="Hyperparameter search for SAR autoencoders.")
    parser.add_argument("--version", action="version", version=f"sarsweep {sarsweep_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        before = set(commands.choices)
        command.add(commands)
        for name in set(commands.choices) - before:
            describe(commands.choices[name], command.__doc__ or "")
    return parser


def describe(parser: argparse.ArgumentParser, doc: str) -> None:
    """`sarsweep X --help` opens with what X is for and ends with an example: the first line and the
    `sarsweep ...` lines of its command module's docstring."""
    first = doc.strip().split("\n")[0]
    purpose = first.split(": ", 1)[1] if ": " in first else first
    parser.description = purpose[:1].upper() + purpose[1:]
    examples = [line.strip() for line in doc.splitlines() if line.strip().startswith("sarsweep ")]
    if examples:
        parser.epilog = "example" + ("s" if len(examples) > 1 else "") + ":\n" + "\n".join(f"  {e}" for e in examples)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


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
