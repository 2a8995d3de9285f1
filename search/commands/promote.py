"""`sarsweep promote --campaign F`: the best quick configs of each variant, enqueued as full runs.

    sarsweep promote --campaign configs/campaign.yaml
"""

from __future__ import annotations

import argparse
import sys
import time

from errors import QuickUnfinished, UsageError
from search.commands.common import (
    Subparsers,
    at_least_one,
    campaign_command,
    load_campaign_of,
    open_storage_of,
    positive_seconds,
    variants_of,
)


def add(commands: Subparsers) -> None:
    promote = campaign_command(commands, "promote", "enqueue the best quick configs as full runs (idempotent)")
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
    promote.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search.running.promote import promote

    if args.poll is not None and not args.wait:
        raise UsageError("--poll is for --wait (the seconds between looks at the quick stage)")
    campaign = load_campaign_of(args)
    storage = open_storage_of(args, "promote")
    pending = list(variants_of(campaign, args.variant))
    said: dict[str, str] = {}
    while True:
        for variant in list(pending):
            try:
                promotions = promote(storage, campaign, variant, args.top_k, partial=args.partial)
            except QuickUnfinished as exc:
                line = f"{exc}; {'waiting for it' if args.wait else 'not promoted'}"
                if said.get(variant) != line:  # with --wait, once per change of its progress
                    print(line, flush=True)
                said[variant] = line
                continue
            pending.remove(variant)
            if not promotions:
                print(f"{variant}: no COMPLETE quick trial to promote")
            k = args.top_k or campaign.full.top_k
            kth = promotions[k - 1].quick_value if len(promotions) >= k else None
            for p in promotions:
                state = "enqueued" if p.enqueued else "already promoted"
                print(f"{variant}: quick trial {p.quick_trial} (value {p.quick_value:.4f}) {state} "
                      f"in {campaign.study_name(variant, 'full')}{p.why(k, kth)}", flush=True)
        if not pending or not args.wait:
            break
        time.sleep(args.poll or 30.0)
    if pending:
        print(f"sarsweep: not promoted while their quick stage runs: {', '.join(pending)}; `promote --wait` "
              "promotes each when it ends, `--partial` from the trials finished so far", file=sys.stderr)
        return 1
    return 0
