"""The one place that turns a storage URL into an Optuna storage.

PostgreSQL goes through SQLAlchemy + psycopg2 with a small pool per process, `pool_pre_ping`
(a connection the server dropped is replaced instead of failing the next call), a connect
timeout, TCP keepalives and an `application_name` per role, so `pg_stat_activity` shows who
holds which connection. Heartbeats are on, and a trial whose worker stopped beating is retried
by `RetryHeartbeatStaleTrialCallback`.

The schema is created once, by `sarsweep init`; workers open the storage with
`skip_table_creation=True` so N workers starting together never race on CREATE TABLE.

Stock RDBStorage turns any database error into an exception in the caller: a PostgreSQL restart
kills the trial's `report()` or `tell()` and with it hours of training. `ResilientRDBStorage`
(a subclass: Optuna keeps doing the SQL) retries a call that failed for a *transient* reason
(connection refused or dropped, server restarting, "too many clients", pool timeout) with
backoff for up to `outage_timeout` seconds, so an outage pauses a worker instead of killing it.
After an outage, stale-trial reaping waits one grace period (`reap_allowed`): every running
trial's heartbeat is old right after the database comes back, and reaping then would fail live
trials.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy import create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from errors import StorageError
from storage.optuna_internals import PRIVATE_STORAGE_METHODS, sessions_on
from storage.queries import best_trial_id, one_row
from storage.urls import describe, parse, redact, scrub

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
    pool_size: int = 1
    """Connections a process keeps open. One, plus one overflow connection opened only for
    moments (a heartbeat overlapping a call; the reap check inside a claim, which itself runs on
    the lock's connection): 64 workers peaked at 65 connections, where Optuna's default pool
    (5 + 10 overflow) let 52 workers exhaust 100."""
    max_overflow: int = 1
    connect_timeout: int = 10
    outage_timeout: float = 600.0
    """Seconds a storage call keeps retrying through a database outage before it gives up."""
    claims_trials: bool = False
    """A worker: at open, its pool is checked against the server's connection budget, so the Nth
    worker past it is one clear line instead of a connection error mid-trial."""
    not_best: tuple[str, ...] = ()
    """User attrs that mark a trial as a measurement, not a point of the search (sarsweep's seed
    re-runs): Optuna's best trial through this storage (`study.best_trial`, optuna-dashboard's
    "Best Trial" as `sarsweep dashboard` serves it) never names one."""

    def __post_init__(self) -> None:
        if self.grace_period <= self.heartbeat_interval:
            raise StorageError(
                f"grace period ({self.grace_period}s) must exceed the heartbeat interval "
                f"({self.heartbeat_interval}s), or live trials would be failed"
            )


def heartbeat_of(storage: RDBStorage) -> tuple[float, float]:
    """(heartbeat interval, grace period) in seconds; StorageSettings' defaults for a storage
    opened without heartbeats (a plain RDBStorage)."""
    return (float(storage.heartbeat_interval or StorageSettings.heartbeat_interval),
            float(storage.grace_period or StorageSettings.grace_period))


def engine_kwargs(url: URL, settings: StorageSettings) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        # Writers queue on SQLite's file lock instead of failing with "database is locked".
        return {"connect_args": {"timeout": 60}}
    return {
        "pool_pre_ping": True,
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
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
        with schema_lock(parsed, settings, enabled=not skip), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = ResilientRDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=engine_kwargs(parsed, settings),
                heartbeat_interval=settings.heartbeat_interval,
                grace_period=settings.grace_period,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry),
                skip_table_creation=skip,
                skip_compatibility_check=skip,
            )
        storage.outage_timeout = settings.outage_timeout
        storage.not_best = settings.not_best
        event.listen(storage.engine, "handle_error", _disconnect_ends_transaction, retval=True)
        if not is_sqlite and settings.claims_trials:
            check_connection_budget(storage, settings)
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise StorageError(
            f"cannot open storage {redact(parsed)} ({describe(parsed)}): {root_reason(exc, parsed)}"
        ) from None
    return storage


@contextlib.contextmanager
def schema_lock(url: URL, settings: StorageSettings, enabled: bool) -> Iterator[None]:
    """Serialise schema creation across processes (N `sarsweep init`s at once race on CREATE
    TABLE and alembic's version table: optuna#1092): a session-level advisory lock on PostgreSQL,
    a lock file beside a SQLite database (two inits on a fresh file both succeed)."""
    if not enabled:
        yield
        return
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            yield
            return
        import fcntl

        with open(f"{database}.schema.sarsweep.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    engine = create_engine(url, poolclass=NullPool, connect_args=engine_kwargs(url, settings)["connect_args"])
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
    finally:
        engine.dispose()


SCHEMA_LOCK_KEY = 0x5A45_5357_4545_50  # "ZESWEEP": any fixed key of this application


def check_connection_budget(storage: RDBStorage, settings: StorageSettings) -> None:
    """Refuse to start a process whose connections the server cannot hold.

    A worker that starts anyway dies later, mid-trial, of "too many clients"; refused here, the
    person sees at once how many connections are in use and what to change.
    """
    with storage.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),"
            " (SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'sarsweep-%')"
        )).one()
    max_conn, reserved, used, ours = (int(v) for v in row)
    need = settings.pool_size + settings.max_overflow
    free = max_conn - reserved - used  # this check's own connection is counted in used
    if need > free + 1:
        raise StorageError(
            f"{redact(storage.engine.url)}: not enough free connections for another sarsweep {settings.role} "
            f"(it needs up to {need}; the server allows {max_conn - reserved} to non-superusers and {used} are "
            f"open, {ours} of them sarsweep's): raise max_connections, put PgBouncer in front, or run fewer workers"
        )


def is_transient(exc: BaseException) -> bool:
    """A database error that a wait can cure: the connection, not the statement, was the problem."""
    import psycopg2

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                          psycopg2.OperationalError, psycopg2.InterfaceError)):
            text_ = str(e).lower()
            return not any(s in text_ for s in ("authentication failed", "does not exist", "permission denied"))
        if isinstance(e, TransactionLost) or (isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated):
            return True
        e = e.__cause__ or e.__context__
    return False


F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


_in_transaction = threading.local()
_retry_scope = threading.local()


class TransactionLost(Exception):
    """The connection of an in_transaction block dropped: nothing in it committed; retry it all."""


@contextlib.contextmanager
def in_transaction(storage: RDBStorage, conn: Connection | None) -> Iterator[None]:
    """Run this thread's Optuna storage calls inside `conn`'s open transaction.

    The trial claim holds the study lock in a transaction on one connection; Optuna's `ask()`
    would take a second one (with a pool of one, a new connection for every claim, which cost
    more than the claim itself on short trials). Here Optuna's thread-local session is bound to
    the lock's connection and joins its transaction ("rollback_only": Optuna's per-call commit
    does not end it), so the trial is created in the same transaction that holds the lock and
    both commit together. Calls are not retried in here: a dropped connection fails the claim,
    and the claim as a whole is retried (storage.trials.claim_through_outage).

    A dropped connection must reach the caller as such: a disconnect inside the block raises
    TransactionLost at once (_disconnect_ends_transaction), and any other failure on a
    connection SQLAlchemy has invalidated (say "Can't operate on closed transaction" from a
    later statement, which names no outage: a worker died of it in CI) leaves here as
    TransactionLost too; is_transient recognises it.
    """
    if conn is None:
        yield
        return
    _in_transaction.active = True
    try:
        with sessions_on(storage, conn):
            yield
    except Exception as exc:
        if conn.invalidated:
            raise TransactionLost(f"lost the transaction's connection ({exc.__class__.__name__})") from exc
        raise
    finally:
        _in_transaction.active = False


def _disconnect_ends_transaction(ctx: ExceptionContext) -> BaseException | None:
    """Inside in_transaction, a dropped connection raises TransactionLost at once.

    The transaction is gone with the connection, so nothing in the block can succeed any more;
    but Optuna's `_create_new_trial` retries a failed insert five times with sleeps in between
    (it only catches its own StorageInternalError, which SQLAlchemy errors become), and the
    claim waited 4-5 s for it before being retried whole. TransactionLost is no SQLAlchemy
    error, so it leaves that loop on the first failure. SQLAlchemy still invalidates the
    connection (it does so after the handle_error hooks).

    Not for an "exit exception" (no Exception subclass: our WorkerStopped from a SIGTERM handler,
    KeyboardInterrupt) landing inside a SQL call: SQLAlchemy invalidates the connection for it
    too and calls it a disconnect, but it must stop the process, not be retried as an outage.
    """
    if not isinstance(ctx.original_exception, Exception):
        return None
    if ctx.is_disconnect and getattr(_in_transaction, "active", False):
        return TransactionLost(f"lost the transaction's connection ({ctx.original_exception.__class__.__name__})")
    return None


MAX_PAUSE = 5.0
"""Longest pause between two attempts through an outage (reap_allowed counts on it)."""


def _retrying(name: str, method: F) -> F:
    @functools.wraps(method)
    def call(self: ResilientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        # Direct inside a claim's transaction, and inside another retried call (set_trial_param
        # calls _set_trial_param): the outermost call retries, once.
        if getattr(_in_transaction, "active", False) or getattr(_retry_scope, "active", False):
            return method(self, *args, **kwargs)

        def attempt(n: int) -> Any:
            try:
                return method(self, *args, **kwargs)
            except UpdateFinishedTrialError:
                # A retried state change whose first attempt did commit (its reply was lost).
                if name == "set_trial_state_values" and n > 1 and self._state_is(args, kwargs):
                    return True
                raise

        _retry_scope.active = True
        try:
            return self.through_outage(name, attempt)
        finally:
            _retry_scope.active = False

    return call  # type: ignore[return-value]


class ResilientRDBStorage(RDBStorage):
    """RDBStorage whose calls wait through transient database outages (see the module docstring).

    Writes retried after a lost reply are safe here: intermediate values and attrs are upserts,
    heartbeats are overwrites, and a state change already committed is recognised. A trial
    created by a claim whose reply was lost would show up as a RUNNING trial without heartbeat,
    which the reaper fails and retries: nothing is lost, one trial number is spent.
    """

    outage_timeout: float = 600.0
    recovered_at: float | None = None
    not_best: tuple[str, ...] = ()
    """StorageSettings.not_best: trials its best-trial query passes over."""

    def through_outage(self, what: str, attempt: Callable[[int], T]) -> T:
        """attempt(1), attempt(2), ... until one does not fail for a transient reason, pausing
        0.25 s doubling to MAX_PAUSE between them, for up to outage_timeout seconds. Once a call
        goes through after failing, recovered_at is set, which holds back reaping (reap_allowed)."""
        delay, started, n = 0.25, time.monotonic(), 0
        while True:
            n += 1
            try:
                result = attempt(n)
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() - started > self.outage_timeout:
                    raise
                if n == 1:
                    log.warning("database unavailable during %s (%s); pausing and retrying for up to %.0f s",
                                what, root_reason(exc, self.engine.url), self.outage_timeout)
                time.sleep(delay)
                delay = min(delay * 2, MAX_PAUSE)
                continue
            if n > 1:
                self.recovered_at = time.monotonic()
                log.warning("database back after %.1f s; %s went through", time.monotonic() - started, what)
            return result

    def _state_is(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        trial_id = args[0] if args else kwargs["trial_id"]
        state = args[1] if len(args) > 1 else kwargs.get("state")
        return bool(self.get_trial(trial_id).state == state)

    def reap_allowed(self, conn: Connection | None = None) -> bool:
        """False for a while after an outage this process saw, or a server restart: one grace
        period, plus a heartbeat interval and the longest retry pause (MAX_PAUSE), the most a
        live worker needs to get its first heartbeat through after the database is back.

        Pass the study lock's connection when holding it: a second connection taken while
        holding one is how a worker's threads deadlocked on its pool of two.
        """
        grace = float(self.grace_period or 0) + float(self.heartbeat_interval or 0) + MAX_PAUSE
        if self.recovered_at is not None and time.monotonic() - self.recovered_at < grace:
            return False
        if self.engine.url.get_backend_name() != "postgresql":
            return True
        uptime = one_row(self.engine, text("SELECT extract(epoch FROM clock_timestamp() - pg_postmaster_start_time())"),
                         conn)[0]
        return float(uptime) >= grace


# Every RDBStorage method that talks to the database, including the private ones Optuna's
# _CachedStorage (the wrapper every Study uses) calls directly (PRIVATE_STORAGE_METHODS: a
# suggest_float during an outage killed a worker in CI when these were missing). Not trial
# creation (`create_new_trial`): an insert retried after its first reply was lost would make a
# second trial, a duplicate enqueue. The claim is retried as a whole
# (storage.trials.claim_through_outage), and a promotion that fails is rerun (it skips what
# already exists).
_RETRIED = (
    "create_new_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
    "get_best_trial", "record_heartbeat", *PRIVATE_STORAGE_METHODS,
)
for _name in _RETRIED:
    setattr(ResilientRDBStorage, _name, _retrying(_name, getattr(RDBStorage, _name)))


def _best_trial_id(self: ResilientRDBStorage, study_id: int, direction: optuna.study.StudyDirection) -> int:
    """Optuna's best-trial query (every `get_best_trial` and _CachedStorage's goes through it),
    passing over the trials `not_best` marks as measurements."""
    if not self.not_best:
        return RDBStorage._get_best_trial_id(self, study_id, direction)
    return best_trial_id(self, study_id, direction == optuna.study.StudyDirection.MAXIMIZE, self.not_best)


ResilientRDBStorage._get_best_trial_id = _retrying("_get_best_trial_id", _best_trial_id)  # type: ignore[method-assign]


def root_reason(exc: BaseException, url: URL) -> str:
    """The driver's own first line (Optuna and SQLAlchemy wrap it twice), password scrubbed."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return scrub(first, url)
