"""`sarsweep evaluate`: PSNR/SSIM of a checkpoint on held-out rasters, or on its own validation split.

    sarsweep evaluate --checkpoint runs/x/best.pt --data /data/held-out
"""

from __future__ import annotations

import argparse
from pathlib import Path

from errors import UsageError
from search.commands.common import (
    DEVICE_HELP,
    Subparsers,
    load_campaign_of,
    open_storage_of,
    storage_args,
    variants_of,
)


def add(commands: Subparsers) -> None:
    evaluate = commands.add_parser("evaluate", help="PSNR/SSIM of a checkpoint on held-out rasters or its val split")
    which = evaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a best.pt (from `sarsweep train` or a trial)")
    which.add_argument("--campaign", help="campaign YAML: evaluate a trial of it (with --variant)")
    evaluate.add_argument("--variant", help="with --campaign: whose trial")
    evaluate.add_argument("--stage", choices=["quick", "full"], help="with --campaign: default full if it has a result")
    evaluate.add_argument("--trial", type=int, help="with --campaign: trial number (default: the best)")
    storage_args(evaluate, artifacts=True)
    evaluate.add_argument("--data", help="folder of rasters to score, all of them (default: the checkpoint's "
                                         "own validation split)")
    evaluate.add_argument("--include", nargs="+", metavar="GLOB", help="files under --data (default: the config's)")
    evaluate.add_argument("--patch-size", type=int, help="default: the checkpoint's (a multiple of 8)")
    evaluate.add_argument("--stride", type=int, help="default: the checkpoint's")
    evaluate.add_argument("--device", help=DEVICE_HELP)
    evaluate.add_argument("--on-error", choices=["raise", "skip"],
                          help="a corrupt or unreadable file under --data: stop with one line naming it (raise, the "
                               "default), or leave it out and say so (skip)")
    evaluate.add_argument("--per-file", action="store_true", help="print a line per file")
    evaluate.add_argument("--json", help="write every figure, per file too, to this JSON file")
    evaluate.add_argument("--preview", help="write input | reconstruction | error of 8 patches to this PNG")
    evaluate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from training.evaluate import evaluate, report_lines
    from training.files import atomic_write, ensure_writable

    if args.checkpoint:  # they pick a campaign's trial: beside a checkpoint they were silently ignored
        given = [flag for flag, value in (("--variant", args.variant), ("--stage", args.stage),
                                          ("--trial", args.trial)) if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} pick a trial of --campaign; with --checkpoint there is none "
                             f"to pick")
    outputs = [Path(p) for p in (args.json, args.preview) if p]
    for path in outputs:  # before the work: an hour of scoring must not end in "cannot write"
        ensure_writable(path.parent)
    checkpoint = Path(args.checkpoint) if args.checkpoint else trial_checkpoint_of(args)
    result = evaluate(checkpoint, data=args.data, include=args.include, patch_size=args.patch_size,
                      stride=args.stride, device=args.device or "auto",
                      preview=Path(args.preview) if args.preview else None, on_error=args.on_error)
    if args.json:
        text = json.dumps(result.to_dict(), indent=2) + "\n"
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(text))
    print("\n".join(report_lines(result, per_file=args.per_file)))
    return 0


def trial_checkpoint_of(args: argparse.Namespace) -> Path:
    from search.campaign.export import choose_trial, trial_checkpoint
    from storage import artifacts_root

    if not args.variant:
        raise UsageError("--variant is needed with --campaign (which variant's trial to evaluate)")
    campaign = load_campaign_of(args)
    variants_of(campaign, args.variant)
    study, trial = choose_trial(open_storage_of(args, "evaluate"), campaign, args.variant, args.stage, args.trial,
                                purpose="evaluate")
    stage = study.study_name.rsplit(".", 1)[1]
    path = trial_checkpoint(campaign, args.variant, stage, trial, artifacts_root(args.artifacts))
    print(f"{study.study_name} trial {trial.number} (value {trial.value:.4f}): {path}", flush=True)
    return path
