"""`sarsweep train --config run.yaml`: one config (a YAML in the train config schema), trained.

    sarsweep train --config configs/train_sentinel1.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from errors import ConfigError, SarsweepError
from search.commands.common import DEVICE_HELP, Subparsers, at_least_one


def add(commands: Subparsers) -> None:
    train = commands.add_parser("train", help="train one config (a YAML in the train config schema)")
    train.add_argument("--config", required=True, help="train config YAML")
    fresh = train.add_mutually_exclusive_group()
    fresh.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt if it exists")
    fresh.add_argument("--overwrite", action="store_true",
                       help="start over in an OUT_DIR that holds an earlier run (refused without this)")
    train.add_argument("--out-dir", help="override out_dir (where best.pt and last.pt go)")
    train.add_argument("--device", help=f"{DEVICE_HELP} (default: the config's)")
    train.add_argument("--epochs", type=int, help="override epochs")
    train.add_argument("--threads", type=at_least_one,
                       help="CPU threads (default: the config's, else a share of this node's cores)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override any config key, dotted for sections (fraction=1.0, data.root=/mnt/sar, "
                            "lr=1e-3); the value is read as YAML; repeatable")
    train.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.checkpoint import earlier_run
    from training.config import load_train_config
    from training.data import describe_split
    from training.inference import resolve_device
    from training.threads import threads_for
    from training.trainer import EpochResult, train

    changes = [(f"--set {item}", *setting(item)) for item in args.set]
    for flag, key, value in (("--out-dir", "out_dir", args.out_dir), ("--device", "device", args.device),
                             ("--epochs", "epochs", args.epochs), ("--threads", "threads", args.threads)):
        if value is not None:  # `--epochs 0` is refused by the schema, not dropped
            changes.append((f"{flag} {value}", key, value))
    cfg = load_train_config(args.config, changes)
    out_dir = Path(cfg.out_dir)
    earlier = None if args.resume or args.overwrite else earlier_run(out_dir)
    if earlier:  # its best.pt would be replaced by this run's first epoch, its last.pt lost
        go_on = "--resume with more --epochs trains it on" if earlier.finished else "--resume continues it"
        raise SarsweepError(f"{out_dir} holds an earlier run: {earlier}; {go_on}, --overwrite starts over in "
                            "its place, --out-dir trains elsewhere")
    done = [0]  # the last epoch this run reported

    def report(e: EpochResult) -> None:
        done[0] = e.epoch
        mark = " *" if e.is_best else ""
        print(f"epoch {e.epoch}/{cfg.epochs}  loss {e.train_loss:.5f}  val PSNR {e.val_psnr:.2f} dB  "
              f"SSIM {e.val_ssim:.4f}  lr {e.lr:.2e}  {e.seconds:.1f}s{mark}", flush=True)

    where = ""
    if resolve_device(cfg.device).type == "cpu":
        threads, why = threads_for(cfg.threads)
        cfg = cfg.replace(threads=threads)  # the checkpoint records the count it trained with
        where = f", {threads} CPU thread(s) ({why})"
    print(f"training {cfg.variant} (base_channels={cfg.base_channels}) for {cfg.epochs} epoch(s) "
          f"on {cfg.data.root or 'synthetic SAR scenes'}, fraction {cfg.fraction}{where}", flush=True)

    def data_line(data) -> None:  # type: ignore[no-untyped-def]
        print(describe_split(data, cfg.data, cfg.fraction), flush=True)

    try:
        result = train(cfg, on_epoch_end=report, resume=args.resume, on_data=data_line)
    except KeyboardInterrupt:
        # train() has finished writing last.pt before it lets this through. Before this run's first
        # epoch, with --overwrite, the folder's last.pt is the earlier run's: say nothing then.
        kept = earlier_run(out_dir) if done[0] or args.resume else None
        if kept and (out_dir / "last.pt").is_file():
            print(f"{out_dir} holds {kept}: the same command with --resume continues it", file=sys.stderr)
        raise
    print(f"trivial reference on the same validation patches (each patch's mean): PSNR {result.trivial_psnr:.2f} "
          f"dB, SSIM {result.trivial_ssim:.4f}")
    print(f"val PSNR {result.best_psnr:.2f} dB, SSIM {result.best_ssim:.4f} (best epoch {result.best_epoch}; "
          f"{result.best_psnr - result.trivial_psnr:+.2f} dB over the trivial), {result.params:,} parameters, "
          f"checkpoint {result.best_path}")
    return 0


def setting(item: str) -> tuple[str, object]:
    """'data.root=/mnt/sar' -> ('data.root', '/mnt/sar'); the value read as YAML (1e-3, null, [1, 99])."""
    import yaml

    from training.config import parse_yaml

    key, sep, text = item.partition("=")
    if not sep:
        raise ConfigError("", "expected KEY=VALUE, such as lr=1e-3 or data.root=/mnt/sar", f"--set {item}")
    try:
        value = parse_yaml(text) if text.strip() else text
    except yaml.YAMLError as exc:
        if text.lstrip()[:1] in ("[", "{"):  # meant as a list or mapping: say why it is not one
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError("", f"invalid YAML ({problem}); quote glob patterns, e.g. "
                                  "data.include=['*.tif']", f"--set {item}") from None
        value = text  # a plain word YAML will not take (e.g. a path with ': '): the text as given
    return key.strip(), value
