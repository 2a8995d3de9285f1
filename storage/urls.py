"""Storage URLs: where they come from, how they are shown (never with a password), and errors.

Precedence: `--storage URL`, `--storage-file PATH`, $SARSWEEP_STORAGE, $SARSWEEP_STORAGE_FILE,
else the embedded default `sqlite:///sarsweep.db` (one machine, no server). The file forms
keep a password out of argv and the process list (a Docker or Kubernetes secret, say).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from errors import StorageError

DEFAULT_URL = "sqlite:///sarsweep.db"
ENV_VAR = "SARSWEEP_STORAGE"
FILE_ENV_VAR = "SARSWEEP_STORAGE_FILE"
SUPPORTED = ("postgresql", "sqlite")


def resolve_url(cli_value: str | None = None, cli_file: str | None = None) -> str:
    if cli_value:
        return cli_value
    if cli_file:
        return _read_url_file(cli_file, "--storage-file")
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    if os.environ.get(FILE_ENV_VAR):
        return _read_url_file(os.environ[FILE_ENV_VAR], FILE_ENV_VAR)
    return DEFAULT_URL


def _read_url_file(path: str, source: str) -> str:
    try:
        url = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StorageError(f"{source}: cannot read storage URL file {path}: {exc.strerror}") from None
    if not url:
        raise StorageError(f"{source}: storage URL file {path} is empty")
    _warn_if_readable(path, url, source)
    return url


def _warn_if_readable(path: str, url: str, source: str) -> None:
    """A URL file holding a password should be the owner's alone (what `sarsweep db` writes: 0600).
    Taken anyway, with one warning, so a shared read-only setup keeps working."""
    import logging
    import stat

    try:
        mode = stat.S_IMODE(Path(path).stat().st_mode)
        password = make_url(url).password
    except (OSError, ArgumentError, ValueError):
        return
    if password and mode & (stat.S_IRWXG | stat.S_IRWXO):
        logging.getLogger("sarsweep.storage").warning(
            "%s: %s holds a password and is readable by others (mode %04o); chmod 600 %s", source, path, mode, path)


def redact(url: str | URL) -> str:
    """The URL with any password replaced by ***, even when the URL does not parse."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def parse(url: str) -> URL:
    """A SQLAlchemy URL for a supported backend, or a StorageError naming the (redacted) URL."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorageError(f"malformed storage URL {redact(url)}: {exc}".replace(url, redact(url))) from None
    if parsed.drivername == "postgres":  # Heroku's and libpq's short form, which SQLAlchemy does not take
        parsed = parsed.set(drivername="postgresql")
    if parsed.get_backend_name() not in SUPPORTED:
        raise StorageError(
            f"unsupported storage URL {redact(parsed)}: use postgresql://... or sqlite:///..."
        )
    if parsed.get_backend_name() == "postgresql":
        if not parsed.database:
            raise StorageError(f"storage URL {redact(parsed)} names no database")
        if parsed.drivername == "postgresql":
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2.
            parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def require_sqlite_file(url: str) -> None:
    """For every command but `init` and `demo`: a SQLite URL must name an existing file. SQLite
    creates a missing one on connect, so `status` with a mistyped path (or the default
    sqlite:///sarsweep.db from another folder) made an empty database and reported no studies.
    PostgreSQL URLs, and in-memory SQLite, pass."""
    parsed = parse(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return  # in memory, or a URI filename (sqlite:///file:x?uri=true), which SQLite itself resolves
    path = Path(database)
    if not path.is_file():
        where = path if path.is_absolute() else f"{path} (from {Path.cwd()})"
        raise StorageError(f"no SQLite database at {where}: run `sarsweep init` first, or check the storage URL")


def normalise(url: str) -> str:
    """The URL as Optuna and SQLAlchemy should get it (password kept: never print this)."""
    return parse(url).render_as_string(hide_password=False)


def describe(url: URL) -> str:
    """'host H, port P, database D' (what a person needs to find the server), or the file."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database or ':memory:'}"
    return f"host {url.host or 'localhost (socket)'}, port {url.port or 5432}, database {url.database}"


def scrub(message: str, url: URL) -> str:
    """A driver's message as one line, with the password cut out should it appear."""
    line = " ".join(message.strip().split())
    if url.password:
        line = line.replace(str(url.password), "***")
    return line
