"""`sarsweep db init|start|stop|status|url`: a PostgreSQL server of the campaign's own (storage/pgserver.py).

    sarsweep db init --dir ~/sarsweep-db --allow 10.1.0.0/16 --workers 32
    sarsweep db start --dir ~/sarsweep-db
"""

from __future__ import annotations

import argparse
import json

from search.commands.common import Subparsers, at_least_one, port


def add(commands: Subparsers) -> None:
    db = commands.add_parser("db", help="a PostgreSQL server of the campaign's own, for sites that run none")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")

    def folder(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dir", required=True, help="the server's folder (data, password file, log)")
        return p

    init = folder(actions.add_parser("init", help="create the server in an empty folder (initdb, password, access)"))
    init.add_argument("--allow", required=True, metavar="CIDR",
                      help="the network whose hosts may log in with the password, e.g. 10.1.0.0/16 (127.0.0.1/32: "
                           "this node only)")
    init.add_argument("--workers", type=at_least_one, default=16,
                      help="workers expected at once; sizes max_connections (default 16)")
    init.add_argument("--port", type=port, help="port to listen on (default: a free one, kept in server.json)")
    init.add_argument("--host", help="the name workers reach this node by (default: its fully qualified name)")
    init.add_argument("--run-as", metavar="USER", help="as root: who runs the server (default postgres)")
    init.set_defaults(func=run_init)
    folder(actions.add_parser("start", help="start the server (refused when one runs on the folder)")).set_defaults(
        func=run_start)
    folder(actions.add_parser("stop", help="stop the server (fast: workers wait it out as an outage)")).set_defaults(
        func=run_stop)
    status = folder(actions.add_parser("status", help="whether it runs, its port and its connections"))
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=run_status)
    url = folder(actions.add_parser("url", help="the storage URL (password from the folder's password file)"))
    url.add_argument("--file", help="write it to this file (mode 0600) instead of printing it: workers read it "
                                    "with --storage-file or $SARSWEEP_STORAGE_FILE")
    url.add_argument("--host", help="the host name to put in it (default: the one init recorded)")
    url.set_defaults(func=run_url)


def run_init(args: argparse.Namespace) -> int:
    from storage.pgserver import DbFolder

    folder = DbFolder(args.dir)
    server = folder.init(args.allow, args.workers, args.port, args.host, args.run_as)
    print(f"created a PostgreSQL server in {folder.dir}: host {server.host}, port {server.port}, database sarsweep, "
          f"role sarsweep; password in {folder.password_file} (mode 0600); logins from {server.allow} only; "
          f"max_connections {server.max_connections}")
    print(f"start it with: sarsweep db start --dir {folder.dir}")
    return 0


def run_start(args: argparse.Namespace) -> int:
    from storage.pgserver import DbFolder

    folder = DbFolder(args.dir)
    server = folder.start()
    print(f"PostgreSQL runs on {server.host}:{server.port} from {folder.dir} (log {folder.log})")
    print(f"give workers its URL: sarsweep db url --dir {folder.dir} --file PATH (then --storage-file PATH)")
    return 0


def run_stop(args: argparse.Namespace) -> int:
    from storage.pgserver import DbFolder

    folder = DbFolder(args.dir)
    print(f"stopped the server on {folder.dir}" if folder.stop() else f"no server runs on {folder.dir}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from storage.pgserver import DbFolder

    info = DbFolder(args.dir).status()
    if args.json:
        print(json.dumps(info, indent=2))
    elif info["running"]:
        print(f"running on {info['host']}:{info['port']} (pid {info['pid']}), {info.get('connections', '?')} client "
              f"connection(s) of max_connections {info['max_connections']}; logins from {info['allow']}")
    else:
        print(f"not running; `sarsweep db start --dir {info['dir']}` starts it (port {info['port']})")
    return 0 if info["running"] else 3  # like pg_ctl status: 3 when no server runs


def run_url(args: argparse.Namespace) -> int:
    from storage.pgserver import DbFolder
    from training.files import atomic_write

    folder = DbFolder(args.dir)
    url = folder.url(args.host)
    if not args.file:
        print(url)
        return 0
    from pathlib import Path

    path = Path(args.file).expanduser()

    def write(tmp: Path) -> None:
        tmp.touch(mode=0o600)
        tmp.chmod(0o600)
        tmp.write_text(url + "\n")

    atomic_write(path, write)
    print(f"SARSWEEP_STORAGE_FILE={path}")
    return 0
