"""`sarsweep plan`: what a campaign will cost before it runs (trials, worker-hours, wall time).

    sarsweep plan --campaign configs/campaign.yaml --workers 8
    sarsweep plan --campaign configs/campaign.yaml --workers 32 --json
    sarsweep plan --campaign configs/campaign.yaml --patches 400000   # the data is not on this machine

It trains a few timed steps of each variant at the narrowest and widest width the campaign
searches, on its own device, patch size and data, and simulates the campaign on those costs
(search/simulation/plan.py). It opens no storage and changes nothing.

Where the data is not (a login node, before the copy), `--patches N` says how many patches it cuts
(both splits, at the campaign's patch size and stride): the splits are counted as training would
split them (data.val_fraction, data.val_max_patches), and the timed steps run on generated patches
of the campaign's size and channels: a step's time depends on the model, width, batch, patch size
and device, not on what the pixels show.
"""

from __future__ import annotations

import argparse

from search.commands.common import DEVICE_HELP, Subparsers, at_least_one, load_campaign_of


def add(commands: Subparsers) -> None:
    plan = commands.add_parser("plan", help="forecast a campaign's trials, worker-hours and wall time before it runs")
    plan.add_argument("--campaign", required=True, help="campaign YAML")
    plan.add_argument("--workers", type=at_least_one, default=1,
                      help="workers the campaign will run on (one per GPU; default 1)")
    plan.add_argument("--device", help=f"{DEVICE_HELP} (default: the campaign's train.device)")
    plan.add_argument("--patches", type=at_least_one, metavar="N",
                      help="the data is not here: the patches it cuts (both splits), timed on generated "
                           "patches of the campaign's size")
    plan.add_argument("--json", action="store_true", help="print JSON instead of the table (for scripts)")
    plan.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from search.simulation.plan import Forecast, closed_form, render, simulate

    campaign = load_campaign_of(args)
    forecast = Forecast(campaign.name, "", args.workers)
    costs = measure(campaign, args.device, args.workers, forecast, args.patches)
    closed_form(campaign, costs, forecast)
    simulate(campaign, costs, forecast)
    print(json.dumps(forecast.to_dict(), indent=2) if args.json else render(forecast), flush=True)
    return 0


def stand_in(campaign, patches: int):  # type: ignore[no-untyped-def]
    """SplitData for timing where the data is not: the quick stage's training patches and the
    validation patches `patches` would split into, as counts, and generated arrays (of at most the
    ten batches calibration trains on, and the whole validation set, which every epoch scores)."""
    import numpy as np

    from training.data import SplitData

    cfg = campaign.train.data
    total_val = max(1, round(patches * cfg.val_fraction))
    val_n = min(total_val, cfg.val_max_patches or total_val)
    train_total = max(1, patches - total_val)
    quick_n = max(1, int(campaign.quick.fraction * train_total))
    rng = np.random.default_rng(0)
    shape = (cfg.channels, cfg.patch_size, cfg.patch_size)
    held = min(quick_n, 10 * campaign.train.batch_size)
    data = SplitData(rng.random((held, *shape), dtype=np.float32), rng.random((val_n, *shape), dtype=np.float32),
                     ["(generated)"], ["(generated)"], train_total)
    return data, quick_n


def measure(campaign, device: str | None, workers: int, forecast, patches: int | None = None):  # type: ignore[no-untyped-def]
    """Seconds per epoch of each (variant, width, stage), and each stage's patch counts."""
    import os
    import sys
    import time

    from search.running.trial import trial_config
    from search.simulation.plan import widths
    from training.calibrate import calibrate
    from training.data import load_data
    from training.inference import resolve_device
    from training.threads import node_cores

    quick, full = campaign.quick, campaign.full
    started = time.perf_counter()
    if patches is None:
        data = load_data(campaign.train.data, quick.fraction)
        quick_n = len(data.train)
        forecast.worker_start = time.perf_counter() - started  # each worker prepares its stages' data first
    else:
        data, quick_n = stand_in(campaign, patches)  # reading the real data is not timed: not counted
        forecast.data_source = f"{patches:,} patches as --patches says (timed on generated ones)"
    full_n = data.total_train_patches if full.fraction >= 1 else int(full.fraction * data.total_train_patches)
    forecast.data = {"quick": (quick_n, len(data.val)), "full": (full_n, len(data.val))}
    dev = resolve_device(device or campaign.train.device)
    threads = None
    if dev.type == "cpu":  # each of the workers gets its share of this node's cores
        threads = campaign.train.threads or max(1, node_cores() // workers)
    forecast.device = f"{dev}" + (f", {threads} thread(s) per worker" if threads else "")
    costs = {}
    startups = []
    for variant in campaign.variants:
        for width in widths(campaign, variant):
            print(f"plan: timing {variant} at base_channels {width} on {dev}", file=sys.stderr, flush=True)
            params = {"base_channels": width} if "base_channels" in campaign.space(variant) else {}
            cfg = trial_config(campaign, variant, quick.fraction, quick.epochs, params, 0,
                               os.devnull, str(dev), threads)
            cost = calibrate(cfg, data)
            startups.append(cost.startup)
            for stage, n in (("quick", quick_n), ("full", full_n)):
                costs[variant, width, stage] = cost.epoch(n, cfg.batch_size)
    forecast.startup = float(sum(startups) / len(startups))
    return costs
