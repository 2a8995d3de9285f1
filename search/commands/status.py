"""`sarsweep status --campaign F`: trials by state, best value, running trials and time left.

    sarsweep status --campaign configs/campaign.yaml
"""

from __future__ import annotations

import argparse

from search.commands.common import (
    Subparsers,
    at_least_one,
    campaign_command,
    heartbeat_args,
    load_campaign_of,
    open_storage_of,
)


def add(commands: Subparsers) -> None:
    status = campaign_command(commands, "status", "trials by state and the best value per variant and stage")
    heartbeat_args(status, "the workers' ")
    status.add_argument("--json", action="store_true", help="print JSON instead of tables (for scripts)")
    status.add_argument("--workers", type=at_least_one,
                        help="forecast what is left on this many workers (default: the workers alive now)")
    status.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from search.report.collect import collect, summary_line
    from search.report.status import (
        campaign_forecast,
        campaign_status,
        render,
        render_idle,
        render_running,
        to_json,
        waiting_promotions,
    )
    from search.simulation.left import render_left as render_forecast
    from storage.rdb import heartbeat_of

    campaign = load_campaign_of(args)
    storage = open_storage_of(args, "status", args.heartbeat_interval, args.grace_period)
    rows = campaign_status(storage, campaign)
    forecast = campaign_forecast(rows, campaign, args.workers)
    if args.json:
        print(json.dumps(to_json(campaign, rows, heartbeat_of(storage)[1], forecast), indent=2))
        return 0
    print(render(rows, campaign.objective))
    running = render_running(rows, heartbeat_of(storage)[1])
    if running:
        print(running)
    idle = render_idle(rows)
    if idle:
        print(idle)
    if any(r.exists for r in rows):
        print(render_forecast(forecast))
    print(f"promotions waiting for full-stage workers: {waiting_promotions(rows)}")
    if all(r.exists for r in rows):  # before `init` there is nothing to summarise
        print(summary_line(collect(storage, campaign)))
    return 0
