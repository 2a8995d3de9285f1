"""The study lock and its transaction (storage/locks.py)."""

from __future__ import annotations

import pytest

from storage import open_storage


def test_a_signal_inside_a_locked_transaction_stops_the_process_and_is_no_lost_connection(pg_url: str) -> None:
    """SIGTERM landing inside a SQL call of a lock holder (a reaper pass, a claim) must come out as
    WorkerStopped. SQLAlchemy invalidates the connection for such an "exit exception" and calls
    it a disconnect; taken for a dropped connection (TransactionLost, transient), it was retried
    instead of stopping, and `sarsweep reaper` exited 1 on docker stop about one time in eight."""
    from sqlalchemy import event, text

    from search.running.signals import WorkerStopped
    from storage.locks import locked_transaction

    storage = open_storage(pg_url, create_schema=True)

    def signal_arrives(*_: object) -> None:
        event.remove(storage.engine, "before_cursor_execute", signal_arrives)
        raise WorkerStopped("SIGTERM")

    with pytest.raises(WorkerStopped), locked_transaction(storage, "s") as conn:
        assert conn is not None
        event.listen(storage.engine, "before_cursor_execute", signal_arrives)
        conn.execute(text("SELECT 1"))
    with locked_transaction(storage, "s") as conn:  # the pool hands out a working connection again
        assert conn is not None and conn.execute(text("SELECT 1")).scalar() == 1
