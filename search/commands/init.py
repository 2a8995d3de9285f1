"""`sarsweep init --campaign F`: the schema and the campaign's studies (once; safe to repeat).

    sarsweep init --campaign configs/campaign.yaml
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from errors import StorageError
from search.commands.common import Subparsers, campaign_command, load_campaign_of, open_storage_of


def add(commands: Subparsers) -> None:
    init = campaign_command(commands, "init", "create the schema and the campaign's studies (run once)")
    init.add_argument("--readonly-role", help="also create this SELECT-only PostgreSQL role for the dashboard "
                                              "(default: $SARSWEEP_READONLY_ROLE)")
    init.add_argument("--readonly-password-file",
                      help="file holding that role's password (default: $SARSWEEP_READONLY_PASSWORD)")
    init.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search.campaign.config import STAGES
    from search.campaign.studies import ensure_study
    from storage import redact
    from storage.roles import check_readonly_role, ensure_readonly_role
    from storage.urls import resolve_url

    campaign = load_campaign_of(args)
    if campaign.train.data.root is not None:  # now, not when the first worker starts
        from training.files import require_dir

        require_dir(campaign.train.data.root, f"{args.campaign}: train.data.root")
        from training.data.dataset import check_sources  # the globs match readable files: a worker's errors, now

        print(check_sources(campaign.train.data), flush=True)
    role = args.readonly_role or os.environ.get("SARSWEEP_READONLY_ROLE") or None
    password = readonly_password(args) if role else None
    if role:
        check_readonly_role(resolve_url(args.storage, args.storage_file), role)
    storage = open_storage_of(args, "init", create_schema=True)
    for variant in campaign.variants:
        for stage in STAGES:
            _, created = ensure_study(storage, campaign, variant, stage)
            print(f"{'created' if created else 'exists '} {campaign.study_name(variant, stage)}")
    if role:
        made = ensure_readonly_role(storage, role, password)
        print(f"{'created' if made else 'updated'} read-only role {role} (SELECT only; give it to the dashboard)")
    print(f"storage ready: {redact(storage.url)}")
    return 0


def readonly_password(args: argparse.Namespace) -> str | None:
    if args.readonly_password_file:
        try:
            return Path(args.readonly_password_file).read_text().strip() or None
        except OSError as exc:
            raise StorageError(f"--readonly-password-file: cannot read {args.readonly_password_file}: "
                               f"{exc.strerror}") from None
    return os.environ.get("SARSWEEP_READONLY_PASSWORD") or None
