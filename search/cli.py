"""The `sarsweep` command line.

    sarsweep train --config configs/train_synthetic.yaml

Every user-facing failure is a `SarsweepError`: shown as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from models.errors import SarsweepError

EXIT_USER_ERROR = 2


def _version() -> str:
    try:
        return version("sarsweep")
    except PackageNotFoundError:
        return "unknown"


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import load_train_config
    from training.trainer import train

    cfg = load_train_config(args.config)
    overrides = {k: v for k, v in (("out_dir", args.out_dir), ("device", args.device), ("epochs", args.epochs)) if v}
    if overrides:
        cfg = cfg.replace(**overrides)

    def report(epoch: object) -> None:
        e = epoch  # EpochResult
        mark = " *" if e.is_best else ""
        print(f"epoch {e.epoch}/{cfg.epochs}  loss {e.train_loss:.5f}  val PSNR {e.val_psnr:.2f} dB  "
              f"SSIM {e.val_ssim:.4f}  lr {e.lr:.2e}  {e.seconds:.1f}s{mark}", flush=True)

    print(f"training {cfg.variant} (base_channels={cfg.base_channels}) for {cfg.epochs} epoch(s) "
          f"on {cfg.data.root or 'synthetic SAR scenes'}, fraction {cfg.fraction}", flush=True)
    result = train(cfg, on_epoch_end=report, resume=args.resume)
    print(f"val PSNR {result.best_psnr:.2f} dB, SSIM {result.best_ssim:.4f} (best epoch {result.best_epoch}), "
          f"{result.params:,} parameters, checkpoint {result.best_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sarsweep", description="Hyperparameter search for SAR autoencoders.")
    parser.add_argument("--version", action="version", version=f"sarsweep {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train one config (a YAML in the train config schema)")
    train.add_argument("--config", required=True, help="train config YAML")
    train.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if it exists")
    train.add_argument("--out-dir", help="override out_dir (where best.pt and last.pt go)")
    train.add_argument("--device", help="override device: auto, cpu, cuda, cuda:N")
    train.add_argument("--epochs", type=int, help="override epochs")
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="sarsweep: %(levelname)s: %(message)s")
    try:
        return int(args.func(args))
    except SarsweepError as exc:
        print(f"sarsweep: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sarsweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
