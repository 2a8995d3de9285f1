"""The one place that turns a storage URL into an Optuna storage.

PostgreSQL goes through SQLAlchemy + psycopg2 with a small pool per process, `pool_pre_ping`
(a connection the server dropped is replaced instead of failing the next call), a connect
timeout, TCP keepalives and an `application_name` per role, so `pg_stat_activity` shows who
holds which connection. Heartbeats are on, and a trial whose worker stopped beating is retried
by `RetryHeartbeatStaleTrialCallback`.

The schema is created once, by `sarsweep init`; workers open the storage with
`skip_table_creation=True` so N workers starting together never race on CREATE TABLE.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import create_engine
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from storage.urls import StorageError, describe, parse, redact, scrub

log = logging.getLogger("sarsweep.storage")


@dataclass
class StorageSettings:
    """Connection and heartbeat settings of one process."""

    role: str = "worker"
    """Shown as application_name `sarsweep-<role>` in pg_stat_activity."""
    heartbeat_interval: int = 30
    """Seconds between a running trial's heartbeats."""
    grace_period: int = 120
    """Seconds without a heartbeat after which a RUNNING trial is failed and retried."""
    max_retry: int = 3
    """Times a stale trial is retried before it stays FAILed."""
    pool_size: int = 2
    """Connections per process: the main thread and the heartbeat thread."""
    connect_timeout: int = 10

    def __post_init__(self) -> None:
        if self.grace_period <= self.heartbeat_interval:
            raise StorageError(
                f"grace period ({self.grace_period}s) must exceed the heartbeat interval "
                f"({self.heartbeat_interval}s), or live trials would be failed"
            )


def engine_kwargs(url: URL, settings: StorageSettings) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        # Writers queue on SQLite's file lock instead of failing with "database is locked".
        return {"connect_args": {"timeout": 60}}
    return {
        "pool_pre_ping": True,
        "pool_size": settings.pool_size,
        "max_overflow": 1,
        "pool_recycle": 1800,
        "connect_args": {
            "connect_timeout": settings.connect_timeout,
            "application_name": f"sarsweep-{settings.role}",
            "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
        },
    }


def has_schema(engine: Engine) -> bool:
    return sa_inspect(engine).has_table("version_info")


def _require_schema(url: URL, settings: StorageSettings) -> None:
    engine = create_engine(url, poolclass=NullPool, connect_args=engine_kwargs(url, settings)["connect_args"])
    try:
        if not has_schema(engine):
            raise StorageError(f"no sarsweep schema in {redact(url)} ({describe(url)}); run `sarsweep init` first")
    finally:
        engine.dispose()


def open_storage(url: str, settings: StorageSettings | None = None, create_schema: bool = False) -> RDBStorage:
    """An RDBStorage for `url`; every failure is one StorageError line naming host, port, database.

    create_schema=False (workers) requires the tables to exist already, except on SQLite, where
    there is one machine and nothing to race with.
    """
    settings = settings or StorageSettings()
    parsed = parse(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    skip = not (create_schema or is_sqlite)
    try:
        if skip:
            _require_schema(parsed, settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = RDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=engine_kwargs(parsed, settings),
                heartbeat_interval=settings.heartbeat_interval,
                grace_period=settings.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry),
                skip_table_creation=skip,
                skip_compatibility_check=skip,
            )
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise StorageError(
            f"cannot open storage {redact(parsed)} ({describe(parsed)}): {root_reason(exc, parsed)}"
        ) from None
    return storage


def root_reason(exc: BaseException, url: URL) -> str:
    """The driver's own first line (Optuna and SQLAlchemy wrap it twice), password scrubbed."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return scrub(first, url)
