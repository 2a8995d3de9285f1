"""`sarsweep reaper --campaign F`: fail and retry stale trials even when no worker starts one.

    sarsweep reaper --campaign configs/campaign.yaml
"""

from __future__ import annotations

import argparse
import time

from search.commands.common import (
    Subparsers,
    campaign_command,
    heartbeat_args,
    load_campaign_of,
    open_storage_of,
    positive_seconds,
    until_stopped,
)


def add(commands: Subparsers) -> None:
    reaper = campaign_command(commands, "reaper", "fail and retry stale trials even when no worker starts one")
    reaper.add_argument("--period", type=positive_seconds, help="seconds between passes (default: the grace period)")
    reaper.add_argument("--once", action="store_true", help="one pass, then exit")
    heartbeat_args(reaper, "the workers' ")
    reaper.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search.running.reaper import reap_campaign
    from storage.rdb import heartbeat_of

    campaign = load_campaign_of(args)
    storage = open_storage_of(args, "reaper", args.heartbeat_interval, args.grace_period)
    grace = heartbeat_of(storage)[1]
    period = args.period or grace
    print(f"reaper on campaign {campaign.name}: a trial without a heartbeat for {grace:g}s is failed "
          f"and retried" + ("" if args.once else f"; checking every {period:g}s"), flush=True)

    def passes() -> int:  # a study's pass cut short by a signal rolls back whole (one transaction)
        from search.running.signals import raise_if_stopped

        while True:
            raise_if_stopped()  # a signal whose first WorkerStopped was lost in a finalizer
            for study, numbers in reap_campaign(storage, campaign).items():
                print(f"{study}: stale trial(s) {', '.join(map(str, numbers))} failed and queued for retry",
                      flush=True)
            if args.once:
                return 0
            time.sleep(period)

    return until_stopped("reaper", passes)
