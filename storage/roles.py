"""A read-only PostgreSQL role for people who browse (optuna-dashboard), made by `sarsweep init`.

    sarsweep init --campaign c.yaml --readonly-role sarsweep_ro   # password: $SARSWEEP_READONLY_PASSWORD
    SARSWEEP_STORAGE=postgresql://sarsweep_ro:...@db/sarsweep sarsweep dashboard

optuna-dashboard can rename and delete studies and tell trials; anyone who reaches it can. Given
a role that may only SELECT, those requests fail in the database and nothing changes. The role
gets CONNECT on the database, USAGE on the schema, SELECT on every table now and (through default
privileges) on tables the owner creates later (an Optuna schema upgrade).
"""

from __future__ import annotations

import re

from optuna.storages import RDBStorage
from sqlalchemy.engine import URL

from errors import StorageError
from storage.urls import parse

ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def check_readonly_role(url: str | URL, role: str) -> None:
    """StorageError unless `role` can be made on the storage at `url`; `init` asks before it
    opens the storage, so a refused role leaves no database file or study behind."""
    parsed = parse(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "postgresql":
        raise StorageError("--readonly-role needs PostgreSQL storage (SQLite has no roles)")
    if not ROLE_NAME.fullmatch(role):
        raise StorageError(f"--readonly-role: {role!r} is not a plain role name (lower-case letters, digits, _)")
    if role == parsed.username:
        raise StorageError(f"--readonly-role: {role!r} is the role sarsweep itself connects as")


def ensure_readonly_role(storage: RDBStorage, role: str, password: str | None) -> bool:
    """Create (or update the password of) `role` with read-only grants. Returns True if created;
    what the server refuses is a StorageError naming the option."""
    import psycopg2

    try:
        return _ensure_readonly_role(storage, role, password)
    except psycopg2.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise StorageError(f"--readonly-role {role}: {reason}") from None


def _ensure_readonly_role(storage: RDBStorage, role: str, password: str | None) -> bool:
    from psycopg2 import sql

    check_readonly_role(storage.engine.url, role)
    ident = sql.Identifier(role)
    raw = storage.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            created = cur.fetchone() is None
            verb = sql.SQL("CREATE ROLE" if created else "ALTER ROLE")
            if password:
                cur.execute(sql.SQL("{} {} LOGIN PASSWORD {}").format(verb, ident, sql.Literal(password)))
            else:
                cur.execute(sql.SQL("{} {} LOGIN").format(verb, ident))
            cur.execute("SELECT current_database()")
            database = sql.Identifier(cur.fetchone()[0])
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, ident))
            cur.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
            cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(ident))
            cur.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(ident))
        raw.commit()
    except Exception:
        raw.rollback()
        raise
    finally:
        raw.close()
    return created
