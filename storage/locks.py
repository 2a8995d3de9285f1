"""A lock per study, held across "look at the study, then change it" steps.

Optuna has no atomic "create a trial only if fewer than N exist" or "enqueue only if absent",
so N workers (or promoters) racing on the same study overshoot a budget or enqueue a config
twice. Holding this lock around the check and the change makes them exact.

PostgreSQL: a transaction-scoped advisory lock (`pg_advisory_xact_lock`): released at commit,
and by the server if the holder dies, so a killed worker never leaves it held.
SQLite: an exclusive `flock` on a file beside the database, released by the OS on exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeAlias

from optuna.storages import RDBStorage
from sqlalchemy import text
from sqlalchemy.engine import Connection

from storage.optuna_internals import rdb_of
from storage.rdb import in_transaction

_memory_lock = threading.Lock()

LockConnection: TypeAlias = Connection | None
"""What a held study lock yields: the PostgreSQL connection whose transaction holds it, or None
(SQLite's file lock, which has no transaction to share)."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory locks."""
    return int.from_bytes(hashlib.sha256(f"sarsweep:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def locked_transaction(storage: Any, name: str) -> Iterator[Connection | None]:
    """study_lock, with this thread's Optuna storage calls run on the lock's own connection and
    transaction (storage.rdb.in_transaction): the work and the lock release commit together,
    and the holder needs no second connection. A worker's claim and its reaper thread each
    holding one pooled connection while waiting for a second deadlocked its pool of two (a
    30 s pool timeout, again and again, under the fault suite's restart test).
    """
    with study_lock(storage, name) as conn, in_transaction(rdb_of(storage), conn):
        yield conn


def also_lock(conn: LockConnection, name: str) -> None:
    """Inside a held study lock, take the lock `name` too, in the same transaction (released with
    it). Take such locks after the study lock, always in that order, so two holders never wait on
    each other. SQLite's one file lock already covers every study: nothing more to take."""
    if conn is not None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})


@contextlib.contextmanager
def study_lock(storage: RDBStorage, name: str) -> Iterator[Connection | None]:
    """Hold the study's lock; yields the PostgreSQL connection whose transaction holds it (None
    elsewhere), so a caller may do its work in that same transaction (storage.rdb.in_transaction)."""
    storage = rdb_of(storage)
    url = storage.engine.url
    if url.get_backend_name() == "postgresql":
        with storage.engine.connect() as conn, conn.begin():
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(name)})
            yield conn
        return
    if url.database in (None, "", ":memory:"):
        with _memory_lock:
            yield None
        return
    lock_path = Path(f"{url.database}.sarsweep.lock")
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
