"""`sarsweep dashboard`: optuna-dashboard on the storage, with trial previews.

    sarsweep dashboard --storage sqlite:///sarsweep.db --port 8080
"""

from __future__ import annotations

import argparse

from search.commands.common import Subparsers, open_storage_of, port, storage_args, until_stopped


def add(commands: Subparsers) -> None:
    dashboard = commands.add_parser("dashboard", help="optuna-dashboard on the storage, with trial previews")
    dashboard.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    dashboard.add_argument("--port", type=port, default=8080, help="port (default 8080)")
    storage_args(dashboard, artifacts=True)
    dashboard.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from search.campaign.dashboard import serve
    from storage import artifacts_root

    storage = open_storage_of(args, "dashboard")

    def serving() -> int:
        serve(storage, artifacts_root(args.artifacts), args.host, args.port)
        return 0

    return until_stopped("dashboard", serving)
