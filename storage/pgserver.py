"""A PostgreSQL server of the campaign's own, where a site runs none: `sarsweep db`.

    sarsweep db init --dir /shared/sarsweep-db --allow 10.1.0.0/16 --workers 32
    sarsweep db start --dir /shared/sarsweep-db        # on the node that serves it
    sarsweep db url --dir /shared/sarsweep-db --file ~/.config/sarsweep/storage-url
    sarsweep db status --dir /shared/sarsweep-db
    sarsweep db stop --dir /shared/sarsweep-db

SQLite on a shared filesystem corrupts under concurrent writers (optuna#815), and many HPC sites
run no database server, so sarsweep makes one from the PostgreSQL binaries the node has
(/usr/lib/postgresql/*/bin, else PATH): initdb with scram-sha-256 authentication, a generated
password in a file only its owner can read (never on a command line: optuna#3307), pg_hba.conf
admitting password logins from the one network named and nothing else, max_connections sized
from the expected worker count. The folder holds everything: data/, password, server.json (host
and port), server.log. Started as root, the server runs as the owner given by --run-as (initdb
refuses root), `postgres` by default.
"""

from __future__ import annotations

import contextlib
import getpass
import glob
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from errors import StorageError

DATABASE = "sarsweep"
ROLE = "sarsweep"


