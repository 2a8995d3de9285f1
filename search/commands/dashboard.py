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
    import threading

    from search.campaign.dashboard import serve
    from search.running.signals import raise_if_stopped
    from storage import artifacts_root

    storage = open_storage_of(args, "dashboard")

    def serving() -> int:
        # The server runs in a thread; the main thread only waits on it, so a signal lands there and
        # stops it. In the main thread the signal's exception could land in a finalizer of a request
        # (a connection's, a weakref's) and be lost, and the server served on: under load in CI, SIGTERM
        # once left it running past 30 s. raise_if_stopped() raises a lost one again.
        failed: list[BaseException] = []

        def server() -> None:
            try:
                serve(storage, artifacts_root(args.artifacts), args.host, args.port)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which reports it
                failed.append(exc)

        thread = threading.Thread(target=server, name="dashboard", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
            raise_if_stopped()
        if failed:
            raise failed[0]
        return 0

    return until_stopped("dashboard", serving)
