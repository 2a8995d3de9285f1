"""A throwaway PostgreSQL cluster: initdb into a temp dir, a free port, password auth over TCP.

    with Cluster(max_connections=100) as pg:
        url = pg.create_database("t")        # postgresql://postgres:<pw>@127.0.0.1:<port>/t
        pg.restart()                          # fast restart; pg.stop() / pg.start() for an outage

For the fault-injection tests (tests/reliability/) and bench/storage_scaling.py, which restart,
starve and overload a server: never the shared one. Runs the server binaries as the `postgres`
user when started as root (initdb refuses root). TCP needs the password (scram-sha-256), so a
wrong password is a real authentication failure; the Unix socket in the temp dir trusts.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from errors import SarsweepError
from storage.pgserver import server_binary  # the binaries `sarsweep db` runs, found the same way


class ClusterError(SarsweepError):
    """The throwaway cluster could not be created or started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, max_connections: int = 100, password: str | None = None) -> None:
        self.max_connections = max_connections
        self.password = password or secrets.token_hex(8)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="sarsweep-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_postgres = os.geteuid() == 0

    # -- processes ---------------------------------------------------------------------------
    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(cmd)
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise ClusterError(f"{cmd[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
        return done

    def init(self) -> None:
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_postgres:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._run(server_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        conf = (f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                f"max_connections = {self.max_connections}\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nshared_buffers = 64MB\n")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(conf)

    def start(self) -> None:
        self._run(server_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(server_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self._run(server_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-l", str(self.log), "restart")

    def __enter__(self) -> Cluster:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- SQL ---------------------------------------------------------------------------------
    def url(self, database: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run SQL over the trusted socket as the superuser; returns psql's unaligned output."""
        done = self._run(server_binary("psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
                         "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", statement)
        return done.stdout.strip()

    def create_database(self, name: str, owner: str | None = None, password: str | None = None) -> str:
        """A new database and its URL; with `owner`, that (non-superuser) role is created if
        needed and owns it, and the URL logs in as it (superusers may use the reserved slots)."""
        if owner is None:
            self.sql(f'CREATE DATABASE "{name}"')
            return self.url(name)
        password = password or secrets.token_hex(8)
        self.sql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner}') THEN "
                 f"CREATE ROLE \"{owner}\" LOGIN PASSWORD '{password}'; ELSE "
                 f"ALTER ROLE \"{owner}\" PASSWORD '{password}'; END IF; END $$")
        self.sql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.url(name, user=owner, password=password)


class PeakConnections:
    """Samples a database's connections in pg_stat_activity every 50 ms, over the cluster's
    trusted socket, while in its `with` block; `.peak` is the most seen at once."""

    def __init__(self, cluster: Cluster, database: str) -> None:
        self.cluster, self.database, self.peak = cluster, database, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="peak-connections", daemon=True)

    def _run(self) -> None:
        import psycopg2

        conn = psycopg2.connect(host=str(self.cluster.dir), port=self.cluster.port, user="postgres",
                                dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self.stop.wait(0.05):
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,))
                    self.peak = max(self.peak, int(cur.fetchone()[0]))
        except psycopg2.Error:
            pass  # the server went away (a restart test): the peak so far stands
        finally:
            conn.close()

    def __enter__(self) -> PeakConnections:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def wait_until(predicate, timeout: float, every: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())
