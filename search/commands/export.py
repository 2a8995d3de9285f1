"""`sarsweep export --campaign F --variant V -o best.yaml`: a trial as a train config YAML.

    sarsweep export --campaign configs/campaign.yaml --variant residual -o residual-best.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from search.commands.common import Subparsers, campaign_command, load_campaign_of, open_storage_of, variants_of


def add(commands: Subparsers) -> None:
    export = campaign_command(commands, "export", "write a trial as a train config YAML")
    export.add_argument("--variant", required=True, help="whose trial: one of the campaign's variants")
    export.add_argument("--stage", choices=["quick", "full"],
                        help="which stage's trial (default: full if it has a result, else quick)")
    export.add_argument("--trial", type=int, help="trial number (default: the best)")
    export.add_argument("-o", "--output", required=True, help="YAML file to write")
    export.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from search.campaign.export import export_trial
    from search.policy.verdicts import below_trivial

    campaign = load_campaign_of(args)
    variants_of(campaign, args.variant)
    path, study, trial = export_trial(open_storage_of(args, "export"), campaign, args.variant, Path(args.output),
                                      stage=args.stage, number=args.trial)
    print(f"exported {study.study_name} trial {trial.number} (value {trial.value:.4f}) to {path}")
    below = below_trivial(trial.user_attrs)
    if below:
        print(f"sarsweep: warning: trial {trial.number} scored {below}: it learned less than each patch's mean "
              "(the header of the file says so too)", file=sys.stderr)
    print(f"retrain it with: sarsweep train --config {path}")
    return 0