def server_binary(name: str) -> str:
    """The newest PostgreSQL's `name` (initdb, pg_ctl, postgres), or one line saying there is none."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise StorageError(f"PostgreSQL's {name} is neither under /usr/lib/postgresql/*/bin nor on PATH: install the "
                       "server (Debian: postgresql; a module: `module load postgresql`) or use a site's database")


@dataclass
class Server:
    """What `db init` decided, as server.json keeps it."""

    host: str
    """The name workers reach the server by (this node's)."""
    port: int
    allow: str
    """The network (CIDR) admitted, besides the server's own socket."""
    max_connections: int
    user: str
    """Who runs the server (the folder's owner)."""
    fixed_host: bool = False
    """`host` was given at init; else each `db start` records the node it runs on (a Slurm job
    may land on another node each time)."""


class DbFolder:
    """The folder of one server: data/, password, server.json, server.log."""

    def __init__(self, path: str | Path) -> None:
        self.dir = Path(path).expanduser().resolve()
        self.data = self.dir / "data"
        self.password_file = self.dir / "password"
        self.conf = self.dir / "server.json"
        self.log = self.dir / "server.log"

    # ---- reading ---------------------------------------------------------------------------

    def server(self) -> Server:
        try:
            return Server(**json.loads(self.conf.read_text()))
        except FileNotFoundError:
            raise StorageError(f"{self.dir} holds no sarsweep database: run `sarsweep db init --dir {self.dir}` "
                               "first") from None
        except (OSError, ValueError, TypeError) as exc:
            raise StorageError(f"{self.conf} is unreadable ({exc.__class__.__name__}): {exc}") from None

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except OSError as exc:
            raise StorageError(f"cannot read the database password in {self.password_file}: "
                               f"{exc.strerror or exc}") from None

    def url(self, host: str | None = None) -> str:
        """The storage URL, password included: for a file of mode 0600 or the environment only."""
        server = self.server()
        return f"postgresql://{ROLE}:{self.password()}@{host or server.host}:{server.port}/{DATABASE}"

    def running_pid(self) -> int | None:
        """The postmaster's pid when one runs on this folder (postmaster.pid and a live process)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid  # alive, another user's
        return pid

    # ---- running the binaries --------------------------------------------------------------

    def _run(self, user: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if os.geteuid() == 0 and user != "root":
            command = ["runuser", "-u", user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if check and done.returncode:
            reason = (done.stderr or done.stdout).strip().splitlines()
            last = reason[-1] if reason else f"exit {done.returncode}"
            raise StorageError(f"{Path(argv[0]).name} failed for {self.dir}: {last}")
        return done

    def init(self, allow: str, workers: int, port: int | None = None, host: str | None = None,
             run_as: str | None = None) -> Server:
        """A new cluster in the folder (refused if it holds one), started once to make the
        role and database, then stopped."""
        network = allowed_network(allow)
        user = owner_for(run_as)
        if self.conf.exists() or self.data.exists():
            raise StorageError(f"{self.dir} holds a database already (server.json or data/); `sarsweep db start "
                               f"--dir {self.dir}` starts it, or choose an empty folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        if not os.access(self.dir, os.W_OK):
            raise StorageError(f"cannot write {self.dir}")
        _chown(self.dir, user)
        os.chmod(self.dir, 0o700)
        password = secrets.token_urlsafe(24)
        self.password_file.touch(mode=0o600)
        os.chmod(self.password_file, 0o600)
        self.password_file.write_text(password + "\n")
        _chown(self.password_file, user)
        connections = max(20, 2 * workers + 10)  # a worker's pool of 1 + 1 overflow, and room for init/status
        server = Server(host or socket.gethostname(), port or free_port(), str(network), connections, user,
                        fixed_host=host is not None)
        pwfile = self.dir / ".initdb-password"
        pwfile.touch(mode=0o600)
        pwfile.write_text(password + "\n")
        _chown(pwfile, user)
        try:
            self._run(user, server_binary("initdb"), "-D", str(self.data), "-U", ROLE, "--pwfile", str(pwfile),
                      "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8")
        finally:
            pwfile.unlink(missing_ok=True)
        (self.data / "pg_hba.conf").write_text(
            "# sarsweep db: password (scram-sha-256) logins, from this node's socket and the network below only\n"
            "local all all scram-sha-256\n"
            f"host all all {network} scram-sha-256\n")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\n# sarsweep db init\nlisten_addresses = '*'\nport = {server.port}\n"
                       f"max_connections = {server.max_connections}\nunix_socket_directories = '{self.dir}'\n"
                       "password_encryption = 'scram-sha-256'\nshared_buffers = 128MB\n")
        self.conf.write_text(json.dumps(asdict(server), indent=2) + "\n")
        _chown(self.conf, user)
        self.start()
        try:
            self._psql(server, f'CREATE DATABASE "{DATABASE}" OWNER "{ROLE}"', database="postgres")
        finally:
            self.stop()
        return server

    def _psql(self, server: Server, statement: str, database: str = DATABASE) -> str:
        env_password = {"PGPASSWORD": self.password()}
        done = subprocess.run(
            [server_binary("psql"), "-h", str(self.dir), "-p", str(server.port), "-U", ROLE, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", statement],
            capture_output=True, text=True, timeout=60, env={**os.environ, **env_password})
        if done.returncode:
            raise StorageError(f"psql on {self.dir}: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}")
        return done.stdout.strip()

    def start(self) -> Server:
        server = self.server()
        pid = self.running_pid()
        if pid is not None:
            raise StorageError(f"a server already runs on {self.dir} (pid {pid}, port {server.port}); "
                               f"`sarsweep db status --dir {self.dir}` shows it")
        self._run(server.user, server_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "120",
                  "start")
        if not server.fixed_host and server.host != socket.gethostname():
            server.host = socket.gethostname()  # the URL names the node it runs on now
            self.conf.write_text(json.dumps(asdict(server), indent=2) + "\n")
        return server

    def stop(self) -> bool:
        """Stop the server (fast: running transactions roll back); False when none ran."""
        server = self.server()
        if self.running_pid() is None:
            return False
        self._run(server.user, server_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        return True

    def status(self) -> dict[str, object]:
        server = self.server()
        pid = self.running_pid()
        info: dict[str, object] = {"dir": str(self.dir), "running": pid is not None, "pid": pid, **asdict(server)}
        if pid is not None:
            with contextlib.suppress(StorageError):
                # less 1: this query's own connection
                info["connections"] = int(self._psql(server, "SELECT count(*) - 1 FROM pg_stat_activity WHERE "
                                                             "backend_type = 'client backend'"))
        return info


def allowed_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise StorageError(f"--allow: {text!r} is no network; give one like 10.1.0.0/16 or 127.0.0.1/32") from None


def owner_for(run_as: str | None) -> str:
    """Who runs the server: yourself; as root, --run-as (postgres by default), as initdb refuses root."""
    if os.geteuid() != 0:
        me = getpass.getuser()
        if run_as not in (None, me):
            raise StorageError(f"--run-as {run_as}: only root may run the server as someone else")
        return me
    user = run_as or "postgres"
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise StorageError(f"--run-as {user}: no such user (as root the server must run as another user: "
                           "initdb refuses root)") from None
    if user == "root":
        raise StorageError("--run-as root: PostgreSQL refuses to run as root; name another user")
    return user


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])
