"""`sarsweep dashboard`: optuna-dashboard on our storage, with our artifact store (previews).

Listens on 127.0.0.1 unless told otherwise: reach it from your laptop through an SSH tunnel
(`ssh -L 8080:127.0.0.1:8080 head-node`), or publish it deliberately with --host 0.0.0.0.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from optuna.storages import RDBStorage

from models.errors import SarsweepError
from storage import artifact_store, redact

log = logging.getLogger("sarsweep.dashboard")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def serve(storage: RDBStorage, artifacts: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    import optuna_dashboard

    check_listen(host, port)
    store = artifact_store(artifacts, create=False)  # it only reads; compose mounts the artifacts read-only
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"optuna-dashboard on {redact(storage.url)}, previews from {artifacts}", flush=True)
    print(f"open http://{shown}:{port}/dashboard in a browser (Ctrl-C stops it)", flush=True)
    if host not in LOCAL_HOSTS:
        log.warning("listening on %s: anyone who can reach this port can rename or delete studies; "
                    "give the dashboard a read-only database role", host)
    optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)


def check_listen(host: str, port: int) -> None:
    """Bind and release host:port, or one line saying why not: a port in use (a second
    dashboard), a privileged port, a host name that does not resolve here. Checked before the
    server starts, whose banner would say "Listening on" first."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        # create_server appends "(while attempting to bind on address ...)" to the reason; the option says that
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or str(exc))
        raise SarsweepError(f"--host {host} --port {port}: cannot listen there: {reason}") from None
